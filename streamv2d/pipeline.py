"""One input shard → its processed rows: read, fetch, run the stages, count everything.

Fetching and subsampling of a row run together in a bounded thread pool (network waits and PyAV's GIL-free
decoding overlap), and results come back in row order so output shards are deterministic. Rows that need no
fetch run inline when the process has one core to itself. Each row comes out as a :class:`RowResult`: what
happened is in its fields, never in flags inside the samples.
"""
from __future__ import annotations

import itertools
import logging
import os
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from . import profile
from .decode.media import media_limits
from .distribute.world import core_share
from .fetch import Fetcher, FetchConfig
from .fetch.pool import ordered_map
from .sample import FAILED_TO_DOWNLOAD, Sample, is_success, mark_failed
from .sources import InputShard, Source
from .stats import ShardStats
from .subsamplers import SubsamplerLike, run_chain
from .subsamplers.base import row_context

log = logging.getLogger("streamv2d")

#: One input row's outputs: its index in the shard and the samples it made.
RowGroup = Tuple[int, List[Sample]]

#: Looks a row's URL up in a memo of permanent failures: the remembered ``json`` fields, or None to fetch it.
Memo = Callable[[str], Optional[Dict[str, Any]]]


@dataclass
class RowResult:
    """One input row of a shard, processed.

    ``record`` is the row after its fetch (``__key__`` and ``json``, no media); ``outputs`` are the samples the
    stages made from it, failure records included. ``permanent``: the fetch failed in a way another try cannot
    change (a 404, not media), so it may be remembered; ``replayed``: the outcome came from that memory and
    nothing was fetched; ``truncated``: the shard could not be read past this row, which stands for its rest."""

    index: int
    record: Sample
    outputs: List[Sample] = field(default_factory=list)
    nbytes: int = 0
    permanent: bool = False
    replayed: bool = False
    truncated: bool = False

    @property
    def key(self) -> str:
        return self.record["__key__"]


