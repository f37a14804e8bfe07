"""Mid-epoch resume by position: plain loops and StatefulDataLoader, workers, shuffle buffer, batches, the cache,
fixed-length mode, resharding to other worker and rank counts, and weighted mixing."""
import json
from collections import Counter

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

import streamv2d as sv
from conftest import write_csv


@pytest.fixture()
def table(tmp_path, url_rows, server):
    rows = url_rows + [{"url": server.url("status/404"), "caption": "gone"}]   # 13 rows, one failure
    return write_csv(str(tmp_path / "t.csv"), rows)


def keys(items):
    out = []
    for item in items:
        out += item["__key__"] if isinstance(item["__key__"], list) else [item["__key__"]]
    return out


def dataset(table, **options):
    options.setdefault("samples_per_shard", 3)
    return sv.VideoDataset(table, caption_col="caption", **options)


def interrupted(make_loader, stop_after, restore=None):
    """Items of an uninterrupted run; the first ``stop_after`` of a run stopped there, its JSON-saved state,
    then what a fresh loader restored from it yields."""
    whole = list(make_loader())
    loader = make_loader()
    it = iter(loader)
    head = [next(it) for _ in range(stop_after)]
    state = json.loads(json.dumps(loader.state_dict()))          # small and JSON-serialisable
    del it
    fresh = make_loader()
    fresh.load_state_dict(restore(state) if restore else state)
    return whole, head, state, fresh


@pytest.mark.parametrize("workers", [0, 1, 2])
def test_stateful_dataloader_resumes_exactly(table, server, workers):
    make = lambda: StatefulDataLoader(dataset(table), batch_size=None, num_workers=workers)  # noqa: E731
    whole, head, state, fresh = interrupted(make, 5)
    before = server.total_requests()
    tail = list(fresh)
    assert keys(head) + keys(tail) == keys(whole)                # the uninterrupted order, none twice or lost
    assert len(whole) == 12 and len(set(keys(whole))) == 12
    # skipped by position: only rows not yet delivered (and at most what was in flight) are fetched again
    assert server.total_requests() - before <= 13 - 5 + 2 * workers + 1


def test_a_plain_loop_resumes_without_refetching(table, server):
    whole = keys(list(dataset(table)))
    ds = dataset(table)
    it = iter(ds)
    head = [next(it) for _ in range(7)]
    state = ds.state_dict()
    assert len(json.dumps(state)) < 2000
    before = dict(server.requests)
    again = dataset(table)
    again.load_state_dict(state)
    tail = list(again)
    assert keys(head) + keys(tail) == whole
    for sample in head:                                          # delivered rows were not fetched again
        path = sample["json"]["url"].split(server.base_url)[1]
        assert server.requests[path] == before[path]


def test_resume_inside_the_shuffle_buffer_keeps_the_order(table):
    make = lambda: StatefulDataLoader(dataset(table, shuffle_buffer=4), batch_size=None, num_workers=2)  # noqa
    whole, head, state, fresh = interrupted(make, 6)
    assert keys(head) + keys(list(fresh)) == keys(whole)
    assert keys(whole) != sorted(keys(whole))


def test_resume_between_batches_made_in_workers(table):
    make = lambda: StatefulDataLoader(dataset(table, batch_size=2, subsamplers=[sv.Frames(2, size=16)]),  # noqa
                                      batch_size=None, num_workers=2)
    whole, head, state, fresh = interrupted(make, 2)
    tail = list(fresh)
    assert keys(head) + keys(tail) == keys(whole)
    assert all(torch.equal(a["frames"], b["frames"]) for a, b in zip(head + tail, whole))


def test_resume_through_the_cache(table, tmp_path, server):
    make = lambda: dataset(table, cache_dir=str(tmp_path / "cache"))  # noqa: E731
    ds = make()
    it = iter(ds)
    head = [next(it) for _ in range(4)]                          # shard 1 is being written
    state = ds.state_dict()
    it.close()
    before = server.total_requests()
    again = make()
    again.load_state_dict(state)
    tail = list(again)
    assert keys(head) + keys(tail) == keys(list(make()))
    # journaled rows are replayed from the spool: the rows left, plus the stopped run's rows in flight (2)
    assert server.total_requests() - before <= 13 - 4 + 2
    assert again.cache.complete_shards() == [0, 1, 2, 3, 4]
    third = make()                                               # complete shards: resume reads from a row
    it = iter(third)
    first = [next(it) for _ in range(5)]
    state = third.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert keys(first) + keys(list(resumed)) == keys(head + tail)


