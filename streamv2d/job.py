"""``Job``: the one description of a job — source, table options, fetch policy, subsampler chain, output — that
every entry point is built from (``VideoDataset``, ``materialize``, the CLI, YAML and video2dataset configs), so
they cannot drift. Every field is checked when the Job is made."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional, Sequence, Union

from .cache.layout import check_format
from .fetch import FetchConfig, merged
from .sources.table import TableOptions
from .subsamplers import Chain, SubsamplerLike
from .subsamplers.chain import cacheable


def positive_int(name: str, value: Any, *, minimum: int = 1, allow_none: bool = False) -> Optional[int]:
    """``value`` as an int of at least ``minimum``, or ValueError naming the setting (None passes when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: {value!r} is not an integer >= {minimum}")
    return value


@dataclass
class Job:
    """What to process and how: ``source`` (a table, tar shards or a :class:`~streamv2d.sources.Source`),
    ``table`` (:class:`TableOptions`, or a dict of its fields), ``fetch`` (:class:`FetchConfig` or a dict),
    ``subsamplers`` (in order), ``output_format`` of written shards (``tar``, ``parquet``, ``files``) and the
    ``processes`` a local ``materialize`` runs (None: one per usable CPU, at most one per shard), or the ``distributor`` (:mod:`streamv2d.engines`) and its
    ``distributor_args`` running it on a cluster. ``notes`` are the video2dataset keys a config gave that mean
    nothing here, with the reason (printed by the CLI)."""

    source: Any = None
    subsamplers: Sequence[SubsamplerLike] = ()
    table: Union[TableOptions, Mapping[str, Any]] = field(default_factory=TableOptions)
    fetch: Union[FetchConfig, Mapping[str, Any], None] = field(default_factory=FetchConfig)
    output_format: str = "tar"
    processes: Optional[int] = None
    distributor: str = "multiprocessing"
    distributor_args: Mapping[str, Any] = field(default_factory=dict)
    notes: List[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if isinstance(self.table, Mapping):
            unknown = sorted(set(self.table) - {f.name for f in dataclasses.fields(TableOptions)})
            if unknown:
                raise ValueError(f"unknown table option(s) {unknown}; known: "
                                 f"{[f.name for f in dataclasses.fields(TableOptions)]}")
            self.table = TableOptions(**self.table)
        self.fetch = FetchConfig.from_any(self.fetch)
        if self.table.storage_options and not self.fetch.storage_options:   # media on the table's store
            self.fetch = merged(self.fetch, storage_options=self.table.storage_options)
        positive_int("fetch.threads", self.fetch.threads)
        self.output_format = check_format(self.output_format)
        self.processes = positive_int("processes", self.processes, allow_none=True)
        from .engines import check_distributor

        self.distributor, self.distributor_args = check_distributor(self.distributor, self.distributor_args)
        self.subsamplers = list(self.subsamplers)
        self.chain = Chain(self.subsamplers)   # checks every stage is callable

    def replace(self, **changes: Any) -> "Job":
        """A copy with ``changes`` applied (and checked again); ``table=`` may be a dict of fields to change."""
        table = changes.pop("table", None)
        if isinstance(table, Mapping):
            changes["table"] = dataclasses.replace(self.table, **table)
        elif table is not None:
            changes["table"] = table
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values.update(changes)
        values["notes"] = list(values["notes"])
        return Job(**values)

    def require_cacheable(self, what: str) -> None:
        """Refuse, up front, a chain with stages a shard cannot hold (``Frames``' tensors) for ``what``."""
        if self.chain.after_cache:
            names = ", ".join(type(s).__name__ for s in self.subsamplers if not cacheable(s))
            raise ValueError(f"{what} writes shards, which cannot hold what {names} makes (tensors); run it "
                             f"when reading the shards: VideoDataset(output, subsamplers=[...])")
