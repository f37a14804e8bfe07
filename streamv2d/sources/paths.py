"""Turn a user's source spec (path, URL, brace pattern, glob, or a list of those) into file URLs."""
from __future__ import annotations

import hashlib
import os
from typing import Iterable, List, Optional, Sequence, Union

import fsspec
from braceexpand import braceexpand

from ..errors import SourceError

PathSpec = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

_GLOB_CHARS = "*?["


def expand(spec: PathSpec, storage_options: Optional[dict] = None) -> List[str]:
    """Expand braces and globs; keep the user's order for lists and braces, sort glob matches.

    Raises :class:`SourceError` when a glob matches nothing or a local file does not exist.
    """
    items = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not items:
        raise SourceError("empty source: no paths given")
    out: List[str] = []
    for item in items:
        for path in braceexpand(os.fspath(item)):
            out.extend(_glob(path, storage_options or {}))
    return out


def _glob(path: str, storage_options: dict) -> List[str]:
    if not any(c in path for c in _GLOB_CHARS) or path.startswith(("http://", "https://")):
        if _is_local(path) and not os.path.exists(_strip_file(path)):
            raise SourceError(f"{path}: no such file")
        return [path]
    fs, _, _ = fsspec.get_fs_token_paths(path, storage_options=storage_options)
    matches = sorted(fs.glob(path))
    if not matches:
        raise SourceError(f"{path}: the pattern matches no file")
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [m if _is_local(path) else f"{protocol}://{m}" for m in matches]


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _strip_file(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def file_identity(paths: Iterable[str], storage_options: Optional[dict] = None) -> str:
    """Digest of each file's path, size and modification stamp (or ETag): cheap, no reads. It says whether a
    local copy made from the files (a converted table) is still current; it is no content identity."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.encode())
        try:
            fs, fpath = fsspec.core.url_to_fs(path, **(storage_options or {}))
            info = fs.info(fpath)
        except Exception:  # an unreachable file gets its path only; reading it will report the error
            continue
        for field in ("size", "mtime", "LastModified", "ETag", "etag", "last_modified"):
            if field in info:
                digest.update(f"{field}={info[field]}".encode())
    return digest.hexdigest()[:16]


#: Bytes at the start of a file that stand for its content when it is not read whole (tar shards).
HEAD_BYTES = 1 << 16


def content_digest(path: str, storage_options: Optional[dict] = None) -> str:
    """A digest of what ``path`` holds, the same wherever it is copied or mounted and however often touched: its
    size and its first :data:`HEAD_BYTES`. A file that cannot be read is a :class:`SourceError`, never a silently
    other digest."""
    try:
        fs, fpath = fsspec.core.url_to_fs(path, **(storage_options or {}))
        size = int(fs.size(fpath))
        with fs.open(fpath, "rb") as f:
            head = f.read(HEAD_BYTES)
    except Exception as exc:
        raise SourceError(f"{path}: cannot read it to identify its content: {type(exc).__name__}: {exc}") from exc
    return hashlib.sha256(f"{size}|".encode() + head).hexdigest()


def stream_digest(path: str, storage_options: Optional[dict] = None) -> str:
    """The SHA-256 of ``path``'s whole content, read once in 1 MiB chunks."""
    digest = hashlib.sha256()
    with fsspec.open(path, "rb", **(storage_options or {})) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