def test_fixed_length_mode_resumes_with_the_same_counts(table):
    make = lambda: StatefulDataLoader(dataset(table, samples_per_rank=20), batch_size=None, num_workers=2)  # noqa
    whole, head, state, fresh = interrupted(make, 7)
    tail = list(fresh)
    assert len(whole) == 20 and keys(head) + keys(tail) == keys(whole)


def test_a_failure_stays_the_same_failure(table):
    make = lambda: StatefulDataLoader(dataset(table, yield_failures=True), batch_size=None)  # noqa: E731
    whole, head, state, fresh = interrupted(make, 2)
    tail = list(fresh)
    failed = [s["json"] for s in head + tail if s["json"]["status"] != "success"]
    assert keys(head) + keys(tail) == keys(whole) and [f["error_message"] for f in failed] == ["HTTP 404"]


def test_a_state_of_another_job_is_refused(table, tmp_path, url_rows):
    state = dataset(table).state_dict()
    other = sv.VideoDataset(write_csv(str(tmp_path / "o.csv"), url_rows[:2]), caption_col="caption")
    with pytest.raises(ValueError, match="saved by another job"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="saved by another job"):
        dataset(table, shuffle_buffer=3).load_state_dict(state)
    with pytest.raises(ValueError, match="not a streamv2d VideoDataset state"):
        dataset(table).load_state_dict({"n": 3})


def test_set_epoch_and_resume_agree(table):
    ds = dataset(table, shuffle_shards=True)
    ds.set_epoch(3)
    it = iter(ds)
    head = [next(it) for _ in range(2)]
    state = ds.state_dict()
    again = dataset(table, shuffle_shards=True)                  # epoch 0 until the state says otherwise
    again.load_state_dict(state)
    assert again.epoch == 3
    ds.set_epoch(3)
    assert keys(head) + keys(list(again)) == keys(list(ds))


# -- elastic --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("old,new", [(2, 1), (1, 3), (2, 0), (0, 2)])
def test_reshard_to_another_worker_count(table, old, new):
    loader = StatefulDataLoader(dataset(table, shuffle_buffer=3), batch_size=None, num_workers=old)
    whole = keys(list(StatefulDataLoader(dataset(table, shuffle_buffer=3), batch_size=None, num_workers=old)))
    it = iter(loader)
    head = keys([next(it) for _ in range(5)])
    state = sv.reshard_state(loader.state_dict(), num_workers=new)
    fresh = StatefulDataLoader(dataset(table, shuffle_buffer=3), batch_size=None, num_workers=new)
    fresh.load_state_dict(state)
    tail = keys(list(fresh))
    assert sorted(head + tail) == sorted(whole) and len(head + tail) == len(set(head + tail))


def test_reshard_to_another_world_size(table):
    def loader(rank, world, workers):
        return StatefulDataLoader(dataset(table, rank=rank, world_size=world), batch_size=None, num_workers=workers)

    olds = [loader(r, 2, 1) for r in range(2)]
    head = []
    for old in olds:
        it = iter(old)
        head += keys([next(it) for _ in range(3)])
    states = [old.state_dict() for old in olds]
    tail = []
    for rank in range(3):
        fresh = loader(rank, 3, 2)
        fresh.load_state_dict(sv.reshard_state(states, num_workers=2, world_size=3, rank=rank))
        tail += keys(list(fresh))
    whole = keys(list(dataset(table)))
    assert sorted(head + tail) == sorted(whole) and len(head + tail) == len(whole)
    with pytest.raises(ValueError, match="needs the states of all 2 ranks"):
        sv.reshard_state(states[:1], num_workers=1, world_size=3, rank=0)


