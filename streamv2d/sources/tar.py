"""WebDataset tar shards: members grouped into samples by key, unsafe members refused and counted."""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import fsspec

from ..fetch.config import FetchConfig
from ..sample import FAILED_TO_DOWNLOAD, Sample
from .base import InputShard
from .paths import PathSpec, content_digest, expand

#: Extensions webdataset's default decoders unpickle (pkl, pickle, pyd) or ``torch.load`` (pth), and ``pt``,
#: torch.save's usual one: such a member copied into an output shard runs code wherever that shard is decoded.
PICKLE_EXTENSIONS = frozenset({"pkl", "pickle", "pyd", "pth", "pt"})

#: A member is held in memory whole, so the cap is the fetch cap (FetchConfig.max_bytes): a video a table source
#: would download is one a tar source reads, and nothing larger is ever read. Jobs pass their own cap.
MAX_MEMBER_BYTES = FetchConfig.max_bytes


def split_member(name: str) -> Tuple[Optional[str], Optional[str]]:
    """``dir/key.ext.more`` → (``dir/key``, ``ext.more``), the way webdataset groups members."""
    directory, base = posixpath.split(name)
    if "." not in base or base.startswith("."):
        return None, None
    stem, ext = base.split(".", 1)
    return posixpath.join(directory, stem) if directory else stem, ext


