"""Per-shard ``flock`` leases: writers hold it exclusive, readers shared, the evictor tries exclusive.

Locks belong to an open file, so they also exclude other threads of the same process and vanish
when a process dies (kill -9 included); lock files are never deleted, which keeps flock race-free."""
from __future__ import annotations

import fcntl
import os
from typing import Optional


class ShardLease:
    """A lock on one shard's lock file; ``acquire`` returns False instead of waiting when ``wait=False``."""

    def __init__(self, path: str):
        self.path = path
        self._fd: Optional[int] = None

    def acquire(self, *, exclusive: bool, wait: bool) -> bool:
        """Take the lock; False when ``wait`` is False and another holder conflicts."""
        if self._fd is not None:
            raise RuntimeError(f"{self.path}: lease already held")
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        flags = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | (0 if wait else fcntl.LOCK_NB)
        try:
            fcntl.flock(fd, flags)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)   # closing the only descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "ShardLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
