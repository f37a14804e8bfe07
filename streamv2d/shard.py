"""``ShardJob``: the unit of work — process input shard k of a :class:`~streamv2d.job.Job` into output shard k.

Every entry point is a loop over it: a training epoch streams ``samples(k)`` (through the cache when there is
one), ``materialize`` and the cluster engines call ``run(k, store)``, resume passes ``start_row``. Running it
twice, concurrently or after a kill gives the same output shard, published atomically (see
:mod:`streamv2d.cache.through`)."""
from __future__ import annotations

from typing import Iterator, Optional, Sequence

from .job import Job
from .pipeline import RowGroup, RowResult, ShardProcessor
from .sample import Sample
from .sources import InputShard, Source, open_source
from .stats import ShardStats


class ShardJob:
    """A :class:`Job` opened for work: its source listed once, its chain compiled once. Picklable (workers,
    engines); each process makes its own thread pool and connections."""

    def __init__(self, job: Job):
        self.job = job
        self.source: Source = open_source(job.source, job.table, max_member_bytes=job.fetch.max_bytes,
                                          allow_pickle=job.fetch.allow_pickle_members)
        self.chain = job.chain
        self.processor = ShardProcessor(self.source, job.fetch)

    def shards(self) -> Sequence[InputShard]:
        return self.source.shards()

    def shard(self, k: int) -> InputShard:
        return self.source.shards()[k]

    def rows(self, k: int, *, start_row: int = 0, stop_row: Optional[int] = None, epoch: int = 0,
             stats: Optional[ShardStats] = None, cached_part: bool = False, memo=None) -> Iterator[RowResult]:
        """Input shard ``k``'s rows ``[start_row, stop_row)`` (None: to its end), processed by the whole chain (or,
        with ``cached_part``, by the stages before the cache boundary), as explicit results, in row order."""
        stages = self.chain.before_cache if cached_part else self.chain.stages
        return self.processor.process_rows(self.shard(k), stages, stats, start_row=start_row, stop_row=stop_row,
                                           epoch=epoch, memo=memo)

    def row_groups(self, k: int, store=None, *, epoch: int = 0, start_row: int = 0,
                   stop_row: Optional[int] = None) -> Iterator[RowGroup]:
        """Shard ``k``'s rows from ``start_row`` on, each with its output samples (failure records included), in
        row order: through ``store`` (the write-through cache: read back when complete, else written as it
        streams) then the stages after the cache boundary — or straight through the whole chain without a
        store. The same samples either way; rows before ``start_row`` are never fetched or decoded. ``stop_row``
        ends the rows early (a piece of a shard: read from the cache when complete, else streamed uncached, as the
        cache stores whole shards)."""
        if store is None:
            for result in self.rows(k, start_row=start_row, stop_row=stop_row, epoch=epoch):
                yield result.index, result.outputs
            return
        from .cache.through import write_through_rows

        groups = write_through_rows(self, k, store, epoch=epoch, start_row=start_row, stop_row=stop_row)
        if self.chain.after_cache:
            groups = self.processor.run_after(groups, self.chain.after_cache, epoch)
        yield from groups

    def samples(self, k: int, store=None, *, epoch: int = 0) -> Iterator[Sample]:
        """Every output sample of shard ``k`` (see :meth:`row_groups`)."""
        for _, outputs in self.row_groups(k, store, epoch=epoch):
            yield from outputs

    def run(self, k: int, store) -> ShardStats:
        """Process shard ``k`` to completion into ``store`` (skipped when complete); its stats. A shard another
        process is writing is waited for (published by it, or taken over if it died) rather than done uncached.
        The job must hold only stages a shard can store (:meth:`Job.require_cacheable`); a disk error raises
        ``CacheWriteError`` (the shard stays resumable) rather than streaming on as training does."""
        from .cache.through import CacheWriteError, write_through

        self.job.require_cacheable("a shard job")
        with store.lease(k) as lease:
            lease.acquire(exclusive=False, wait=True)   # returns once no other process is writing it
        for _ in write_through(self, k, store, on_disk_error="raise"):
            pass
        if not store.is_complete(k):
            raise CacheWriteError(f"shard {k}: not published (its input could not be read to the end, or another "
                                  "process took it meanwhile); run it again to resume it")
        return store.stats(k)
