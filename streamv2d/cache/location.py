"""Where a store's published files live: a local (or mounted) folder, or any fsspec store (``s3://``, ``gs://``, …).

Shards are always written on local disk first (the spool and journal); publishing moves a finished file to its
final name — a rename on a local folder, an upload on an object store. Either way a reader sees a whole file or
none: a rename is atomic, and so is a single PUT or a completed multipart upload on S3, GCS and Azure.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from typing import Any, Dict, List, Optional

import fsspec

from .layout import published_names

#: The extra of ``pyproject.toml`` that brings each protocol's fsspec driver.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


def is_url(path: str) -> bool:
    """Whether ``path`` names an fsspec store rather than a local folder (``file://`` counts as local)."""
    path = os.fspath(path)
    return ("://" in path or "::" in path) and not path.startswith("file://")


def open_filesystem(url: str, storage_options: Optional[Dict[str, Any]], what: str):
    """``(filesystem, path)`` of ``url``, or ImportError naming the extra that brings a missing driver."""
    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        protocol = url.split("://", 1)[0]
        extra = EXTRAS.get(protocol)
        hint = f"pip install 'streamv2d[{extra}]'" if extra else f"install the fsspec driver for {protocol}://"
        raise ImportError(f"{what}: {url!r} needs a driver that is not installed ({exc}); {hint}") from None


def scratch_folder(tmp_dir: Optional[str], url: str, namespace: str) -> str:
    """The local folder holding spools, journals and the failure memo of the store at ``url``, namespace
    ``namespace``: under ``tmp_dir`` (default: the system temp dir), keyed by both, so a node resumes its own."""
    base = tmp_dir or os.path.join(tempfile.gettempdir(), "streamv2d-scratch")
    return os.path.join(os.path.abspath(base), hashlib.sha256(f"{url}|{namespace}".encode()).hexdigest()[:16])


class Location:
    """The folder (local path or fsspec URL) published shards go to; picklable (the filesystem is reopened)."""

    def __init__(self, url: str, storage_options: Optional[Dict[str, Any]] = None, *, what: str = "output"):
        url = os.fspath(url)
        self.local = not is_url(url)
        self.storage_options = dict(storage_options or {})
        self.url = os.path.abspath(url[len("file://"):] if url.startswith("file://") else url) if self.local else url
        self._fs, self._pid = None, os.getpid()
        if self.local:
            self.root = self.url
        else:
            self._fs, root = open_filesystem(url, self.storage_options, what)
            self.root = root.rstrip("/")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_fs"] = None
        return state

    @property
    def fs(self):
        """The fsspec filesystem (local ones too), opened on first use in each process (a forked child cannot
        use its parent's: its event loop stayed behind)."""
        if self._fs is None or self._pid != os.getpid():
            self._fs = (fsspec.filesystem("file") if self.local
                        else open_filesystem(self.url, self.storage_options, "output")[0])
            self._pid = os.getpid()
        return self._fs

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts) if self.local else "/".join((self.root,) + parts)

    def display(self, path: str) -> str:
        """``path`` as the user names it (with its protocol), for messages."""
        return path if self.local else self.fs.unstrip_protocol(path)

    def fresh(self) -> None:
        """Forget listings cached by the filesystem: other nodes publish meanwhile."""
        if not self.local:
            self.fs.invalidate_cache()

    def exists(self, path: str) -> bool:
        if self.local:
            return os.path.exists(path)
        return self.fs.exists(path)

    def listdir(self, folder: str) -> List[str]:
        """Base names in ``folder`` (empty when missing)."""
        if self.local:
            return os.listdir(folder) if os.path.isdir(folder) else []
        try:
            return [entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(folder, detail=False)]
        except FileNotFoundError:
            return []

    def published_names(self, folder: str) -> List[str]:
        """Zero-padded ids of the shards whose stats file exists (``00042`` for ``00042_stats.json``)."""
        return published_names(self.listdir(folder))

    def open(self, path: str, mode: str = "rb"):
        return open(path, mode) if self.local else self.fs.open(path, mode)

    def read_json(self, path: str) -> Optional[Dict[str, Any]]:
        """The JSON document at ``path``, or None when there is none."""
        try:
            with self.open(path, "r") as f:
                return json.load(f)
        except FileNotFoundError:
            return None

    def write_json(self, path: str, document: Dict[str, Any]) -> None:
        """``document`` at ``path``, atomically (a rename, or one PUT)."""
        from .writer import write_json

        if self.local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            write_json(path, document)
        else:
            self.fs.pipe_file(path, json.dumps(document, indent=1, sort_keys=True).encode())

    def publish(self, staged: str, final: str) -> None:
        """Move the local file or folder ``staged`` to ``final``: a rename here, an upload (then the local copy
        is deleted) on a store. A folder (format ``files``) appears file by file on a store; its stats file, written
        after it, is what marks the shard complete."""
        if self.local:
            if os.path.isdir(staged) and os.path.isdir(final):   # a crash between two renames of an earlier try
                shutil.rmtree(final)
            os.makedirs(os.path.dirname(final), exist_ok=True)   # (the hidden folder, for parquet's metadata)
            os.replace(staged, final)
            return
        if os.path.isdir(staged):
            self.fs.put(staged.rstrip("/") + "/", final, recursive=True)
            shutil.rmtree(staged)
        else:
            self.fs.put_file(staged, final)
            os.remove(staged)

    def remove(self, path: str) -> None:
        """Delete ``path`` (a file or a folder); nothing when it is missing."""
        if self.local:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)
            return
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def __repr__(self) -> str:
        return f"Location({self.url!r})"
