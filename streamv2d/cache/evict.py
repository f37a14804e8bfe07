"""The cache limit: bytes on disk under a cache folder, and least-recently-used eviction of whole shards
that no process holds a lease on."""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import List, Optional, Union

from .layout import ShardPaths, meta_dir, published_names
from .lease import ShardLease

_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)

#: The file describing a namespace (source, subsamplers, format, key digits), in its hidden folder.
NAMESPACE_FILE = "namespace.json"


def parse_size(value: Union[int, str, None]) -> Optional[int]:
    """Bytes from ``2TB``, ``500MB``, ``1.5GiB`` or an int (decimal units; ``Ki``/``Mi``… binary); None stays None."""
    if value is None or isinstance(value, int):
        if isinstance(value, int) and value < 0:
            raise ValueError(f"cache_limit must be non-negative, got {value}")
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"cannot parse size {value!r}; use bytes or a number with a unit like '500MB' or '2TB'")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def disk_usage(path: str) -> int:
    """Bytes of all files under ``path`` (a file or folder; 0 when missing)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, names in os.walk(path):
        for name in names:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except FileNotFoundError:   # removed meanwhile by another process
                pass
    return total


@dataclass(frozen=True)
class CachedShard:
    """A complete shard of some namespace, with its size and last use time (its stats file's mtime)."""

    paths: ShardPaths
    size: int
    last_used: float


def complete_shards(cache_dir: str) -> List[CachedShard]:
    """Every complete shard of every namespace under ``cache_dir`` (or of ``cache_dir`` itself, when flat)."""
    found: List[CachedShard] = []
    folders = [cache_dir] + [e.path for e in os.scandir(cache_dir) if e.is_dir()] if os.path.isdir(cache_dir) else []
    for folder in folders:
        described = os.path.join(meta_dir(folder), NAMESPACE_FILE)
        if not os.path.exists(described):
            continue
        with open(described) as f:
            fmt = json.load(f)["format"]
        for name in published_names(os.listdir(folder)):
            paths = ShardPaths(folder, int(name), fmt, len(name))
            try:
                last_used = os.path.getmtime(paths.stats)
            except FileNotFoundError:
                continue
            found.append(CachedShard(paths, sum(disk_usage(p) for p in paths.published()), last_used))
    return found


def evict(cache_dir: str, limit: int) -> List[CachedShard]:
    """Delete least recently used complete shards until ``cache_dir`` holds at most ``limit`` bytes;
    leased shards (being read or written) are skipped. Returns what was evicted."""
    usage = disk_usage(cache_dir)
    evicted: List[CachedShard] = []
    for shard in sorted(complete_shards(cache_dir), key=lambda s: s.last_used):
        if usage <= limit:
            break
        with ShardLease(shard.paths.lock) as lease:
            if not lease.acquire(exclusive=True, wait=False):
                continue
            for path in shard.paths.published()[::-1]:   # stats first: the shard stops being complete
                _remove(path)
        usage -= shard.size
        evicted.append(shard)
    return evicted


def _remove(path: str) -> None:
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.exists(path):
        os.remove(path)
