"""Workflows over existing shards: ``reshard`` (merge datasets, another shard size) and ``reprocess`` (dedicated
metadata shards beside the source's)."""
from .metadata import MetadataOnly, metadata_chain, metadata_members, reprocess
from .reshard import ReshardSource, reshard

__all__ = ["MetadataOnly", "ReshardSource", "metadata_chain", "metadata_members", "reprocess", "reshard"]
