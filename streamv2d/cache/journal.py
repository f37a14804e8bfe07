"""Resume state: a journal per shard, beside its spool, and the folder's memo of URLs that failed for good.

The shard journal is an append-only file of JSON lines, one per finished input row (spool offset, running
stats, the row's metadata rows), then one ``sealed`` line once the spool is complete. It needs nothing but a
local file, so it works on scratch disks and network file systems alike and travels with the spool. Rows are
journaled in row order, so "rows done" is a position: a resumed shard skips its first ``rows`` input rows.

The memo is LMDB (a key-value map many processes update at once); where LMDB cannot run, it is simply off."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from ..stats import ShardStats
from .layout import temp_name

log = logging.getLogger("streamv2d")

#: Virtual size of the memo's map; the file grows only with what is stored.
MAP_SIZE = 1 << 36


@dataclass
class Progress:
    """What a shard's journal says is safely written: ``rows`` input rows, spool bytes ``[0, offset)``, their
    stats, metadata rows and how many samples each row wrote; ``sealed`` once the spool is complete and only
    publication remains."""

    rows: int = 0
    offset: int = 0
    stats: Optional[ShardStats] = None
    metadata: List[Dict[str, Any]] = field(default_factory=list)
    outputs_per_row: List[int] = field(default_factory=list)
    sealed: bool = False


class ShardJournal:
    """The journal file of one shard; see the module docstring."""

    def __init__(self, path: str):
        self.path = path
        self._file = None

    def load(self, spool_size: Optional[int]) -> Progress:
        """The last journaled state the spool (``spool_size`` bytes, None when missing) still holds; a line cut
        by a kill, or rows the spool lost (a machine crash before the OS wrote them), are left out."""
        progress = Progress()
        try:
            with open(self.path, "rb") as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return progress
        entries = []
        for raw in lines:
            try:
                entries.append(json.loads(raw))
            except ValueError:   # the line a kill cut short: everything before it stands
                break
        sealed = bool(entries) and entries[-1].get("sealed") is True
        for entry in entries:
            if entry.get("sealed"):
                progress.sealed, progress.stats = True, ShardStats.from_dict(entry["stats"])
                break
            if not sealed and (spool_size is None or entry["offset"] > spool_size):
                break
            progress.rows, progress.offset = entry["row"] + 1, entry["offset"]
            progress.stats = ShardStats.from_dict(entry["stats"])
            progress.metadata.extend(entry["meta"])
            progress.outputs_per_row.extend(entry.get("counts", [len(entry["meta"])]))
        return progress

    def start(self, progress: Progress) -> None:
        """Open for appending, rewritten to hold exactly ``progress`` (dropping any tail the spool lost). The
        rewrite replaces the old journal by rename, so a kill or a full disk meanwhile leaves the old one whole."""
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        self.close()
        tmp = temp_name(self.path)
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                if progress.rows:   # one line for all rows so far: ``counts`` says how many samples each has
                    f.write(_line({"row": progress.rows - 1, "offset": progress.offset,
                                   "stats": progress.stats.to_dict(), "meta": progress.metadata,
                                   "counts": progress.outputs_per_row}))
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise
        self._file = open(self.path, "a", encoding="utf-8")

    def append(self, row: int, offset: int, stats: ShardStats, meta: List[Dict[str, Any]],
               count: Optional[int] = None) -> None:
        """Record input row ``row`` as done: the spool holds its ``count`` samples (default: one per metadata row)
        below ``offset``; ``meta`` are its metadata rows (a failure record the spool cannot hold has one too)."""
        count = len(meta) if count is None else count
        self._write({"row": row, "offset": offset, "stats": stats.to_dict(), "meta": meta, "counts": [count]})

    def seal(self, stats: ShardStats) -> None:
        """The spool is complete: what is left is publication, which a resumed run can finish without refetching."""
        self._write({"sealed": True, "stats": stats.to_dict()})
        os.fsync(self._file.fileno())

    def _write(self, entry: Dict[str, Any]) -> None:
        self._file.write(_line(entry))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Forget the shard's progress (published, or restarted from scratch)."""
        self.close()
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass


def _line(entry: Dict[str, Any]) -> str:
    """One journal line: compact JSON and a newline."""
    return json.dumps(entry, default=str, separators=(",", ":")) + "\n"


_ENVS: Dict[str, Tuple[int, Any]] = {}
_ENVS_LOCK = threading.Lock()


def _reset_lock() -> None:
    """A lock a parent thread held at fork would never be released in the child."""
    global _ENVS_LOCK
    _ENVS_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


def _env(path: str):
    """This process's LMDB handle on ``path`` (one per process, as LMDB requires; not across fork), opened once
    whatever the number of fetch threads asking at the same time."""
    import lmdb

    path = os.path.realpath(path)
    with _ENVS_LOCK:
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


class FailureMemo:
    """URLs that failed permanently (404, not media), so a resumed or later run does not fetch them again.

    Shared by every namespace of a cache folder (a 404 stays a 404 whatever the subsamplers) but kept apart per
    ``scope``: the fetch settings a failure depends on (size cap, yt-dlp options)."""

    def __init__(self, path: str, scope: str = ""):
        self.path, self.scope = path, scope
        self._broken = False

    def _key(self, url: str) -> bytes:
        return b"f/" + hashlib.sha256(f"{self.scope}|{url}".encode("utf-8")).hexdigest()[:32].encode()

    def _run(self, action):
        if self._broken:
            return None
        try:
            return action(_env(self.path))
        except Exception as exc:   # lmdb.Error or OSError: e.g. a file system without shared mmap
            self._broken = True
            log.warning("failure memo at %s is off (%s: %s); failed URLs will be fetched again on resume",
                        self.path, type(exc).__name__, exc)
            return None

    def get(self, url: str) -> Optional[Dict[str, Any]]:
        """The remembered failure of ``url`` (``status``, ``error_message``, …), or None."""
        def read(env):
            with env.begin() as txn:
                raw = txn.get(self._key(url))
            return json.loads(raw) if raw is not None else None
        return self._run(read)

    def put(self, url: str, record: Dict[str, Any]) -> None:
        def write(env):
            with env.begin(write=True) as txn:
                txn.put(self._key(url), json.dumps(record, default=str).encode())
        self._run(write)
