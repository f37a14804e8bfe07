"""One input shard → its output samples: read rows, fetch, run subsamplers, count everything.

Fetching and subsampling of a row run together in a bounded thread pool (network waits and PyAV's
GIL-free decoding overlap), and results come back in row order so output shards are deterministic. Rows that
need no fetch run inline when the process has one core to itself.
"""
from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

from .distribute.world import core_share
from .fetch import Fetcher, FetchConfig
from .fetch.pool import ordered_map
from .sample import FAILED_TO_DOWNLOAD, Sample, is_success, mark_failed
from .sources import InputShard, Source
from .stats import ShardStats
from .subsamplers import SubsamplerLike, compile_chain, run_chain
from .subsamplers.base import row_sequence

log = logging.getLogger("streamv2d")

#: Called with each row before it is fetched: None to process it, or the outputs to use instead
#: (``[]`` drops the row uncounted — already done; ``[record]`` replays a remembered failure).
RowHook = Callable[[Sample], Optional[List[Sample]]]

#: Marks the failure record that ends a shard whose rows could not all be read.
UNREADABLE = "shard_unreadable"

#: A processed row: its status record (``json`` after the fetch) and the samples it produced.
ProcessedRow = Tuple[Sample, List[Sample]]


class ShardProcessor:
    """Processes input shards for one consumer; owns that consumer's thread pool and HTTP session."""

    def __init__(self, source: Source, fetch: FetchConfig, subsamplers: Sequence[SubsamplerLike] = ()):
        self.source = source
        self.config = fetch
        self.fetcher = Fetcher(fetch)
        self.subsamplers = list(subsamplers)            # as given: what the cache fingerprint describes
        self.chain = compile_chain(self.subsamplers)     # as run: consecutive video ops fused into one pass
        self._executor: Optional[ThreadPoolExecutor] = None
        self._executor_pid = 0

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_executor"] = None
        return state

    @property
    def executor(self) -> ThreadPoolExecutor:
        """This process's pool: a pool inherited through fork has no threads, so a child makes its own."""
        if self._executor is None or self._executor_pid != os.getpid():
            self._executor = ThreadPoolExecutor(self.config.threads, thread_name_prefix="streamv2d-fetch")
            self._executor_pid = os.getpid()
        return self._executor

    def process(self, shard: InputShard, stats: Optional[ShardStats] = None) -> Iterator[Sample]:
        """Every output sample of ``shard``, failures included, in row order."""
        for _, outputs in self.process_rows(shard, stats):
            yield from outputs

    def process_rows(self, shard: InputShard, stats: Optional[ShardStats] = None,
                     before_fetch: Optional[RowHook] = None) -> Iterator[ProcessedRow]:
        """Rows of ``shard`` with their outputs, in row order; ``stats`` is filled as rows complete and
        finished when the shard is exhausted (a consumer that stops early leaves it unfinished)."""
        stats = stats if stats is not None else ShardStats(shard.id)
        task = lambda item: self._process_row(*item, before_fetch)  # noqa: E731
        rows = enumerate(self._rows(shard))
        for fetched_bytes, row_status, outputs in self._map(task, rows, needs_io=self.source.needs_fetch):
            if row_status is not None:
                stats.add_row(row_status, outputs, fetched_bytes)
            for sample in outputs:
                if not is_success(sample):
                    log.debug("%s: %s", sample["__key__"], sample["json"].get("error_message"))
            yield row_status or {}, outputs
        stats.finish()
        log.info("shard %d: %d of %d rows succeeded (%d samples), %d failed to download, %d failed to subsample",
                 shard.id, stats.successes, stats.count, stats.samples, stats.failed_to_download,
                 stats.failed_to_subsample)

    def run_after(self, samples: Iterable[Sample], chain: Sequence[SubsamplerLike]) -> Iterator[Sample]:
        """``chain`` over ``samples`` in this consumer's pool, results in order — e.g. ``Frames`` on what the
        cache returns, decoded in parallel like an uncached epoch's."""
        for outputs in self._map(lambda item: _run_chain_at(*item, chain), enumerate(samples), needs_io=False):
            yield from outputs

    def _map(self, task: Callable, items: Iterable, needs_io: bool) -> Iterator:
        """``task`` over ``items`` in order: in the pool when there is network I/O to overlap or more than one
        core for this process; inline otherwise (a DataLoader worker per core gains nothing from hand-offs)."""
        if needs_io or core_share() > 1:
            return ordered_map(task, items, self.executor, 2 * self.config.threads)
        return map(task, items)

    def _rows(self, shard: InputShard) -> Iterator[Sample]:
        """The shard's rows; a shard that cannot be read (a corrupt parquet page, a vanished file) ends with
        one failure record for its unread rest instead of an exception that would end the epoch."""
        try:
            yield from self.source.read(shard)
        except Exception as exc:
            key = f"{shard.id:05d}_unreadable"
            log.warning("shard %d (%s) cannot be read: %s", shard.id, shard.path, exc)
            record = mark_failed({"__key__": key, "json": {"key": key}}, FAILED_TO_DOWNLOAD,
                                 f"unreadable shard {shard.path}: {type(exc).__name__}: {exc}")
            record["json"][UNREADABLE] = True   # the shard is incomplete: a cache must not publish it
            yield record

    def _process_row(self, seq: int, row: Sample,
                     before_fetch: Optional[RowHook]) -> Tuple[int, Optional[Sample], List[Sample]]:
        if before_fetch is not None:
            replay = before_fetch(row)
            if replay is not None:
                return 0, (replay[0] if replay else None), replay
        if self.source.needs_fetch and is_success(row):
            row, nbytes = self.fetcher.fetch_sample(row)
        else:
            nbytes = sum(len(v) for v in row.values() if isinstance(v, bytes))
        status = {"__key__": row["__key__"], "json": dict(row.get("json", {}))}
        return nbytes, status, _run_chain_at(seq, row, self.chain)


def _run_chain_at(seq: int, sample: Sample, chain: Sequence[SubsamplerLike]) -> List[Sample]:
    """``chain`` on ``sample``, known as row ``seq`` of its shard while it runs: decode slots go in row order,
    the order outputs leave in (keys need not be sorted). A context variable, so nothing reaches the outputs."""
    with row_sequence(seq):
        return run_chain(sample, chain)
