"""Where one output shard's files live inside a cache namespace (or an output folder).

Published files stand in the folder itself, under video2dataset's names; everything else (the namespace
description, spools, journals, locks) lives in one hidden folder, so readers that glob the folder see shards only.
"""
from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from typing import Iterable, List, Tuple

#: Output formats: WebDataset tar, parquet with media as binary columns, a directory of files per shard, and
#: video2dataset's tfrecord and dummy (no samples kept), see :mod:`.formats`.
FORMATS = ("tar", "parquet", "files", "tfrecord", "dummy")
#: video2dataset's names for our formats.
FORMAT_ALIASES = {"webdataset": "tar"}

#: The hidden folder of a namespace: ``namespace.json``, ``spool/`` (shards being written and their journals),
#: ``locks/``, ``leases/`` and ``failed/`` (on object stores); and, in a cache folder, ``memo/`` (the failed-URL memo shared by its namespaces).
META_DIR = ".streamv2d"

#: Suffix of a shard's stats file, the last file published: its presence marks the shard complete.
STATS_SUFFIX = "_stats.json"


def check_format(fmt: str) -> str:
    """``fmt`` (or the format a video2dataset alias names), or ValueError naming the known formats."""
    fmt = FORMAT_ALIASES.get(fmt, fmt)
    if fmt not in FORMATS:
        raise ValueError(f"output format: {fmt!r} is not one of {', '.join(FORMATS + tuple(FORMAT_ALIASES))}")
    return fmt


def meta_dir(root: str) -> str:
    """The hidden bookkeeping folder of the namespace at ``root`` (a local path or a path on a store)."""
    return f"{root.rstrip('/')}/{META_DIR}"


@dataclass(frozen=True)
class ShardPaths:
    """File names of output shard ``shard_id``: ``{id}.tar`` (or ``{id}.parquet`` with the metadata, ``{id}/``,
    ``{id}.tfrecord``), ``{id}_stats.json`` (written last: its presence means complete) and ``{id}.parquet``
    (metadata) under ``root`` (a local folder or a path on an fsspec store); its spool, journal and lock under
    ``work``, a local folder (default: the hidden folder of ``root``; a scratch folder when ``root`` is on an
    object store)."""

    root: str
    shard_id: int
    fmt: str = "tar"
    digits: int = 5
    work: str = ""

    @property
    def name(self) -> str:
        return f"{self.shard_id:0{self.digits}d}"

    def _path(self, suffix: str) -> str:
        return f"{self.root.rstrip('/')}/{self.name}{suffix}"

    @property
    def _work(self) -> str:
        return self.work or meta_dir(self.root)

    @property
    def data(self) -> str:
        if self.fmt == "dummy":   # no data file: a marker out of readers' way
            return os.path.join(meta_dir(self.root), "dummy", self.name)
        return self._path({"tar": ".tar", "parquet": ".parquet", "files": "", "tfrecord": ".tfrecord"}[self.fmt])

    @property
    def stats(self) -> str:
        return self._path(STATS_SUFFIX)

    @property
    def meta(self) -> str:
        """The metadata parquet; with format ``parquet`` it is folded into the data file (video2dataset's
        layout: one ``{id}.parquet`` of metadata and media), so it waits in the hidden folder."""
        if self.fmt == "parquet":
            return os.path.join(meta_dir(self.root), "meta", self.name + ".parquet")
        return self._path(".parquet")

    @property
    def spool(self) -> str:
        """The append-only tar the shard is written to before it is published."""
        return os.path.join(self._work, "spool", self.name + ".tar")

    @property
    def journal(self) -> str:
        """The shard's journal, beside its spool: one JSON line per finished input row."""
        return os.path.join(self._work, "spool", self.name + ".journal")

    def staged(self, final: str) -> str:
        """The local name ``final`` is prepared under before it is published (beside the spool)."""
        return temp_name(os.path.join(self._work, "spool", final.rsplit("/", 1)[-1]))

    @property
    def index(self) -> str:
        """How many samples each input row of the published shard wrote, so a position can be found by row."""
        return f"{meta_dir(self.root)}/index/{self.name}.json"

    @property
    def lock(self) -> str:
        """The local ``flock`` file of the shard's lease (local folders)."""
        return os.path.join(self._work, "locks", self.name + ".lock")

    @property
    def lease(self) -> str:
        """The lease object of the shard on an object store: holder and expiry, in the hidden folder."""
        return f"{meta_dir(self.root)}/leases/{self.name}.json"

    @property
    def failure(self) -> str:
        """The record a run leaves when the shard raised (read by ``status``; stale once the shard is complete)."""
        return f"{meta_dir(self.root)}/failed/{self.name}.json"

    def published(self) -> Tuple[str, str, str]:
        """The final names, in publication order (stats last)."""
        return self.data, self.meta, self.stats


def temp_name(path: str) -> str:
    """A sibling name no other process on any host uses, never a final name: ``path.tmp-<host>-<pid>-<random>``."""
    return f"{path}.tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def published_names(names: Iterable[str]) -> List[str]:
    """Zero-padded ids of the shards whose stats file is among ``names`` (``00042`` for ``00042_stats.json``)."""
    stems = (n[: -len(STATS_SUFFIX)] for n in names if n.endswith(STATS_SUFFIX))
    return sorted(s for s in stems if s.isdigit())


def spooling_names(root: str) -> List[str]:
    """Ids of the shards of ``root`` with a spool: being written, or left by a stopped run."""
    folder = os.path.join(meta_dir(root), "spool")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(n[:-4] for n in names if n.endswith(".tar") and n[:-4].isdigit())
