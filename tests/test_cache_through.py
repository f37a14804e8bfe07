"""write_through: cache hits without network, early stop, failure memo, writer guard, namespaces, eviction."""
import os
from typing import List

import pyarrow.parquet as pq
import pytest
import torch

from conftest import write_csv
from streamv2d.cache import CacheStore, NamespaceMismatch, write_through
from streamv2d.cache.evict import disk_usage
from streamv2d.fetch import FetchConfig
from streamv2d.job import Job
from streamv2d.shard import ShardJob
from streamv2d.subsamplers import Subsampler


def make_processor(tmp_path, rows: List[dict], samples_per_shard: int, subsamplers=(), threads: int = 4, **fetch):
    """The shard jobs of a table of ``rows``, with fast-failing fetch settings."""
    table = str(tmp_path / "urls.csv")
    if not os.path.exists(table):
        write_csv(table, rows)
    return ShardJob(Job(source=table, subsamplers=subsamplers,
                        fetch=FetchConfig(threads=threads, retries=0, **fetch),
                        table={"caption_col": "caption", "samples_per_shard": samples_per_shard,
                               "table_cache": str(tmp_path / "tables")}))


def forget(store: CacheStore, shard_id: int) -> None:
    """Delete a published shard so the next pass must process it again."""
    for path in store.paths(shard_id).published():
        os.remove(path)


def run(processor, store, shard_id=0):
    return list(write_through(processor, shard_id, store))


@pytest.mark.parametrize("fmt", ["tar", "parquet", "files"])
def test_second_pass_reads_the_cache_without_requests(tmp_path, url_rows, server, fmt):
    processor = make_processor(tmp_path, url_rows[:5], samples_per_shard=5)
    store = CacheStore.for_job(str(tmp_path / "cache"), processor, fmt=fmt)
    first = run(processor, store)
    assert store.is_complete(0) and server.total_requests() == 5
    second = run(processor, store)
    assert server.total_requests() == 5                     # zero requests for a complete shard
    assert [s["__key__"] for s in second] == [s["__key__"] for s in first]
    assert [s["mp4"] for s in second] == [s["mp4"] for s in first]
    assert [s["json"] for s in second] == [s["json"] for s in first]
    stats = store.paths(0).stats
    assert os.path.basename(stats) == "00000_stats.json"
    meta = pq.read_table(store.paths(0).meta).to_pylist()
    assert [r["key"] for r in meta] == [s["__key__"] for s in first]


def test_early_stop_publishes_nothing_and_resumes(tmp_path, url_rows, server):
    processor = make_processor(tmp_path, url_rows[:6], samples_per_shard=6, threads=1)
    store = CacheStore.for_job(str(tmp_path / "cache"), processor)
    stream = write_through(processor, 0, store)
    head = [next(stream), next(stream)]
    stream.close()                                          # training stopped mid-shard
    paths = store.paths(0)
    assert not store.is_complete(0) and os.path.exists(paths.spool)
    assert not any(os.path.exists(p) for p in paths.published())
    fetched_before = dict(server.requests)
    everything = run(processor, store)
    assert [s["__key__"] for s in everything] == [f"00000{i}" for i in range(6)]
    assert everything[:2] == head == [dict(s, __url__=paths.data) for s in head]   # replayed, as written
    for sample in head:                                     # the journaled rows were not fetched again
        path = sample["json"]["url"].split(server.base_url)[1]
        assert server.requests[path] == fetched_before[path] == 1
    assert store.is_complete(0) and not os.path.exists(paths.spool)


def test_permanent_failures_are_replayed_transient_ones_retried(tmp_path, url_rows, server, corpus_names):
    rows = url_rows[:2] + [{"url": server.url("status/404"), "caption": "gone"},
                           {"url": server.url("html"), "caption": "not media"},
                           {"url": server.url("status/503"), "caption": "busy"},
                           {"url": server.url(f"flaky/1/{corpus_names[3]}"), "caption": "flaky"}]
    processor = make_processor(tmp_path, rows, samples_per_shard=6)
    store = CacheStore.for_job(str(tmp_path / "cache"), processor)
    first = {s["json"]["caption"]: s["json"] for s in run(processor, store)}
    assert not any("permanent" in meta for meta in first.values())          # no control flag in user data
    assert store.memo.get(first["gone"]["url"]) and store.memo.get(first["not media"]["url"])
    assert store.memo.get(first["busy"]["url"]) is None and first["flaky"]["status"] == "failed_to_download"
    forget(store, 0)
    before = dict(server.requests)
    second = {s["json"]["caption"]: s["json"] for s in run(processor, store)}
    assert second["gone"] == first["gone"] and second["not media"] == first["not media"]   # replayed as is
    assert server.requests["/status/404"] == before["/status/404"] == 1
    assert server.requests["/html"] == before["/html"]                       # not fetched again
    assert server.requests["/status/503"] == 2                                # transient: retried
    assert second["flaky"]["status"] == "success"
    stats = pq.read_table(store.paths(0).meta).to_pylist()
    assert [r["status"] for r in stats].count("failed_to_download") == 3


