"""The cache namespace ``cache_dir/<fingerprint>/``: one per (source, subsampler chain, output format),
so changing any of them never mixes results. Answers "is shard k complete?", reads complete shards back
under a shared lease, tracks use time and enforces the byte limit."""
from __future__ import annotations

import hashlib
import json
import os
from typing import Iterator, List, Sequence, Union

from ..sample import Sample, key_widths
from ..subsamplers import SubsamplerLike, describe
from .evict import NAMESPACE_FILE, CachedShard, evict, parse_size
from .journal import Journal
from .layout import JOURNAL_DIR, ShardPaths, check_format, published_names
from .lease import ShardLease
from .readers import read_output_shard
from .writer import write_json

#: Bumped when the on-disk layout changes, so old namespaces are never misread.
CACHE_LAYOUT_VERSION = 1


class CacheMiss(LookupError):
    """The shard asked for is not complete in the cache (never written, or evicted)."""


class NamespaceMismatch(ValueError):
    """A folder already holds shards made with another configuration."""


def namespace_fingerprint(source_fingerprint: str, subsamplers: Sequence[SubsamplerLike], fmt: str) -> str:
    """Digest of everything that determines a shard's content: the source, the subsampler chain, the format."""
    document = [CACHE_LAYOUT_VERSION, source_fingerprint, [describe(s) for s in subsamplers], check_format(fmt)]
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]


class CacheStore:
    """Output shards of one namespace under ``cache_dir``; picklable, safe to share by processes and workers.

    ``limit`` (bytes, or a string like ``"2TB"``) bounds the bytes under the whole ``cache_dir``.
    ``flat=True`` puts the shards in ``cache_dir`` itself (a materialize output folder), which then
    refuses any other configuration with :class:`NamespaceMismatch`."""

    def __init__(self, cache_dir: str, source_fingerprint: str, subsamplers: Sequence[SubsamplerLike] = (),
                 *, fmt: str = "tar", limit: Union[int, str, None] = None, num_shards: int = 1,
                 flat: bool = False, memo_scope: str = ""):
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        self.fmt = check_format(fmt)
        self.limit = parse_size(limit)
        self.namespace = namespace_fingerprint(source_fingerprint, subsamplers, fmt)
        self.root = self.cache_dir if flat else os.path.join(self.cache_dir, self.namespace)
        self.digits = key_widths(num_shards, 1)[0]
        self.journal = Journal(os.path.join(self.cache_dir, JOURNAL_DIR), self.namespace, memo_scope)
        self._describe(source_fingerprint, subsamplers)

    @classmethod
    def for_processor(cls, cache_dir: str, processor, *, fmt: str = "tar",
                      limit: Union[int, str, None] = None, flat: bool = False) -> "CacheStore":
        """The store of a :class:`~streamv2d.pipeline.ShardProcessor`'s source and subsampler chain (and its
        yt-dlp options, which choose the format downloaded); failures are remembered per fetch setting."""
        source, config = processor.source, processor.config
        fingerprint = source.fingerprint()
        if config.yt_dlp_options:
            fingerprint += json.dumps(config.yt_dlp_options, sort_keys=True, default=str)
        scope = json.dumps([config.max_bytes, config.yt_dlp, config.yt_dlp_options, config.allow_local_files,
                            config.allow_url_chains], sort_keys=True, default=str)   # trust refusals are permanent
        return cls(cache_dir, fingerprint, processor.subsamplers, fmt=fmt, limit=limit,
                   num_shards=len(source.shards()), flat=flat, memo_scope=scope)

    def _describe(self, source_fingerprint: str, subsamplers: Sequence[SubsamplerLike]) -> None:
        os.makedirs(self.root, exist_ok=True)
        path = os.path.join(self.root, NAMESPACE_FILE)
        if os.path.exists(path):
            with open(path) as f:
                found = json.load(f).get("namespace")
            if found != self.namespace:
                raise NamespaceMismatch(f"{self.root} holds shards of another source, subsampler chain or format "
                                        f"({found}, not {self.namespace}); use another folder")
            return
        write_json(path, {"version": CACHE_LAYOUT_VERSION, "namespace": self.namespace, "source": source_fingerprint,
                          "format": self.fmt, "subsamplers": [describe(s) for s in subsamplers],
                          "digits": self.digits})

    def paths(self, shard_id: int) -> ShardPaths:
        return ShardPaths(self.root, shard_id, self.fmt, self.digits)

    def lease(self, shard_id: int) -> ShardLease:
        """An unheld lease on ``shard_id``: exclusive to write it, shared to read it."""
        return ShardLease(self.paths(shard_id).lock)

    def is_complete(self, shard_id: int) -> bool:
        """True when shard ``shard_id`` is published (its stats file, written last, exists)."""
        return all(os.path.exists(p) for p in self.paths(shard_id).published())

    def complete_shards(self) -> List[int]:
        """Ids of this namespace's complete shards, sorted."""
        return sorted(int(name) for name in published_names(self.root) if self.is_complete(int(name)))

    def read(self, shard_id: int) -> Iterator[Sample]:
        """The samples of complete shard ``shard_id``, read under a shared lease (so never evicted meanwhile);
        raises :class:`CacheMiss` on the first ``next`` when it is not complete."""
        with self.lease(shard_id) as lease:
            lease.acquire(exclusive=False, wait=True)
            if not self.is_complete(shard_id):
                raise CacheMiss(f"shard {shard_id} is not complete in {self.root}")
            self.touch(shard_id)
            yield from read_output_shard(self.paths(shard_id))

    def touch(self, shard_id: int) -> None:
        """Mark ``shard_id`` as used now, for least-recently-used eviction."""
        os.utime(self.paths(shard_id).stats)

    def enforce_limit(self) -> List[CachedShard]:
        """Evict least recently used unleased shards (of any namespace) until the limit holds."""
        return evict(self.cache_dir, self.limit) if self.limit is not None else []

    def __repr__(self) -> str:
        return f"CacheStore({self.root!r}, fmt={self.fmt!r}, limit={self.limit})"
