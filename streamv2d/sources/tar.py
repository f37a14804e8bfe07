"""WebDataset tar shards: members grouped into samples by key, unsafe members refused and counted."""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, List, Optional, Sequence, Tuple

import fsspec


from ..sample import FAILED_TO_DOWNLOAD, Sample
from .base import InputShard
from .paths import PathSpec, content_digest, expand


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
    """Existing WebDataset shards as a source; each tar file is one input shard."""

    needs_fetch = False

    def __init__(self, spec: PathSpec, *, storage_options: Optional[dict] = None, max_member_bytes: int = 2 << 30):
        self.storage_options = storage_options or {}
        self.max_member_bytes = max_member_bytes
        self.paths: List[str] = expand(spec, self.storage_options)
        self._shards = [InputShard(i, p) for i, p in enumerate(self.paths)]

    def shards(self) -> Sequence[InputShard]:
        return self._shards

    def fingerprint(self) -> str:
        """Each tar's size and first bytes (:func:`content_digest`), read in parallel: not its path or mtime."""
        with ThreadPoolExecutor(16) as pool:
            digests = list(pool.map(lambda p: content_digest(p, self.storage_options), self.paths))
        return hashlib.sha256(("tar" + "".join(digests)).encode()).hexdigest()[:16]

    def read(self, shard: InputShard) -> Iterator[Sample]:
        """Samples of one tar, in file order; a corrupt tar ends with a failure record, not an exception."""
        current: Optional[Sample] = None
        try:
            with fsspec.open(shard.path, "rb", **self.storage_options) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for member in tar:
                    reason = unsafe_reason(member)
                    if reason:
                        yield _refused(shard, member.name, reason)
                        continue
                    if not member.isfile():
                        continue
                    key, ext = split_member(member.name)
                    if key is None:
                        continue
                    if member.size > self.max_member_bytes:
                        yield _refused(shard, member.name, f"member larger than {self.max_member_bytes} bytes")
                        continue
                    data = tar.extractfile(member).read()
                    if current is not None and current["__key__"] != key:
                        yield current
                        current = None
                    if current is None:
                        current = {"__key__": key, "__url__": shard.path}
                    current[ext] = decode_payload(ext, data)
                reason = _bad_ending(f, tar.offset) if shard.path.endswith(".tar") else None
                if reason:
                    raise tarfile.ReadError(reason)
        except (tarfile.TarError, OSError, EOFError) as exc:
            if current is not None:
                yield current
                current = None
            yield _refused(shard, shard.path, f"unreadable tar: {type(exc).__name__}: {exc}")
        if current is not None:
            yield current


def _bad_ending(f, offset: int) -> Optional[str]:
    """tarfile stops silently at an invalid header after the first member; a complete tar has only zero
    blocks (or nothing) there, so anything else means the shard was cut or corrupted."""
    try:
        f.seek(offset)
        tail = f.read(1024)
    except (OSError, ValueError):   # not seekable: nothing more can be checked
        return None
    return f"invalid tar header at byte {offset}: truncated or corrupt shard" if tail.strip(b"\0") else None


def decode_payload(ext: str, data: bytes):
    """json and txt become dict and str, like the table source's samples; everything else stays bytes."""
    if ext == "json":
        try:
            return json.loads(data)
        except ValueError:
            return data
    if ext == "txt":
        return data.decode("utf-8", errors="replace")
    return data


def _refused(shard: InputShard, name: str, reason: str) -> Sample:
    key, _ = split_member(name)
    return {
        "__key__": key or name,
        "__url__": shard.path,
        "json": {"key": key or name, "status": FAILED_TO_DOWNLOAD, "error_message": reason},
    }


def looks_like_tar_spec(spec: PathSpec) -> bool:
    """True when every path of ``spec`` names a tar file (before expansion, so no I/O)."""
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    return bool(items) and all(os.fspath(i).split("?")[0].endswith((".tar", ".tar.gz", ".tgz")) for i in items)
