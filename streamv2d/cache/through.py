"""The cache stage: stream a shard's cached part while writing it to its output shard, or read it back.

The same generator feeds a DataLoader worker (training) and ``materialize`` (curation): a complete shard is
read from disk without touching the network; otherwise rows are processed by the stages before the cache
boundary, appended to the shard's spool with every output (failure records too, as video2dataset writes them)
and journaled one by one, and the shard is published when the rows run out. A consumer that stops early
publishes nothing; the journal keeps its progress, by position, for the next run. What is yielded while writing
is exactly what a later read returns."""
from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Dict, Generator, Iterable, Iterator, List, Optional, Sequence, Tuple

from ..pipeline import RowGroup
from ..sample import FAILED_TO_SUBSAMPLE, SUCCESS, Sample, is_success, mark_failed
from ..sources.tar import decode_payload
from ..stats import ShardStats
from .journal import Progress, ShardJournal
from .layout import ShardPaths
from .store import CacheMiss, CacheStore
from .writer import TarSpool, encode_sample, optional_size, publish_data, remove_stale_temps, spool_keys, spool_samples

log = logging.getLogger("streamv2d")


class CacheWriteError(OSError):
    """The cache could not be written (a full or failing disk); the shard is left unpublished, resumable."""


#: What the memo keeps of a permanent failure, to replay it as it was.
MEMO_FIELDS = ("status", "error_message", "error_detail")


class ShardBusy(RuntimeError):
    """Another process is writing the shard (``if_busy="raise"``): leave it to that process for now."""


def write_through(shard_job, k: int, store: CacheStore, *, epoch: int = 0, on_disk_error: str = "stream",
                  if_busy: str = "stream") -> Iterator[Sample]:
    """Every sample of shard ``k`` after the stages before the cache boundary (see :func:`write_through_rows`)."""
    for _, outputs in write_through_rows(shard_job, k, store, epoch=epoch, on_disk_error=on_disk_error,
                                         if_busy=if_busy):
        yield from outputs


def write_through_rows(shard_job, k: int, store: CacheStore, *, epoch: int = 0, start_row: int = 0,
                       stop_row: Optional[int] = None, on_disk_error: str = "stream",
                       if_busy: str = "stream") -> Iterator[RowGroup]:
    """Shard ``k``'s rows ``[start_row, stop_row)`` (None: to its end), each with its samples after the stages before
    the cache boundary: from the cache when complete (rows before ``start_row`` passed over unread), else processed
    and written through. When another process is writing the shard, the rows before ``start_row`` were never
    written, or only a piece of the shard is asked for (``stop_row``: the cache writes whole shards), it is streamed
    uncached instead — or, with ``if_busy="raise"`` (a curation run, which has other shards to do), a shard
    another process holds raises :class:`ShardBusy` before anything is fetched. A disk error while writing
    streams the rest of the shard uncached with one warning (``on_disk_error="stream"``, training) or raises
    :class:`CacheWriteError` (``"raise"``)."""
    for _ in range(3):   # the shard may be published or evicted between two looks: look again
        if store.is_complete(k):
            try:
                for row, samples in _until(store.read_rows(k, start_row), start_row, stop_row):
                    yield row, samples
                    start_row = row + 1   # a second look goes on after what was delivered
                return
            except CacheMiss:
                pass
        if stop_row is not None:
            break
        with store.lease(k) as lease:
            if lease.acquire(exclusive=True, wait=False) and not store.is_complete(k):
                finished_publication = yield from _write_shard(shard_job, k, store, epoch, start_row,
                                                               on_disk_error)
                if not finished_publication:
                    return
                continue
        if not store.is_complete(k):
            if if_busy == "raise":
                raise ShardBusy(f"shard {k} is being written by another process")
            log.info("shard %d is being written by another process; streaming it without caching", k)
            break
    yield from _uncached(shard_job, k, epoch, start_row, stop_row)


def _until(groups: Iterator[RowGroup], start_row: int, stop_row: Optional[int]) -> Iterator[RowGroup]:
    """The rows of ``groups`` (consecutive from ``start_row``) before ``stop_row``; all of them when it is None."""
    return groups if stop_row is None else itertools.islice(groups, max(0, stop_row - start_row))


