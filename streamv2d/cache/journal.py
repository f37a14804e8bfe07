"""The LMDB journal of a cache folder: per-shard progress of each namespace (spool offset, running stats, done rows,
metadata rows) committed once per row, and a memo of URLs that failed permanently.

Each process opens the environment itself (LMDB handles must not cross ``fork``); a DataLoader
worker and a materialize process share the same files safely. Commits skip fsync: a killed process
loses nothing, a machine crash may lose the last rows, which resume detects and redoes."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import lmdb

from ..stats import ShardStats

#: Virtual size of the map; the file grows only with what is stored.
MAP_SIZE = 1 << 36

_ENVS: Dict[str, Tuple[int, lmdb.Environment]] = {}


def _env(path: str) -> lmdb.Environment:
    """This process's handle on the environment at ``path`` (one per process, as LMDB requires)."""
    path = os.path.realpath(path)
    entry = _ENVS.get(path)
    if entry is not None and entry[0] == os.getpid():
        return entry[1]
    if entry is not None:   # inherited through fork: unusable here; closing clears only this process's slots
        entry[1].close()
    os.makedirs(path, exist_ok=True)
    env = lmdb.open(path, map_size=MAP_SIZE, subdir=True, sync=False, metasync=False, readahead=False,
                    max_readers=1024)
    _ENVS[path] = (os.getpid(), env)
    return env


@dataclass
class Progress:
    """What a shard's journal says is safely written: ``rows`` input rows, spool bytes ``[0, offset)``."""

    offset: int
    rows: int
    stats: ShardStats


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class Journal:
    """Per-shard progress of namespace ``namespace`` and the permanent-failure memo, in LMDB at ``path``.

    The memo is shared by every namespace of the folder (a 404 stays a 404 whatever the subsamplers) but kept
    apart per ``memo_scope``: the fetch settings a failure depends on (size cap, yt-dlp options)."""

    def __init__(self, path: str, namespace: str, memo_scope: str = ""):
        self.path = path
        self.namespace = namespace
        self.memo_scope = memo_scope

    def _memo_key(self, url: str) -> bytes:
        return b"f/" + _digest(f"{self.memo_scope}|{url}").encode()

    @property
    def env(self) -> lmdb.Environment:
        return _env(self.path)

    def _prefix(self, shard_id: int, kind: str = "") -> bytes:
        return f"s/{self.namespace}/{shard_id:012d}/{kind}".encode()

    def _scan(self, prefix: bytes) -> Iterator[Tuple[bytes, bytes]]:
        with self.env.begin() as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                for key, value in cursor:
                    if not key.startswith(prefix):
                        break
                    yield bytes(key), bytes(value)

    # -- reading ----------------------------------------------------------------------------------------------
    def progress(self, shard_id: int) -> Optional[Progress]:
        """The last committed state of ``shard_id``, or None when nothing is journaled."""
        with self.env.begin() as txn:
            raw = txn.get(self._prefix(shard_id, "p/"))
        if raw is None:
            return None
        doc = json.loads(raw)
        return Progress(doc["offset"], doc["rows"], ShardStats.from_dict(doc["stats"]))

    def done_keys(self, shard_id: int) -> Set[str]:
        """Keys of the input rows of ``shard_id`` already written."""
        return {value.decode("utf-8") for _, value in self._scan(self._prefix(shard_id, "k/"))}

    def metadata(self, shard_id: int) -> List[Dict[str, Any]]:
        """The metadata rows of ``shard_id``'s done input rows, in row order."""
        return [json.loads(value) for _, value in self._scan(self._prefix(shard_id, "m/"))]

    def failure(self, url: str) -> Optional[Dict[str, Any]]:
        """The remembered permanent failure of ``url`` (``status``, ``error_message``), or None."""
        with self.env.begin() as txn:
            raw = txn.get(self._memo_key(url))
        return json.loads(raw) if raw is not None else None

    # -- writing ----------------------------------------------------------------------------------------------
    def commit_row(self, shard_id: int, row_key: str, offset: int, stats: ShardStats,
                   meta: Dict[str, Any], permanent_failure: bool = False) -> None:
        """Record one finished input row — spool offset, stats, metadata, failure memo — in one transaction."""
        with self.env.begin(write=True) as txn:
            previous = txn.get(self._prefix(shard_id, "p/"))
            rows = (json.loads(previous)["rows"] if previous is not None else 0) + 1
            txn.put(self._prefix(shard_id, "k/") + _digest(row_key).encode(), row_key.encode("utf-8"))
            txn.put(self._prefix(shard_id, "m/") + f"{rows:012d}".encode(), json.dumps(meta, default=str).encode())
            txn.put(self._prefix(shard_id, "p/"),
                    json.dumps({"offset": offset, "rows": rows, "stats": stats.to_dict()}).encode())
            if permanent_failure and meta.get("url"):
                memo = {k: meta.get(k) for k in ("url", "status", "error_message", "error_detail")}
                txn.put(self._memo_key(str(meta["url"])), json.dumps(memo).encode())

    def clear(self, shard_id: int) -> None:
        """Forget ``shard_id``'s progress (published, or restarted from scratch); the failure memo stays."""
        prefix = self._prefix(shard_id)
        with self.env.begin(write=True) as txn:
            cursor = txn.cursor()
            if cursor.set_range(prefix):
                while cursor.key().startswith(prefix):
                    if not cursor.delete():
                        break