def test_a_state_from_another_world_asks_for_reshard(table):
    state = dataset(table, rank=0, world_size=2).state_dict()
    ds = dataset(table)
    ds.load_state_dict(state)
    with pytest.raises(ValueError, match="reshard_state"):
        iter(ds)


# -- mixing ---------------------------------------------------------------------------------------------------
def number_source(tmp_path, name, count):
    rows = [{"url": f"http://127.0.0.1:9/{name}/{i}"} for i in range(count)]
    return sv.VideoDataset(write_csv(str(tmp_path / f"{name}.csv"), rows), samples_per_shard=50, yield_failures=True,
                           fetch={"retries": 0, "connect_timeout": 0.2})


def test_mix_follows_the_weights_and_resumes(tmp_path):
    a, b = number_source(tmp_path, "a", 400), number_source(tmp_path, "b", 400)
    mixed = sv.mix([a, b], weights=[0.7, 0.3], seed=0, resampled=True)
    it = iter(mixed)
    draws = [next(it)["json"]["url"].split("/")[3] for _ in range(10000)]
    share = Counter(draws)["a"] / len(draws)
    assert abs(share - 0.7) < 0.02
    state = mixed.state_dict()
    nxt = [next(it)["__key__"] for _ in range(20)]
    again = sv.mix([number_source(tmp_path, "a", 400), number_source(tmp_path, "b", 400)], weights=[0.7, 0.3],
                   seed=0, resampled=True)
    again.load_state_dict(json.loads(json.dumps(state)))
    it2 = iter(again)
    assert [next(it2)["__key__"] for _ in range(20)] == nxt
    assert max(state["loader"]["epochs"]) >= 10                  # sources restarted: epochs are counted


def test_mix_is_deterministic_batches_across_sources_and_stops(tmp_path):
    def make():
        return sv.mix([number_source(tmp_path, "a", 5), number_source(tmp_path, "b", 30)], seed=1, batch_size=4)
    first, second = list(make()), list(make())
    assert [b["__key__"] for b in first] == [b["__key__"] for b in second]
    urls = [u for b in first for u in (j["url"] for j in b["json"])]
    assert any("/a/" in u for u in urls[:8]) and any("/b/" in u for u in urls[:8])
    assert len(urls) < 35                                        # "stop": ends with its first exhausted source
    dropped = sv.mix([number_source(tmp_path, "a", 5), number_source(tmp_path, "b", 30)], on_exhausted="drop")
    assert len(list(dropped)) == 35
    with pytest.raises(ValueError, match="weights must be one positive number per dataset"):
        sv.mix([number_source(tmp_path, "a", 5)], weights=[0])


def test_resampled_dataset_never_ends_and_moves_epochs(tmp_path):
    ds = sv.VideoDataset(write_csv(str(tmp_path / "t.csv"), [{"url": f"http://127.0.0.1:9/{i}"} for i in range(3)]),
                         samples_per_shard=1, shuffle_shards=True, yield_failures=True, resampled=True,
                         fetch={"retries": 0, "connect_timeout": 0.2})
    it = iter(ds)
    items = [next(it)["__key__"] for _ in range(9)]
    assert len(items) == 9 and sorted(items[:3]) == sorted(items[3:6])
    assert ds.state_dict()["loader"]["epoch"] == 2


