"""What every source provides: a lazy list of input shards and a reader for one of them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence, runtime_checkable

from ..sample import Sample


@dataclass(frozen=True)
class InputShard:
    """One unit of work: rows ``[start, stop)`` of a table file, or a whole tar file.

    ``id`` is global and stable: the same source always numbers its shards the same way,
    so sample keys and output shard names agree across machines and runs.
    """

    id: int
    path: str
    start: int = 0
    stop: int = 0

    @property
    def num_rows(self) -> int:
        return self.stop - self.start


@runtime_checkable
class Source(Protocol):
    """Lists input shards without reading them all, and reads one shard's rows on demand."""

    #: True when rows carry only a URL and must be fetched (tables); False when they carry media (tars).
    needs_fetch: bool

    def shards(self) -> Sequence[InputShard]:
        """All input shards, in id order."""

    def read(self, shard: InputShard, start: int = 0) -> Iterator[Sample]:
        """The rows of ``shard`` from its ``start``-th on (earlier ones skipped by position, unread where the
        format allows), as samples with ``__key__`` and ``json`` (and media for tar sources)."""

    def fingerprint(self) -> str:
        """A digest that changes whenever the shards' contents or their cutting could change."""
