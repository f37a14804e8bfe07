"""The cache namespace ``cache_dir/<fingerprint>/``: one per (source content, cached stages, output format),
so changing any of them never mixes results. Answers "is shard k complete?", reads complete shards back
under a shared lease, tracks use time and enforces the byte limit."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ..sample import Sample, key_widths
from ..stats import ShardStats
from ..subsamplers import SubsamplerLike, describe
from .evict import NAMESPACE_FILE, CachedShard, evict, parse_size
from .journal import FailureMemo, ShardJournal
from .layout import ShardPaths, check_format, meta_dir
from .lease import LEASE_SECONDS, ObjectLease, ShardLease
from .location import Location, scratch_folder
from .metadata import MetadataSchema
from .readers import read_index, read_output_shard

log = logging.getLogger("streamv2d")

#: Bumped when the on-disk layout changes, so old namespaces are never misread.
CACHE_LAYOUT_VERSION = 2


class CacheMiss(LookupError):
    """The shard asked for is not complete in the cache (never written, or evicted)."""


class NamespaceMismatch(ValueError):
    """A folder already holds shards made with another configuration."""


def namespace_fingerprint(source_fingerprint: str, stages: Sequence[SubsamplerLike], fmt: str) -> str:
    """Digest of everything that determines a shard's content: the source, the cached stages, the format."""
    document = [CACHE_LAYOUT_VERSION, source_fingerprint, [describe(s) for s in stages], check_format(fmt)]
    return hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]