# -- no idle worker -----------------------------------------------------------------------------------------------
def test_a_table_with_fewer_shards_than_workers_keeps_every_worker_busy(tmp_path, url_rows, server):
    """Finding (close-to-the-floor issue): 96 rows in one shard left one of two workers idle."""
    from streamv2d.distribute import World, consumer_pieces

    pieces = [consumer_pieces([0], World(0, 1, w, 3), [10]) for w in range(3)]
    assert pieces == [[(0, 0, 3)], [(0, 3, 6)], [(0, 6, 10)]]
    assert consumer_pieces([0, 1, 2], World(0, 1, 1, 2), [5, 5, 5]) == [(1, 0, None)]

    def tag(sample):
        sample["json"]["worker"] = torch.utils.data.get_worker_info().id
        return sample

    table = write_csv(str(tmp_path / "t.csv"), url_rows)
    ds = sv.VideoDataset(table, subsamplers=[tag])                       # 12 rows, one shard
    samples = list(StatefulDataLoader(ds, batch_size=None, num_workers=2))
    assert Counter(s["json"]["worker"] for s in samples) == {0: 6, 1: 6}
    assert sorted(keys(samples)) == sorted(keys(list(sv.VideoDataset(table)))) and server.total_requests() == 24
    loader = StatefulDataLoader(sv.VideoDataset(table, subsamplers=[tag]), batch_size=None, num_workers=2)
    it = iter(loader)
    head = [next(it) for _ in range(5)]
    fresh = StatefulDataLoader(sv.VideoDataset(table, subsamplers=[tag]), batch_size=None, num_workers=2)
    fresh.load_state_dict(loader.state_dict())
    assert sorted(keys(head) + keys(list(fresh))) == sorted(keys(samples))   # pieces resume by position too


def test_ranks_from_the_environment_resume_and_reshard(table, monkeypatch):
    """torchrun's RANK/WORLD_SIZE decide the consumer; a state saved with two ranks resumes on one."""
    states, head = [], []
    for rank in range(2):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        loader = StatefulDataLoader(dataset(table), batch_size=None, num_workers=1)
        it = iter(loader)
        head += keys([next(it) for _ in range(2)])
        states.append(loader.state_dict())
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    fresh = StatefulDataLoader(dataset(table), batch_size=None, num_workers=2)
    fresh.load_state_dict(sv.reshard_state(states, num_workers=2, world_size=1))
    tail = keys(list(fresh))
    assert sorted(head + tail) == sorted(keys(list(dataset(table)))) and len(head + tail) == 12


def _reader(rows=20, per_shard=5):
    """A ShardReader over ``rows`` synthetic rows in shards of ``per_shard``, and the rows each pull read."""
    from streamv2d.loader.nodes import ShardReader

    pulled = []

    def row_groups(shard, start_row, stop_row=None):
        for row in range(start_row, per_shard if stop_row is None else stop_row):
            pulled.append((shard, row))
            yield row, [{"__key__": f"{shard:05d}{row:04d}", "json": {"status": "success"}}]

    return ShardReader(row_groups, [[k, 0, 0] for k in range(rows // per_shard)]), pulled


def test_a_shuffle_buffer_with_initial_yields_before_it_is_full_and_resumes():
    """``shuffle_initial``: the first sample after ``initial`` rows (a full buffer waited for ``size``); the
    buffer then grows to ``size``; every row once; a state taken midway resumes in the same order."""
    from streamv2d.loader.nodes import Shuffler

    full_reader, full_pulled = _reader()
    full = Shuffler(full_reader, 8, "k")
    next(full)
    assert len(full_pulled) == 8
    reader, pulled = _reader()
    shuffler = Shuffler(reader, 8, "k", initial=2)
    order = [next(shuffler)["__key__"]]
    assert len(pulled) == 4                          # 2 to start, then 2 more per draw while below the size
    order += [next(shuffler)["__key__"] for _ in range(5)]
    assert len(shuffler.get_state()["buffer"]) == len(full.get_state()["buffer"]) == 7   # grown to the size
    state = json.loads(json.dumps(shuffler.get_state()))
    order += [s["__key__"] for s in shuffler]
    assert sorted(order) == sorted(f"{k:05d}{r:04d}" for k in range(4) for r in range(5))
    again = Shuffler(_reader()[0], 8, "k", initial=2)
    again.reset(state)
    assert [s["__key__"] for s in again] == order[6:]


def test_shuffle_initial_is_checked_when_given(table):
    with pytest.raises(ValueError, match="shuffle_initial: 5 must be at most shuffle_buffer"):
        dataset(table, shuffle_buffer=4, shuffle_initial=5)
    with pytest.raises(ValueError, match="shuffle_initial"):
        dataset(table, shuffle_buffer=4, shuffle_initial=0)
    fast = [s["__key__"] for s in dataset(table, shuffle_buffer=4, shuffle_initial=1, seed=3)]
    assert sorted(fast) == sorted(s["__key__"] for s in dataset(table))