def test_a_shard_being_written_elsewhere_is_streamed_uncached(tmp_path, url_rows, server):
    processor = make_processor(tmp_path, url_rows[:3], samples_per_shard=3)
    store = CacheStore.for_job(str(tmp_path / "cache"), processor)
    with store.lease(0) as other_writer:
        assert other_writer.acquire(exclusive=True, wait=False)
        samples = run(processor, store)
    assert len(samples) == 3 and not store.is_complete(0)
    assert not os.path.exists(store.paths(0).spool)


class Scale(Subsampler):
    def __init__(self, width):
        self.width = width

    def __call__(self, sample):
        sample["json"]["width"] = self.width
        return sample


def test_changed_subsamplers_get_a_new_namespace(tmp_path, url_rows, server):
    cache = str(tmp_path / "cache")
    roots = set()
    for chain in ([], [Scale(64)], [Scale(32)]):
        processor = make_processor(tmp_path, url_rows[:2], samples_per_shard=2, subsamplers=chain)
        store = CacheStore.for_job(cache, processor)
        roots.add(store.root)
        samples = run(processor, store)
        assert all(s["json"].get("width") == (chain[0].width if chain else None) for s in samples)
    assert len(roots) == 3 and server.total_requests() == 6
    assert CacheStore.for_job(cache, processor, fmt="parquet").root not in roots


def test_eviction_respects_the_limit_and_spares_leased_shards(tmp_path, corpus_dir, corpus_names):
    rows = [{"url": os.path.join(corpus_dir, n), "caption": n} for n in corpus_names[:8]]  # local files: no server
    processor = make_processor(tmp_path, rows, samples_per_shard=2, allow_local_files=True)
    cache = str(tmp_path / "cache")
    store = CacheStore.for_job(cache, processor)
    for shard in processor.shards():
        run(processor, store, shard.id)
    for shard_id, used in enumerate([400, 100, 300, 200]):       # least recently used: 1, 3, 2, 0
        os.utime(store.paths(shard_id).stats, (used, used))
    sizes = {i: sum(os.path.getsize(p) for p in store.paths(i).published()) for i in range(4)}
    overhead = disk_usage(cache) - sum(sizes.values())
    limited = CacheStore.for_job(cache, processor, limit=overhead + sizes[0] + sizes[1] + 1)
    with limited.lease(1) as reader:                             # shard 1 (the LRU) is being read
        assert reader.acquire(exclusive=False, wait=False)
        evicted = limited.enforce_limit()
    assert [e.paths.shard_id for e in evicted] == [3, 2]        # LRU order, the leased shard spared
    assert disk_usage(cache) <= limited.limit
    assert limited.complete_shards() == [0, 1]
    assert CacheStore.for_job(cache, processor, limit="1").enforce_limit()[0].paths.shard_id == 1


class _CachedShards(torch.utils.data.IterableDataset):
    """The thinnest DataLoader wiring: each worker writes through the shards of its id."""

    def __init__(self, processor, store):
        self.processor, self.store = processor, store

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        for shard in self.processor.shards()[info.id::info.num_workers]:
            yield from write_through(self.processor, shard.id, self.store)


def test_dataloader_workers_write_and_read_the_cache(tmp_path, url_rows, server):
    processor = make_processor(tmp_path, url_rows[:8], samples_per_shard=2)
    store = CacheStore.for_job(str(tmp_path / "cache"), processor)
    # the parent opens the journal before forking (with its own processor: a ShardProcessor that has
    # started its thread pool must not cross a fork, see the report)
    run(make_processor(tmp_path, url_rows[:8], samples_per_shard=2), store, 0)
    loader = torch.utils.data.DataLoader(_CachedShards(processor, store), batch_size=None, num_workers=2)
    epoch1 = sorted(s["__key__"] for s in loader)
    assert store.complete_shards() == [0, 1, 2, 3] and server.total_requests() == 8
    epoch2 = sorted(s["__key__"] for s in loader)
    assert epoch1 == epoch2 and len(epoch1) == 8 and server.total_requests() == 8


def test_a_lost_spool_restarts_the_shard_from_scratch(tmp_path, url_rows, server):
    processor = make_processor(tmp_path, url_rows[:3], samples_per_shard=3, threads=1)
    store = CacheStore.for_job(str(tmp_path / "cache"), processor)
    stream = write_through(processor, 0, store)
    next(stream)
    stream.close()
    os.remove(store.paths(0).spool)                  # e.g. a machine crash lost the unsynced spool
    samples = run(processor, store)
    assert [s["__key__"] for s in samples] == ["000000", "000001", "000002"]
    assert store.is_complete(0)
    assert len(list(store.read(0))) == 3


def test_a_flat_output_folder_refuses_another_configuration(tmp_path, url_rows, server):
    processor = make_processor(tmp_path, url_rows[:2], samples_per_shard=2)
    out = str(tmp_path / "out")
    store = CacheStore.for_job(out, processor, flat=True)
    run(processor, store)
    assert sorted(n for n in os.listdir(out) if not n.startswith(".")) == \
        ["00000.parquet", "00000.tar", "00000_stats.json"]   # bookkeeping stays in the hidden folder
    assert CacheStore.for_job(out, processor, flat=True).is_complete(0)
    changed = make_processor(tmp_path, url_rows[:2], samples_per_shard=2, subsamplers=[Scale(8)])
    with pytest.raises(NamespaceMismatch, match="another source, subsampler chain or format"):
        CacheStore.for_job(out, changed, flat=True)
