"""The write-through cache: output shards, the resume journal, namespaces, leases and eviction."""
from .evict import evict, parse_size
from .journal import Journal
from .layout import FORMATS, ShardPaths
from .readers import read_output_shard
from .store import CacheMiss, CacheStore, NamespaceMismatch, namespace_fingerprint
from .through import write_through
from .writer import TarSpool, encode_sample

__all__ = ["FORMATS", "CacheMiss", "CacheStore", "Journal", "NamespaceMismatch", "ShardPaths", "TarSpool",
           "encode_sample", "evict", "namespace_fingerprint", "parse_size", "read_output_shard", "write_through"]