def unsafe_reason(member: tarfile.TarInfo) -> Optional[str]:
    """Why a member must not be used, or None: absolute paths, ``..`` escapes and links are refused."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return f"absolute member path {name!r}"
    if ".." in name.replace("\\", "/").split("/"):
        return f"member path escapes the shard {name!r}"
    if member.issym() or member.islnk():
        return f"link member {name!r}"
    return None


class TarSource:
    """Existing WebDataset shards as a source; each tar file is one input shard.

    A sample whose members cannot all be trusted fails as a whole (a ``failed_to_download`` record naming the
    member): an unsafe path or link, a member over ``max_member_bytes`` (skipped unread), a pickle-capable member
    (:data:`PICKLE_EXTENSIONS`, unless ``allow_pickle``), a ``.json`` member that is not a JSON object, or a
    repeated extension (webdataset's "duplicate file name"). A key met again after other samples keeps its first
    sample; the later group fails, under a ``__key__`` of its own, so every row of a shard has a distinct key."""

    needs_fetch = False

    def __init__(self, spec: PathSpec, *, storage_options: Optional[dict] = None,
                 max_member_bytes: int = MAX_MEMBER_BYTES, allow_pickle: bool = False):
        self.storage_options = storage_options or {}
        self.max_member_bytes = max_member_bytes
        self.allow_pickle = allow_pickle
        self.paths: List[str] = expand(spec, self.storage_options)
        self._shards = [InputShard(i, p) for i, p in enumerate(self.paths)]

    def shards(self) -> Sequence[InputShard]:
        return self._shards

    def fingerprint(self) -> str:
        """Each tar's size and first bytes (:func:`content_digest`), read in parallel: not its path or mtime."""
        with ThreadPoolExecutor(16) as pool:
            digests = list(pool.map(lambda p: content_digest(p, self.storage_options), self.paths))
        return hashlib.sha256(("tar" + "".join(digests)).encode()).hexdigest()[:16]

    def read(self, shard: InputShard, start: int = 0) -> Iterator[Sample]:
        """Samples of one tar, in file order, from its ``start``-th on (earlier ones are passed over by their
        headers, their payloads unread); a corrupt tar ends with a failure record, not an exception."""
        return self._read(shard, start, payloads=True)

    def count(self, shard: InputShard) -> int:
        """How many samples :meth:`read` yields for ``shard``, from the member headers alone (no payload read)."""
        return sum(1 for _ in self._read(shard, 0, payloads=False))

    def _read(self, shard: InputShard, start: int, payloads: bool) -> Iterator[Sample]:
        try:
            with fsspec.open(shard.path, "rb", **self.storage_options) as f, _open_tar(f) as tar:
                yield from self._samples(tar, shard.path, start, payloads)
                reason = _bad_ending(f, tar.offset) if shard.path.endswith(".tar") else None
                if reason:
                    raise tarfile.ReadError(reason)
        except (tarfile.TarError, OSError, EOFError) as exc:
            yield _refused(shard.path, shard.path, f"unreadable tar: {type(exc).__name__}: {exc}")

    def _samples(self, tar: tarfile.TarFile, url: str, start: int = 0, payloads: bool = True) -> Iterator[Sample]:
        """The members grouped into samples, from the ``start``-th (without ``payloads``: keys only, nothing
        read); the group read when the tar breaks is yielded before the error. The keys seen are remembered to
        refuse duplicates: one set per tar, the shard's own size."""
        seen: Set[str] = set()
        group: Optional[_Group] = None
        try:
            for member in _members(tar):
                key, ext = split_member(member.name)
                reason = unsafe_reason(member)
                if reason is None and (key is None or not member.isfile()):
                    continue   # directories and extensionless files belong to no sample (as in webdataset)
                key = key or member.name
                if group is None or group.key != key:
                    if group is not None and group.index >= start:
                        yield group.sample()
                    group = _Group(url, key, group.index + 1 if group else 0, key in seen)
                    seen.add(key)
                if group.index < start or not payloads:
                    continue
                if reason:
                    group.fail(reason)
                elif group.error is None:   # a failed sample's further members are not read
                    try:
                        group.add(ext, self._payload(tar, member, ext))
                    except _MemberRefused as exc:
                        group.fail(str(exc))
        except (tarfile.TarError, OSError, EOFError):
            if group is not None and group.index >= start:
                yield group.sample()
            raise
        if group is not None and group.index >= start:
            yield group.sample()

    def _payload(self, tar: tarfile.TarFile, member: tarfile.TarInfo, ext: str) -> Any:
        """The member decoded (:func:`decode_payload`); :class:`_MemberRefused` when it must not be (unread
        when refused for its extension or size)."""
        name = member.name
        if not self.allow_pickle and ext.rsplit(".", 1)[-1].lower() in PICKLE_EXTENSIONS:
            raise _MemberRefused(f"pickle-capable member {name!r} refused (TarSource allow_pickle=True keeps it)")
        if member.size > self.max_member_bytes:
            raise _MemberRefused(f"member {name} has {member.size} bytes, "
                                 f"over max_member_bytes={self.max_member_bytes}")
        data = _member_bytes(tar, member)
        if ext != "json":
            return decode_payload(ext, data)
        try:
            return sample_json(data)
        except ValueError as exc:
            raise _MemberRefused(f"member {name}: {exc}") from None


class _MemberRefused(Exception):
    """A member its sample cannot be made with; the message is the sample's error message."""


class _Group:
    """The members of one key read so far, or why that sample fails; ``index`` numbers the group in its tar."""

    def __init__(self, url: str, key: str, index: int, duplicate: bool):
        self.url, self.key, self.index, self.duplicate = url, key, index, duplicate
        self.payloads: Dict[str, Any] = {}
        self.error = f"duplicate key {key!r}: the tar's first sample of that key is kept" if duplicate else None

    def add(self, ext: str, payload: Any) -> None:
        """One member's payload; a repeated or reserved (``__key__``) extension fails the sample."""
        if ext in self.payloads or ext.startswith("__"):
            self.fail(f"duplicate member {self.key + '.' + ext!r} in one sample")
        else:
            self.payloads[ext] = payload

    def fail(self, reason: str) -> None:
        """Mark the sample failed with its first reason; payloads are dropped now, not held until it ends."""
        self.error = self.error or reason
        self.payloads = {}

    def sample(self) -> Sample:
        if self.error is None:
            return {"__key__": self.key, "__url__": self.url, **self.payloads}
        # a repeated key's record gets a key no group can have (a dot in its last part): rows stay distinct
        row_key = f"{self.key}.{self.index}" if self.duplicate else self.key
        return _refused(self.url, self.key, self.error, row_key)


def _open_tar(f) -> tarfile.TarFile:
    """Random access when the file can seek (skipping a member then reads none of it), else a stream."""
    return tarfile.open(fileobj=f, mode="r:*" if f.seekable() else "r|*")


def _members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members in file order, without the list of every member read that tarfile keeps (it grows with
    the tar; nothing here looks members up again)."""
    while True:
        member = tar.next()
        if member is None:
            return
        tar.members.clear()
        yield member


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """A member's bytes read at its offset: one allocation of its size, where ``extractfile().read()``
    held two copies at its peak (a 600 MB member: 1.2 GB)."""
    tar.fileobj.seek(member.offset_data)
    data = tar.fileobj.read(member.size)
    if len(data) != member.size:
        raise tarfile.ReadError(f"member {member.name} is cut short: {len(data)} of {member.size} bytes")
    return data


def _bad_ending(f, offset: int) -> Optional[str]:
    """tarfile stops silently at an invalid header after the first member; a complete tar has only zero
    blocks (or nothing) there, so anything else means the shard was cut or corrupted."""
    try:
        f.seek(offset)
        tail = f.read(1024)
    except (OSError, ValueError):   # not seekable: nothing more can be checked
        return None
    return f"invalid tar header at byte {offset}: truncated or corrupt shard" if tail.strip(b"\0") else None


def sample_json(data: bytes) -> Dict[str, Any]:
    """A ``.json`` member as a sample's metadata: a JSON object, whose ``status`` and ``error_message`` (the
    fields counted downstream) are text when present; ValueError saying what is wrong otherwise."""
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise ValueError(f"not JSON ({type(exc).__name__}: {str(exc)[:100]})") from None
    if not isinstance(value, dict):
        raise ValueError(f"a JSON {type(value).__name__}, not an object")
    for field in ("status", "error_message"):
        if not isinstance(value.get(field, ""), (str, type(None))):
            raise ValueError(f"its {field!r} is not a string")
    return value


def decode_payload(ext: str, data: bytes):
    """json and txt become dict and str, like the table source's samples; everything else stays bytes
    (json that is not an object too: :func:`sample_json`)."""
    if ext == "json":
        try:
            return sample_json(data)
        except ValueError:
            return data
    if ext == "txt":
        return data.decode("utf-8", errors="replace")
    return data


def _refused(url: str, key: str, reason: str, row_key: Optional[str] = None) -> Sample:
    """A failure record for ``key`` (its metadata row's key); ``row_key`` when the row needs another one."""
    return {
        "__key__": row_key or key,
        "__url__": url,
        "json": {"key": key, "status": FAILED_TO_DOWNLOAD, "error_message": reason},
    }


def looks_like_tar_spec(spec: PathSpec) -> bool:
    """True when every path of ``spec`` names a tar file (before expansion, so no I/O)."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    return bool(items) and all(os.fspath(i).split("?")[0].endswith((".tar", ".tar.gz", ".tgz")) for i in items)
