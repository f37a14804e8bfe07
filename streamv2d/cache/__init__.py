"""The write-through cache: output shards, their journals, namespaces, leases and eviction."""
from .evict import evict, parse_size
from .journal import FailureMemo, ShardJournal
from .layout import FORMATS, ShardPaths
from .metadata import MetadataSchema
from .readers import read_output_shard
from .store import CacheMiss, CacheStore, NamespaceMismatch, namespace_fingerprint
from .through import CacheWriteError, write_through
from .writer import TarSpool, encode_sample

__all__ = ["FORMATS", "CacheMiss", "CacheStore", "CacheWriteError", "FailureMemo", "MetadataSchema",
           "NamespaceMismatch", "ShardJournal", "ShardPaths", "TarSpool", "encode_sample", "evict",
           "namespace_fingerprint", "parse_size", "read_output_shard", "write_through"]
