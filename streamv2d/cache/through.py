"""``write_through``: stream a shard while writing it to the cache, or serve it from the cache.

The same generator feeds a DataLoader worker (training) and a materialize process (curation): a complete
shard is read from disk without touching the processor; otherwise rows are processed, appended to the
shard's spool and journaled one by one, and the shard is published when the rows run out. A consumer
that stops early publishes nothing; the journal keeps its progress for the next run."""
from __future__ import annotations

import logging
from typing import Any, Dict, Iterator, List, Optional, Set

from ..pipeline import UNREADABLE, RowHook, ShardProcessor
from ..sample import FAILED_TO_DOWNLOAD, FAILED_TO_SUBSAMPLE, SUCCESS, Sample, is_success, mark_failed
from ..sources import InputShard
from ..stats import ShardStats
from .journal import Journal, Progress
from .store import CacheMiss, CacheStore
from .writer import TarSpool, optional_size, remove_stale_temps, publish_data, spool_samples, write_json, write_metadata

log = logging.getLogger("streamv2d")


def write_through(processor: ShardProcessor, shard: InputShard, store: CacheStore) -> Iterator[Sample]:
    """Every sample of ``shard``: from the cache when complete, else processed and written through.

    Successes are always yielded; failure records too while processing (the cache keeps only their
    metadata). When another process is writing the shard, it is streamed uncached instead of waiting."""
    for _ in range(2):   # the shard may be published or evicted between two looks: look once more
        if store.is_complete(shard.id):
            try:
                yield from store.read(shard.id)
                return
            except CacheMiss:
                pass
        with store.lease(shard.id) as lease:
            if lease.acquire(exclusive=True, wait=False) and not store.is_complete(shard.id):
                yield from _write_shard(processor, shard, store)
                return
        if not store.is_complete(shard.id):
            break
    log.info("shard %d is being written by another process; streaming it without caching", shard.id)
    yield from processor.process(shard)


def _write_shard(processor: ShardProcessor, shard: InputShard, store: CacheStore) -> Iterator[Sample]:
    """Resume or start shard ``shard`` under its exclusive lease (held by the caller)."""
    journal, paths = store.journal, store.paths(shard.id)
    progress = journal.progress(shard.id)
    if progress is None or (optional_size(paths.spool) or 0) < progress.offset:
        journal.clear(shard.id)          # nothing journaled, or the spool lost its tail: start afresh
        progress = Progress(0, 0, ShardStats(shard.id))
    done = journal.done_keys(shard.id)
    spool = TarSpool(paths.spool, progress.offset)
    try:
        if progress.offset:
            log.info("shard %d: resuming after %d rows", shard.id, progress.rows)
            yield from spool_samples(paths.spool, shard.id)
        stats = progress.stats
        rows = processor.process_rows(shard, stats, before_fetch=_row_hook(journal, done, processor.source.needs_fetch))
        unreadable = False
        for row_status, outputs in rows:
            if not row_status:          # done in an earlier run: already in the spool
                continue
            if row_status["json"].get(UNREADABLE):   # rows are missing: keep the journal, publish nothing
                unreadable = True
                yield from outputs
                continue
            stored = [_spooled(spool, sample) for sample in outputs]
            if stored != outputs:
                stats.replace_row(row_status, outputs, stored)
                outputs = stored
            spool.flush()
            meta = row_metadata(row_status, outputs)
            permanent = meta["status"] == FAILED_TO_DOWNLOAD and row_status["json"].get("permanent") is True
            journal.commit_row(shard.id, row_status["__key__"], spool.offset, stats, meta, permanent)
            yield from outputs
        if unreadable:
            log.warning("shard %d could not be read to its end; not published, it is retried next time", shard.id)
            return
        spool.finish()
        _publish(store, shard.id, stats)
    finally:
        spool.close()


def _spooled(spool: TarSpool, sample: Sample) -> Sample:
    """Append a success to the spool; one that cannot be stored (a tensor payload) becomes a
    ``failed_to_subsample`` record instead of ending the shard."""
    if not is_success(sample):
        return sample
    try:
        spool.write(sample)
        return sample
    except (TypeError, ValueError) as exc:
        return mark_failed(sample, FAILED_TO_SUBSAMPLE, str(exc))


def _row_hook(journal: Journal, done: Set[str], needs_fetch: bool) -> RowHook:
    """Skip rows already written; replay remembered permanent fetch failures instead of refetching."""
    def before_fetch(row: Sample) -> Optional[List[Sample]]:
        if row["__key__"] in done:
            return []
        url = row.get("json", {}).get("url")
        if not (needs_fetch and url and is_success(row)):
            return None
        memo = journal.failure(str(url))
        if memo is None:
            return None
        record = mark_failed(row, memo["status"], memo["error_message"], detail=memo.get("error_detail") or "")
        record["json"]["permanent"] = True
        return [record]
    return before_fetch


def row_metadata(row_status: Sample, outputs: List[Sample]) -> Dict[str, Any]:
    """The metadata parquet row of one input row: its json after the fetch, with the subsampling failure
    when no output succeeded."""
    meta = dict(row_status.get("json", {}))
    meta.setdefault("key", row_status["__key__"])
    meta.setdefault("status", SUCCESS)
    meta.setdefault("error_message", None)
    if meta["status"] == SUCCESS and outputs and not any(is_success(o) for o in outputs):
        failed = outputs[0]["json"]
        meta.update(status=failed.get("status"), error_message=failed.get("error_message"))
    return meta


def _publish(store: CacheStore, shard_id: int, stats: ShardStats) -> None:
    """Data and metadata first, stats last (the completion marker), each by rename; then forget the journal."""
    paths = store.paths(shard_id)
    remove_stale_temps(paths)            # a process killed mid-publish left these; we hold the shard's lease
    write_metadata(paths.meta, store.journal.metadata(shard_id))
    publish_data(paths.spool, paths)
    write_json(paths.stats, stats.to_dict())
    store.journal.clear(shard_id)
    store.enforce_limit()
