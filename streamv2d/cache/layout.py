"""Where one output shard's files live inside a cache namespace (or an output folder)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List

#: Output formats: WebDataset tar, parquet with media as binary columns, a directory of files per shard.
FORMATS = ("tar", "parquet", "files")

#: Hidden folders: the LMDB journal (one per cache folder) and a namespace's per-shard lock files.
JOURNAL_DIR = ".journal"
LOCKS_DIR = ".locks"

#: Suffix of a shard's stats file, the last file published: its presence marks the shard complete.
STATS_SUFFIX = "_stats.json"

#: Suffix of the append-only spool a shard is written to before it is published.
SPOOL_SUFFIX = ".tar.partial"


def check_format(fmt: str) -> str:
    """``fmt`` itself, or ValueError naming the known formats."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


@dataclass(frozen=True)
class ShardPaths:
    """File names of output shard ``shard_id``: ``{id}.tar`` (or ``{id}_samples.parquet``, ``{id}/``),
    ``{id}_stats.json`` (written last: its presence means complete) and ``{id}.parquet`` (metadata)."""

    root: str
    shard_id: int
    fmt: str = "tar"
    digits: int = 5

    @property
    def name(self) -> str:
        return f"{self.shard_id:0{self.digits}d}"

    def _path(self, suffix: str) -> str:
        return os.path.join(self.root, self.name + suffix)

    @property
    def data(self) -> str:
        return self._path({"tar": ".tar", "parquet": "_samples.parquet", "files": ""}[self.fmt])

    @property
    def stats(self) -> str:
        return self._path(STATS_SUFFIX)

    @property
    def meta(self) -> str:
        return self._path(".parquet")

    @property
    def spool(self) -> str:
        return self._path(SPOOL_SUFFIX)

    @property
    def lock(self) -> str:
        return os.path.join(self.root, LOCKS_DIR, self.name + ".lock")

    def published(self) -> "tuple[str, str, str]":
        """The final names, in publication order (stats last)."""
        return self.data, self.meta, self.stats


def temp_name(path: str) -> str:
    """A sibling name private to this process, never a final name: ``path.tmp-<pid>``."""
    return f"{path}.tmp-{os.getpid()}"


def published_names(root: str) -> List[str]:
    """Zero-padded ids of the shards under ``root`` whose stats file exists (``00042`` for ``00042_stats.json``)."""
    stems = (n[: -len(STATS_SUFFIX)] for n in os.listdir(root) if n.endswith(STATS_SUFFIX))
    return sorted(s for s in stems if s.isdigit())
