"""Review findings on a publication that a kill interrupted and the next run finishes."""
import errno
import json

import pytest

import streamv2d as sv
from conftest import fail_stats_writes, tar_of
from streamv2d.cache.evict import evict
from streamv2d.cache.journal import ShardJournal


def keys(samples):
    return [s["__key__"] for s in samples]


@pytest.fixture()
def make(tmp_path):
    source = tar_of(tmp_path / "in.tar", [(f"k{i}.json", json.dumps({"i": i}).encode()) for i in range(3)])
    return lambda: sv.VideoDataset([source], cache_dir=str(tmp_path / "cache"))


def test_a_full_disk_while_finishing_a_killed_publication_does_not_end_the_epoch(make, monkeypatch):
    """Finding: the disk-error handling covered a publication made right after the last row, not one finished for a
    killed run (a sealed journal): a full disk there raised out of the training epoch instead of streaming."""
    undo = fail_stats_writes(monkeypatch, KeyboardInterrupt("killed before the stats rename"))
    with pytest.raises(KeyboardInterrupt):
        list(make())
    undo()
    undo = fail_stats_writes(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    assert keys(make()) == ["k0", "k1", "k2"]                    # streamed, the shard left to finish later
    undo()
    assert keys(make()) == ["k0", "k1", "k2"] and make().cache.complete_shards() == [0]


def test_a_sealed_journal_left_beside_an_evicted_shard_is_forgotten(make, monkeypatch):
    """Finding: a kill after the stats file but before the journal was removed left a sealed journal; once the
    shard was evicted, every later epoch raised "sealed, but neither its spool nor its data is on disk"."""
    real = ShardJournal.remove

    def killed(self):
        raise KeyboardInterrupt("killed before the journal was removed")

    monkeypatch.setattr(ShardJournal, "remove", killed)
    with pytest.raises(KeyboardInterrupt):
        list(make())
    monkeypatch.setattr(ShardJournal, "remove", real)
    ds = make()
    assert ds.cache.complete_shards() == [0]
    evict(ds.cache.cache_dir, 0)
    assert ds.cache.complete_shards() == []
    assert keys(make()) == ["k0", "k1", "k2"] and make().cache.complete_shards() == [0]


def test_rewriting_a_journal_that_fails_keeps_the_progress_it_held(tmp_path, monkeypatch):
    """Finding: resuming rewrote the journal in place (truncate, then write): a full disk or a kill at that moment
    left it empty, so the next run fetched every journaled row again instead of resuming after them."""
    from streamv2d.cache import journal as journal_module
    from streamv2d.stats import ShardStats

    journal = ShardJournal(str(tmp_path / "spool" / "00000.journal"))
    journal.start(journal.load(0))
    for row in range(3):
        journal.append(row, 512 * (row + 1), ShardStats(0), [{"key": f"k{row}"}])
    journal.close()
    progress = journal.load(spool_size=1536)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module.json, "dumps", full)
    with pytest.raises(OSError):
        journal.start(progress)
    monkeypatch.undo()
    journal.close()
    assert journal.load(spool_size=1536).rows == 3


def test_the_unit_of_work_reports_a_full_disk_as_a_cache_write_error(tmp_path, monkeypatch):
    """Finding: ``ShardJob.run`` (the unit of work the engines call) used training's disk-error policy: a full disk
    streamed the shard uncached, published nothing, then failed reading the stats it expected (FileNotFoundError)
    instead of naming the write error."""
    from streamv2d.cache import CacheStore
    from streamv2d.cache.through import CacheWriteError
    from streamv2d.cache.writer import TarSpool
    from streamv2d.job import Job
    from streamv2d.shard import ShardJob

    source = tar_of(tmp_path / "in.tar", [(f"k{i}.json", json.dumps({"i": i}).encode()) for i in range(3)])
    shard_job = ShardJob(Job(source=[source]))
    store = CacheStore.for_job(str(tmp_path / "out"), shard_job, flat=True)

    def full(self, sample):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TarSpool, "write", full)
    with pytest.raises(CacheWriteError, match="No space left on device"):
        shard_job.run(0, store)
    monkeypatch.undo()
    assert shard_job.run(0, store).count == 3 and store.is_complete(0)


def test_the_unit_of_work_waits_for_another_writer_of_its_shard(tmp_path, monkeypatch):
    """Finding: ``ShardJob.run`` on a shard another process was writing did the whole shard uncached (training's
    behaviour), published nothing and failed reading the stats (FileNotFoundError), though running the unit of
    work concurrently is promised to give the same shard."""
    import threading

    from streamv2d.cache import CacheStore
    from streamv2d.cache.lease import ShardLease
    from streamv2d.job import Job
    from streamv2d.shard import ShardJob

    source = tar_of(tmp_path / "in.tar", [(f"k{i}.json", json.dumps({"i": i}).encode()) for i in range(3)])
    shard_job = ShardJob(Job(source=[source]))
    store = CacheStore.for_job(str(tmp_path / "out"), shard_job, flat=True)
    waiting, real = threading.Event(), ShardLease.acquire

    def acquire(self, *, exclusive, wait):
        if wait:
            waiting.set()
        return real(self, exclusive=exclusive, wait=wait)

    monkeypatch.setattr(ShardLease, "acquire", acquire)
    outcome = []
    holder = store.lease(0)
    assert holder.acquire(exclusive=True, wait=False)           # "another process" is writing shard 0
    worker = threading.Thread(target=lambda: outcome.append(_run_or_error(shard_job, store)))
    worker.start()
    waiting.wait(30)
    holder.release()                                              # it died before publishing: the lease goes
    worker.join(60)
    assert outcome == [3] and store.is_complete(0)


def _run_or_error(shard_job, store):
    try:
        return shard_job.run(0, store).count
    except Exception as exc:   # reported in the assertion
        return repr(exc)