class ShardProcessor:
    """Processes input shards for one consumer; owns that consumer's thread pool and HTTP session."""

    def __init__(self, source: Source, fetch: FetchConfig):
        self.source = source
        self.config = fetch
        self.fetcher = Fetcher(fetch)
        self._executor: Optional[ThreadPoolExecutor] = None
        self._executor_pid = 0

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_executor"] = None
        return state

    @property
    def executor(self) -> ThreadPoolExecutor:
        """This process's pool: a pool inherited through fork has no threads, so a child makes its own (as does a
        processor whose pool :func:`shutdown_pools` stopped)."""
        if self._executor is None or self._executor_pid != os.getpid() or self._executor not in _POOLS:
            self._executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="streamv2d-fetch")
            self._executor_pid = os.getpid()
            _POOLS.add(self._executor)
        return self._executor

    def process_rows(self, shard: InputShard, stages: Sequence[SubsamplerLike], stats: Optional[ShardStats] = None,
                     *, start_row: int = 0, stop_row: Optional[int] = None, epoch: int = 0,
                     memo: Optional[Memo] = None) -> Iterator[RowResult]:
        """Rows ``start_row..`` of ``shard`` through the compiled ``stages`` (earlier rows are skipped by position:
        never fetched), in row order;
        ``stats`` is filled as rows complete and finished when the shard is exhausted (a consumer that stops
        early leaves it unfinished)."""
        stats = stats if stats is not None else ShardStats(shard.id)
        rows = enumerate(self._rows(shard, start_row), start_row)
        if stop_row is not None:   # a piece of the shard: rows past it are never read, so never fetched
            rows = itertools.islice(rows, max(0, stop_row - start_row))
        task = lambda item: self._process_row(item[0], *item[1], stages, epoch, memo)  # noqa: E731
        for result in self._map(task, rows, needs_io=self.source.needs_fetch):
            stats.add_row(result.record, result.outputs, result.nbytes)
            for sample in result.outputs:
                if not is_success(sample):
                    log.debug("%s: %s", sample["__key__"], sample["json"].get("error_message"))
            yield result
        stats.finish()
        log.info("shard %d: %d of %d rows succeeded (%d samples), %d failed to download, %d failed to subsample",
                 shard.id, stats.successes, stats.count, stats.samples, stats.failed_to_download,
                 stats.failed_to_subsample)

    def run_after(self, groups: Iterable[RowGroup], chain: Sequence[SubsamplerLike],
                  epoch: int = 0) -> Iterator[RowGroup]:
        """``chain`` over each row's samples in this consumer's pool, rows in order — e.g. ``Frames`` on what the
        cache returns, decoded in parallel like an uncached epoch's."""
        def task(group: RowGroup) -> RowGroup:
            row, samples = group
            return row, [out for sample in samples
                         for out in _run_chain_at(row, sample, chain, epoch, self.config.max_pixels)]
        return self._map(task, groups, needs_io=False)

    def _map(self, task: Callable, items: Iterable, needs_io: bool) -> Iterator:
        """``task`` over ``items`` in order: in the pool when there is network I/O to overlap or more than one
        core for this process; inline otherwise (a DataLoader worker per core gains nothing from hand-offs)."""
        if needs_io or core_share() > 1:
            return ordered_map(task, items, self.executor, 2 * self.config.threads)
        return map(task, items)

    def _rows(self, shard: InputShard, start: int) -> Iterator[Tuple[Sample, bool]]:
        """``(row, truncated)`` for the shard's rows from ``start``; a shard that cannot be read (a corrupt parquet
        page, a vanished file) ends with one failure record for its unread rest instead of an exception that
        would end the epoch."""
        try:
            for row in profile.timed("read", self.source.read(shard, start)):
                yield row, False
        except Exception as exc:
            key = f"{shard.id:05d}_unreadable"
            log.warning("shard %d (%s) cannot be read: %s", shard.id, shard.path, exc)
            yield mark_failed({"__key__": key, "json": {"key": key}}, FAILED_TO_DOWNLOAD,
                              f"unreadable shard {shard.path}: {type(exc).__name__}: {exc}"), True

    def _process_row(self, index: int, row: Sample, truncated: bool, stages: Sequence[SubsamplerLike], epoch: int,
                     memo: Optional[Memo]) -> RowResult:
        """One row: fetched (unless its source holds the bytes), then through ``stages``; its CPU time by stage is
        profiled (:mod:`streamv2d.profile`)."""
        with profile.stage("row"):
            url = row.get("json", {}).get("url")
            fetches = self.source.needs_fetch and is_success(row) and not truncated
            remembered = memo(str(url)) if fetches and memo is not None and url else None
            if remembered is not None:
                record = mark_failed(row, remembered["status"], remembered["error_message"],
                                     detail=remembered.get("error_detail") or "")
                return RowResult(index, record, [record], permanent=True, replayed=True)
            permanent = False
            if fetches:
                with profile.stage("fetch"):
                    row, nbytes, permanent = self.fetcher.fetch_outcome(row)
            else:
                nbytes = sum(len(v) for v in row.values() if isinstance(v, bytes))
            record = {"__key__": row["__key__"], "json": dict(row.get("json", {}))}
            outputs = _run_chain_at(index, row, stages, epoch, self.config.max_pixels)
            return RowResult(index, record, outputs, nbytes, permanent=permanent and not is_success(row),
                             truncated=truncated)


_POOLS: "weakref.WeakSet[ThreadPoolExecutor]" = weakref.WeakSet()


def shutdown_pools(timeout: float = 10.0) -> None:
    """Stop every fetch pool of this process: rows not started are dropped, and running ones are waited for, up to
    ``timeout`` seconds in all (a pool is made again when needed). Call it before forking workers from a process
    that iterated a dataset itself and stopped early: a fork while a pool thread is inside the C library (its
    resolver, say) can leave a lock held forever in the child."""
    deadline = time.monotonic() + timeout
    pools = list(_POOLS)
    for pool in pools:
        pool.shutdown(wait=False, cancel_futures=True)
        _POOLS.discard(pool)
    for pool in pools:
        for thread in list(getattr(pool, "_threads", ())):
            thread.join(max(0.0, deadline - time.monotonic()))


def _run_chain_at(index: int, sample: Sample, chain: Sequence[SubsamplerLike], epoch: int,
                  max_pixels: int) -> List[Sample]:
    """``chain`` on ``sample``, known as row ``index`` of its shard in ``epoch`` while it runs: decode slots go in
    row order, the order outputs leave in (keys need not be sorted); random draws follow the epoch; media is
    opened under the job's ``max_pixels``."""
    with row_context(index, epoch), media_limits(max_pixels):
        return run_chain(sample, chain)
