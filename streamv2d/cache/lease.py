"""Per-shard leases. On a local folder, ``flock``: writers hold it exclusive, readers shared, the evictor tries
exclusive. On an object store, a lease object per shard with an expiry (:class:`ObjectLease`).

Locks belong to an open file, so they also exclude other threads of the same process and vanish
when a process dies (kill -9 included); lock files are never deleted, which keeps flock race-free."""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any, Dict, Optional, Tuple

log = logging.getLogger("streamv2d")


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


#: Seconds an object-store lease lasts unless renewed (renewed every third of it while the shard runs).
LEASE_SECONDS = 60.0


def holder_id() -> str:
    """Who holds a lease: host, process and a random part (unique across nodes and restarts)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class LeaseLost(RuntimeError):
    """Another node took this shard's lease over (ours expired unrenewed): the shard is theirs now."""


class ObjectLease:
    """A lease object per shard on an object store: ``{"holder", "expires"}`` written by a conditional create
    (``If-None-Match: *``), renewed while held by a conditional replace (``If-Match`` our ETag), taken over
    once expired (``If-Match`` the expired one's ETag), deleted on release. So of two nodes racing for a shard,
    one wins, even on takeover. Stores without conditional writes get a weaker check-then-write (see
    ``docs/cache.md``). Expiry uses the holder's clock: nodes' clocks must agree to well within ``seconds``.

    Shared acquisition (a reader) takes nothing on an object store; with ``wait`` it waits until no live holder
    is left (the shard was published, or its holder died and the lease expired)."""

    #: The leases this process holds, by path (so publication can confirm the one it runs under).
    _held: Dict[str, "ObjectLease"] = {}

    def __init__(self, location, path: str, seconds: float = LEASE_SECONDS):
        self.location, self.path, self.seconds = location, path, float(seconds)
        self._etag: Optional[str] = None
        self._stop = threading.Event()
        self._renewer: Optional[threading.Thread] = None
        self._renewing = threading.Lock()   # the renewer thread and a publisher's confirmation take turns
        self.lost = False

    def acquire(self, *, exclusive: bool, wait: bool) -> bool:
        """Take the lease (exclusive), or wait for no live holder (shared); False when ``wait`` is False and
        another live holder has it."""
        if self._etag is not None:
            raise RuntimeError(f"{self.path}: lease already held")
        while True:
            if not exclusive:
                if not wait or self.holder() is None:
                    return True
            elif self._try_take():
                ObjectLease._held[self.path] = self
                self._renewer = threading.Thread(target=self._renew_loop, daemon=True, name=f"lease {self.path}")
                self._renewer.start()
                return True
            if not wait:
                return False
            time.sleep(min(1.0, self.seconds / 4))

    def holder(self) -> Optional[Dict[str, Any]]:
        """The live lease on this shard (holder and expiry), or None when there is none or it expired."""
        found = self._read()
        return found[0] if found is not None and found[0]["expires"] > time.time() else None

    def _read(self) -> Optional[Tuple[Dict[str, Any], str]]:
        fs = self.location.fs
        try:   # the tag first: if the object changes before the read, a replace conditional on it fails
            tag = version_tag(fs, self.path)
            return json.loads(fs.cat_file(self.path)), tag
        except FileNotFoundError:
            return None
        except ValueError:   # unreadable: a store without atomic PUTs; treat as expired
            return {"holder": "?", "expires": 0.0}, ""

    def _body(self) -> bytes:
        return json.dumps({"holder": self._holder, "expires": time.time() + self.seconds}).encode()

    def _try_take(self) -> bool:
        self._holder = holder_id()
        etag = conditional_put(self.location.fs, self.path, self._body(), None)
        if etag is None:
            found = self._read()
            if found is None or found[0]["expires"] > time.time():
                return False
            log.info("lease %s of %s expired: taking it over", self.path, found[0].get("holder"))
            etag = conditional_put(self.location.fs, self.path, self._body(), found[1])
            if etag is None:
                return False
        self._etag, self.lost = etag, False
        return True

    def renew(self) -> None:
        """Extend the lease by ``seconds`` from now; :class:`LeaseLost` when another node has taken it over."""
        with self._renewing:
            if self._etag is None or self.lost:
                raise LeaseLost(f"{self.path}: lease not held")
            etag = conditional_put(self.location.fs, self.path, self._body(), self._etag)
            if etag is None:
                self.lost = True
                raise LeaseLost(f"{self.path}: lease taken over by another node after it expired")
            self._etag = etag

    @classmethod
    def renew_held(cls, path: str) -> None:
        """Renew the lease this process holds on ``path``; :class:`LeaseLost` when it holds none any more."""
        held = cls._held.get(path)
        if held is None:
            raise LeaseLost(f"{path}: this process holds no lease on the shard")
        held.renew()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.seconds / 3):
            try:
                self.renew()
            except LeaseLost as exc:
                log.warning("%s", exc)
                return
            except OSError as exc:   # the store is unreachable for a moment: try again at the next tick
                log.warning("lease %s: renewal failed (%s); retrying", self.path, exc)

    def release(self) -> None:
        if self._renewer is not None:
            self._stop.set()
            self._renewer.join()
            self._renewer = None
        if self._etag is not None and not self.lost:
            conditional_delete(self.location.fs, self.path, self._etag)
        if ObjectLease._held.get(self.path) is self:
            del ObjectLease._held[self.path]
        self._etag = None
        self._stop = threading.Event()

    def __enter__(self) -> "ObjectLease":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _s3_bucket_key(fs, path: str) -> Tuple[str, str]:
    bucket, key, _ = fs.split_path(path)
    return bucket, key


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    code = getattr(cause, "response", {}).get("Error", {}).get("Code")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or isinstance(exc, FileExistsError)


def conditional_put(fs, path: str, body: bytes, etag: Optional[str]) -> Optional[str]:
    """Write ``body`` at ``path`` only if no object is there (``etag`` None) or the object there still has
    ``etag``; the new ETag, or None when the condition did not hold. S3 (and S3-compatible stores) do this
    atomically; elsewhere it is check-then-write, then a read-back (two nodes racing within one round trip can
    both believe they won)."""
    if _is_s3(fs):
        bucket, key = _s3_bucket_key(fs, path)
        condition = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
        try:
            return str(fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, **condition)["ETag"])
        except OSError as exc:
            if _precondition_failed(exc):
                return None
            raise
    try:
        current: Optional[str] = version_tag(fs, path)
    except FileNotFoundError:
        current = None
    if current != etag:
        return None
    fs.pipe_file(path, body)
    return version_tag(fs, path) if fs.cat_file(path) == body else None


def version_tag(fs, path: str) -> str:
    """What identifies the object's current version: its ETag (object stores) or modification time."""
    info = fs.info(path, refresh=True) if _is_s3(fs) else fs.info(path)
    return str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified", ""))


def conditional_delete(fs, path: str, etag: str) -> None:
    """Delete ``path`` if it still has ``etag`` (a lease taken over meanwhile is left to its new holder)."""
    try:
        if _is_s3(fs):
            bucket, key = _s3_bucket_key(fs, path)
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
        else:
            fs.rm_file(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if not _precondition_failed(exc):
            raise


def _is_s3(fs) -> bool:
    return "s3" in (fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))