def _uncached(shard_job, k: int, epoch: int, start_row: int, stop_row: Optional[int] = None) -> Iterator[RowGroup]:
    """Rows ``[start_row, stop_row)`` of shard ``k`` through the stages before the cache boundary, nothing written."""
    for result in shard_job.rows(k, start_row=start_row, stop_row=stop_row, epoch=epoch, cached_part=True):
        yield result.index, result.outputs


def _write_shard(shard_job, k: int, store: CacheStore, epoch: int, start_row: int,
                 on_disk_error: str) -> Generator[RowGroup, None, bool]:
    """Resume or start shard ``k`` under its exclusive lease (held by the caller). Returns True when it only
    finished the publication a killed run had sealed (nothing to yield: the caller reads the shard back)."""
    paths, journal = store.paths(k), store.journal(k)
    progress = journal.load(optional_size(paths.spool))
    if progress.sealed and not (os.path.exists(paths.spool) or store.location.exists(paths.data)):
        journal.remove()   # published, then evicted before a kill let its journal go: write the shard again
        progress = Progress()
    if progress.sealed:
        try:
            _publish(store, k, journal, progress)
            return True
        except OSError as exc:
            _disk_error(k, exc, on_disk_error)
            yield from _uncached(shard_job, k, epoch, start_row)
            return False
    if start_row > progress.rows:   # delivered rows were never written: do not fetch them again to cache them
        yield from _uncached(shard_job, k, epoch, start_row)
        return False
    stats = progress.stats or ShardStats(k)
    spool: Optional[TarSpool] = None
    try:
        spool = TarSpool(paths.spool, progress.offset)
        journal.start(progress)
    except OSError as exc:
        if spool is not None:
            spool.close()
        journal.close()
        _disk_error(k, exc, on_disk_error)
        yield from _uncached(shard_job, k, epoch, start_row)
        return False
    if progress.rows > start_row:
        log.info("shard %d: resuming after %d rows", k, progress.rows)
        skip = sum(progress.outputs_per_row[:start_row])
        replayed = _published_at(paths.data, spool_samples(paths.spool, k, skip))
        yield from grouped(replayed, progress.outputs_per_row[start_row:], start_row)
    rows = shard_job.rows(k, start_row=progress.rows, epoch=epoch, stats=stats, cached_part=True,
                          memo=store.memo.get)
    truncated = False
    try:
        for result in rows:
            if result.truncated or spool is None:   # rows are missing, or the disk failed: publish nothing
                truncated = True
                yield result.index, result.outputs
                continue
            try:
                stored = _append(spool, journal, result, stats, paths.data)
            except OSError as exc:
                _disk_error(k, exc, on_disk_error)
                spool.close()
                spool = None
                yield result.index, result.outputs
                continue
            if result.permanent and not result.replayed and result.record["json"].get("url"):
                meta = result.record["json"]
                store.memo.put(str(meta["url"]), {name: meta.get(name) for name in MEMO_FIELDS})
            yield result.index, stored
        if truncated:
            log.warning("shard %d was not written to its end; not published, it is resumed next time", k)
            return False
        try:
            spool.finish()
            journal.seal(stats)
            _publish(store, k, journal, journal.load(optional_size(paths.spool)))
        except OSError as exc:
            _disk_error(k, exc, on_disk_error)
        return False
    finally:
        if spool is not None:
            spool.close()
        journal.close()


def grouped(samples: Iterable[Sample], counts: Sequence[int], first_row: int) -> Iterator[RowGroup]:
    """``samples`` cut into rows of ``counts`` samples, numbered from ``first_row``; None counts: one a row."""
    samples = iter(samples)
    if counts is None:
        yield from ((row, [sample]) for row, sample in enumerate(samples, first_row))
        return
    for row, count in enumerate(counts, first_row):
        outputs = list(itertools.islice(samples, count))
        if len(outputs) != count:
            raise CacheMiss(f"row {row}: {len(outputs)} of its {count} samples are on disk")
        yield row, outputs