class CacheStore:
    """Output shards of one namespace under ``cache_dir`` (a local folder or an fsspec URL such as
    ``s3://bucket/cache``); picklable, safe to share by processes, workers and nodes.

    ``limit`` (bytes, or a string like ``"2TB"``) bounds the bytes under the whole ``cache_dir`` (local folders).
    ``flat=True`` puts the shards in ``cache_dir`` itself (a materialize output folder), which then
    refuses any other configuration with :class:`NamespaceMismatch`. ``schema`` is the metadata parquets'.
    On an object store, spools, journals and the failure memo live in a local scratch folder under ``tmp_dir``
    (default: the system temp dir), and each shard's writer holds a lease object lasting ``lease_seconds``."""

    def __init__(self, cache_dir: str, source_fingerprint: str, stages: Sequence[SubsamplerLike] = (),
                 *, fmt: str = "tar", limit: Union[int, str, None] = None, num_shards: int = 1,
                 flat: bool = False, memo_scope: str = "", schema: Optional[MetadataSchema] = None,
                 storage_options: Optional[Dict[str, Any]] = None, tmp_dir: Optional[str] = None,
                 lease_seconds: float = LEASE_SECONDS):
        what = "output folder" if flat else "cache_dir"
        self.location = Location(cache_dir, storage_options, what=what)
        self.fmt = check_format(fmt)
        self.limit = parse_size(limit)
        if self.limit is not None and not self.location.local:
            raise ValueError(f"cache_limit: not supported on an object store ({cache_dir}); bound it with the "
                             "bucket's lifecycle rules, or give a local cache_dir")
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds: {lease_seconds!r} is not a positive number of seconds")
        self.lease_seconds = float(lease_seconds)
        self.namespace = namespace_fingerprint(source_fingerprint, stages, fmt)
        self.cache_dir = self.location.root
        self.root = self.cache_dir if flat else self.location.join(self.namespace)
        self.num_shards = num_shards
        self.digits = key_widths(num_shards, 1)[0]
        if self.location.local:
            self.work, memo = "", os.path.join(meta_dir(self.cache_dir), "memo")
        else:
            self.work = scratch_folder(tmp_dir, self.location.display(self.root), self.namespace)
            memo = os.path.join(scratch_folder(tmp_dir, self.location.url, ""), "memo")
        self.memo = FailureMemo(memo, memo_scope)
        self.schema = schema or MetadataSchema()
        self._describe(source_fingerprint, stages)

    @classmethod
    def for_job(cls, cache_dir: str, shard_job, *, fmt: str = "tar", limit: Union[int, str, None] = None,
                flat: bool = False, **options: Any) -> "CacheStore":
        """The store of a :class:`~streamv2d.shard.ShardJob`: its source, its stages before the cache boundary and
        the fetch settings that change what a row becomes; failures are remembered per those settings.
        ``options``: ``storage_options``, ``tmp_dir``, ``lease_seconds``."""
        source, config = shard_job.source, shard_job.job.fetch
        # the fetch settings that decide what a row becomes (the format yt-dlp picks, the size cap, what may be
        # fetched at all) are part of the content: they name the namespace and scope the failure memo
        scope = json.dumps([config.max_bytes, config.yt_dlp, config.yt_dlp_options, config.allow_local_files,
                            config.allow_url_chains], sort_keys=True, default=str)
        fingerprint = source.fingerprint() + scope
        declared: Dict[str, Any] = dict(getattr(source, "metadata_fields", dict)())
        declared.update(shard_job.chain.metadata_fields())
        return cls(cache_dir, fingerprint, shard_job.chain.before_cache, fmt=fmt, limit=limit,
                   num_shards=len(source.shards()), flat=flat, memo_scope=scope, schema=MetadataSchema(declared), **options)

    def _describe(self, source_fingerprint: str, stages: Sequence[SubsamplerLike]) -> None:
        path = f"{meta_dir(self.root)}/{NAMESPACE_FILE}"
        found = (self.location.read_json(path) or {}).get("namespace")
        if found is not None and found != self.namespace:
            raise NamespaceMismatch(f"{self.location.display(self.root)} holds shards of another source, subsampler "
                                    f"chain or format ({found}, not {self.namespace}); use another folder")
        if found is None:
            self.location.write_json(path, {"version": CACHE_LAYOUT_VERSION, "namespace": self.namespace,
                                            "source": source_fingerprint, "format": self.fmt,
                                            "subsamplers": [describe(s) for s in stages], "digits": self.digits,
                                            "shards": self.num_shards})

    def paths(self, shard_id: int) -> ShardPaths:
        return ShardPaths(self.root, shard_id, self.fmt, self.digits, self.work)

    def journal(self, shard_id: int) -> ShardJournal:
        return ShardJournal(self.paths(shard_id).journal)

    def lease(self, shard_id: int) -> Union[ShardLease, ObjectLease]:
        """An unheld lease on ``shard_id``: exclusive to write it, shared to read it."""
        if self.location.local:
            return ShardLease(self.paths(shard_id).lock)
        return ObjectLease(self.location, self.paths(shard_id).lease, self.lease_seconds)

    def is_complete(self, shard_id: int) -> bool:
        """True when shard ``shard_id`` is published (its stats file, written last, exists)."""
        self.location.fresh()
        return all(self.location.exists(p) for p in self.paths(shard_id).published())

    def complete_shards(self) -> List[int]:
        """Ids of this namespace's complete shards, sorted."""
        self.location.fresh()
        return sorted(int(name) for name in self.location.published_names(self.root)
                      if self.is_complete(int(name)))

    def stats(self, shard_id: int) -> ShardStats:
        """The published stats of complete shard ``shard_id``."""
        return ShardStats.from_dict(self.location.read_json(self.paths(shard_id).stats))

    def read(self, shard_id: int) -> Iterator[Sample]:
        """The samples of complete shard ``shard_id``, read under a shared lease (so never evicted meanwhile);
        raises :class:`CacheMiss` on the first ``next`` when it is not complete."""
        for _, samples in self.read_rows(shard_id):
            yield from samples

    def read_rows(self, shard_id: int, start_row: int = 0) -> Iterator[Tuple[int, List[Sample]]]:
        """The rows of complete shard ``shard_id`` from ``start_row`` on, each with its samples (the samples of
        earlier rows are passed over undecoded); under a shared lease, like :meth:`read`."""
        from .through import grouped

        counts = self._outputs_per_row(shard_id)
        skip = sum(counts[:start_row]) if counts is not None else start_row
        with self.lease(shard_id) as lease:
            lease.acquire(exclusive=False, wait=True)
            if not self.is_complete(shard_id):
                raise CacheMiss(f"shard {shard_id} is not complete in {self.location.display(self.root)}")
            self.touch(shard_id)
            rest = counts[start_row:] if counts is not None else None
            yield from grouped(read_output_shard(self.paths(shard_id), self.location, skip), rest, start_row)

    def _outputs_per_row(self, shard_id: int) -> Optional[List[int]]:
        """How many samples each input row of a complete shard wrote (None: unknown, each sample a row)."""
        counts = read_index(self.paths(shard_id), self.location).get("outputs_per_row")
        return list(counts) if counts is not None else None

    def touch(self, shard_id: int) -> None:
        """Mark ``shard_id`` as used now, for least-recently-used eviction (local folders)."""
        if self.location.local:
            os.utime(self.paths(shard_id).stats)

    def confirm_lease(self, shard_id: int) -> None:
        """Before publishing: on an object store, renew this process's lease on ``shard_id``, or
        :class:`~streamv2d.cache.lease.LeaseLost` when another node took it over (it publishes the shard)."""
        if not self.location.local:
            ObjectLease.renew_held(self.paths(shard_id).lease)

    def record_failure(self, shard_id: int, message: str) -> None:
        """Leave a record that shard ``shard_id`` raised ``message`` (for ``status``; the next run retries it)."""
        try:
            self.location.write_json(self.paths(shard_id).failure, {"shard": shard_id, "error": message,
                                                                     "time": time.time()})
        except OSError as exc:   # the failure itself may be the store's: the run still reports it
            log.warning("shard %d: cannot record its failure on the store (%s)", shard_id, exc)

    def enforce_limit(self) -> List[CachedShard]:
        """Evict least recently used unleased shards (of any namespace) until the limit holds."""
        return evict(self.cache_dir, self.limit) if self.limit is not None else []

    def __repr__(self) -> str:
        return f"CacheStore({self.location.display(self.root)!r}, fmt={self.fmt!r}, limit={self.limit})"