def _append(spool: TarSpool, journal: ShardJournal, result, stats: ShardStats, url: str) -> List[Sample]:
    """Spool one input row's outputs and journal it; the outputs as a later read of the shard returns them (the
    ones the spool holds: a failure record it cannot hold is in the metadata only, and not counted in the row)."""
    spooled = [_spooled(spool, sample) for sample in result.outputs]
    final = [sample for sample, _ in spooled]
    if any(a is not b for a, b in zip(final, result.outputs)):
        stats.replace_row(result.record, result.outputs, final)
    spool.flush()
    held = [sample for sample, written in spooled if written]
    journal.append(result.index, spool.offset, stats, [output_metadata(s) for s in final], len(held))
    return list(_published_at(url, map(_as_read_back, held)))


def _spooled(spool: TarSpool, sample: Sample) -> Tuple[Sample, bool]:
    """Append ``sample`` to the spool: the sample stored and whether the spool holds it. A success that cannot be
    stored (a tensor payload, a key that cannot name members) becomes a ``failed_to_subsample`` record instead of
    ending the shard; a failure record that cannot be stored stays in the metadata parquet only."""
    try:
        spool.write(sample)
        return sample, True
    except (TypeError, ValueError) as exc:
        if not is_success(sample):
            return sample, False
        return _spooled(spool, mark_failed(sample, FAILED_TO_SUBSAMPLE, str(exc)))


def _published_at(url: str, samples: Iterable[Sample]) -> Iterator[Sample]:
    """``samples`` named as a read of the published shard at ``url`` names them (``__url__``)."""
    for sample in samples:
        yield {**sample, "__url__": url}


def _as_read_back(sample: Sample) -> Sample:
    """``sample`` as reading its shard gives it (json through JSON, …), so the writing epoch and later ones agree."""
    out = {k: v for k, v in sample.items() if k.startswith("__")}
    for ext, data in encode_sample(sample):
        out[ext] = decode_payload(ext, data)
    return out


def output_metadata(sample: Sample) -> Dict[str, Any]:
    """The metadata parquet row of one written sample: its json, with key, status and error message."""
    meta = dict(sample.get("json", {}))
    meta.setdefault("key", sample["__key__"])
    meta.setdefault("status", SUCCESS)
    meta.setdefault("error_message", None)
    return meta


def _disk_error(k: int, exc: OSError, on_disk_error: str) -> None:
    if on_disk_error == "raise":
        raise CacheWriteError(f"shard {k}: cannot write the cache: {exc}") from exc
    log.warning("shard %d: cannot write the cache (%s); streaming the rest of it uncached", k, exc)


def _write_index(paths: ShardPaths, progress: Progress, location) -> None:
    """The shard's index: the samples of each input row, to enter it at a row; and, for the files format, whose
    directory keeps no order, the keys in written order."""
    index: Dict[str, Any] = {"outputs_per_row": progress.outputs_per_row}
    if paths.fmt == "files":
        index["keys"] = spool_keys(paths.spool)
    location.write_json(paths.index, index)


def _publish(store: CacheStore, k: int, journal: ShardJournal, progress: Progress) -> None:
    """The index, data and metadata first, stats last (the completion marker), each staged locally then renamed
    into place (local folder) or uploaded in one PUT (object store); then forget the journal. Idempotent: a run
    killed at any point of it is finished by the next one without refetching anything (on the same node;
    another node redoes the shard)."""
    paths, location = store.paths(k), store.location
    remove_stale_temps(paths)            # a process killed mid-publish left these; we hold the shard's lease
    store.confirm_lease(k)
    staged_meta = paths.staged(paths.meta)
    store.schema.write(staged_meta, progress.metadata)
    if os.path.exists(paths.spool):
        _write_index(paths, progress, location)   # before the data: publishing the data consumes the spool
        publish_data(paths.spool, paths, location, metadata=staged_meta)
    elif not location.exists(paths.data):
        raise CacheWriteError(f"shard {k}: sealed, but neither its spool nor its data is on disk")
    location.publish(staged_meta, paths.meta)
    location.write_json(paths.stats, progress.stats.to_dict())
    journal.remove()
    store.enforce_limit()
