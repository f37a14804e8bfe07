"""Exactly once over ranks × workers, as a pure plan and through real DataLoader workers."""
import itertools
from collections import Counter

import pytest
import torch

import streamv2d as sv
from streamv2d.distribute import World, consumer_shards, epoch_order, quota, top_up_pools
from conftest import write_csv

LOCAL = {"allow_local_files": True}   # these tables name local paths


@pytest.mark.parametrize("num_shards,world_size,num_workers",
                         [(7, 2, 3), (3, 2, 3), (1, 4, 4), (12, 3, 2), (100, 8, 7), (5, 1, 1), (0, 2, 2)])
@pytest.mark.parametrize("shuffle", [False, True])
def test_plan_covers_every_shard_exactly_once(num_shards, world_size, num_workers, shuffle):
    order = epoch_order(num_shards, seed=3, epoch=1, shuffle=shuffle)
    got = Counter()
    for rank, worker in itertools.product(range(world_size), range(num_workers)):
        got.update(consumer_shards(order, World(rank, world_size, worker, num_workers)))
    assert got == Counter(range(num_shards))


def test_uneven_split_differs_by_at_most_one_shard():
    order = epoch_order(7)
    sizes = [len(consumer_shards(order, World(r, 2, w, 3))) for r in range(2) for w in range(3)]
    assert sorted(sizes) == [1, 1, 1, 1, 1, 2]


def test_shuffle_is_a_function_of_seed_and_epoch():
    assert epoch_order(50, seed=1, epoch=2, shuffle=True) == epoch_order(50, seed=1, epoch=2, shuffle=True)
    assert epoch_order(50, seed=1, epoch=2, shuffle=True) != epoch_order(50, seed=1, epoch=3, shuffle=True)
    assert sorted(epoch_order(50, seed=1, epoch=2, shuffle=True)) == list(range(50))


def test_quota_splits_a_rank_total_over_workers():
    assert [quota(10, World(0, 1, w, 3)) for w in range(3)] == [4, 3, 3]
    assert all(top_up_pools(epoch_order(2), World(r, 2, w, 3)) for r in range(2) for w in range(3))
    assert top_up_pools(epoch_order(4), World(0, 1, 1, 2)) == [[1, 3], [1, 2, 3, 0]]


@pytest.fixture()
def local_table(tmp_path, corpus_dir, corpus_names):
    """13 rows of local paths (no network; the last one missing): 7 shards of 2 rows, 12 successes."""
    rows = [{"url": f"{corpus_dir}/{n}", "caption": n} for n in corpus_names] + [{"url": "/nonexistent.mp4", "caption": "x"}]
    return write_csv(str(tmp_path / "local.csv"), rows)


@pytest.mark.parametrize("world_size,num_workers", [(2, 3), (1, 2), (3, 0)])
def test_dataloader_grid_yields_every_success_exactly_once(local_table, world_size, num_workers):
    keys = Counter()
    for rank in range(world_size):
        ds = sv.VideoDataset(local_table, caption_col="caption", samples_per_shard=2, rank=rank,
                             world_size=world_size, shuffle_shards=True, seed=5, fetch=LOCAL)
        assert ds.num_shards == 7
        for sample in torch.utils.data.DataLoader(ds, batch_size=None, num_workers=num_workers):
            keys[sample["__key__"]] += 1
    assert len(keys) == 12 and set(keys.values()) == {1}


def test_environment_rank_is_used(local_table, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ds = sv.VideoDataset(local_table, samples_per_shard=2, fetch=LOCAL)
    assert {s["__key__"][:5] for s in ds} == {"00001", "00003", "00005"}


def test_fixed_length_mode_gives_equal_counts_despite_unequal_failures(tmp_path, corpus_dir, corpus_names):
    # rank 0 gets shards 0, 2: all good; rank 1 gets shards 1, 3: most rows fail
    good = [{"url": f"{corpus_dir}/{n}"} for n in corpus_names]
    bad = [{"url": f"{corpus_dir}/missing{i}.mp4"} for i in range(3)]
    rows = good[0:3] + [good[3]] + bad[:2] + good[4:7] + [bad[2], bad[0], good[7]]
    table = write_csv(str(tmp_path / "uneven.csv"), rows)
    counts = []
    for rank in range(2):
        ds = sv.VideoDataset(table, samples_per_shard=3, rank=rank, world_size=2, samples_per_rank=5, fetch=LOCAL)
        samples = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
        assert all(s["json"]["status"] == "success" for s in samples)
        counts.append(len(samples))
    exact = [len(list(sv.VideoDataset(table, samples_per_shard=3, rank=r, world_size=2, fetch=LOCAL)))
             for r in range(2)]
    assert exact == [6, 2]          # exactly-once mode: unequal
    assert counts == [5, 5]         # fixed-length mode: equal, rank 1 topped up from its own successes


def test_fixed_length_mode_refuses_to_spin_on_a_rank_with_nothing(tmp_path):
    table = write_csv(str(tmp_path / "bad.csv"), [{"url": "/nope.mp4"}])
    with pytest.raises(RuntimeError, match="no shard produced a sample"):
        list(sv.VideoDataset(table, samples_per_rank=3, fetch=LOCAL))


def test_sample_shuffle_buffer_is_deterministic_and_complete(local_table):
    def keys(epoch):
        ds = sv.VideoDataset(local_table, samples_per_shard=2, shuffle_buffer=4, seed=1, fetch=LOCAL)
        ds.set_epoch(epoch)
        return [s["__key__"] for s in ds]

    assert keys(0) == keys(0)
    assert keys(0) != keys(1)
    assert sorted(keys(0)) == sorted(keys(1))


def test_fixed_length_widens_when_a_workers_own_shards_all_fail(tmp_path, corpus_dir, corpus_names):
    rows = [{"url": "/missing0.mp4"}, {"url": "/missing1.mp4"},
            {"url": f"{corpus_dir}/{corpus_names[0]}"}, {"url": f"{corpus_dir}/{corpus_names[1]}"}]
    table = write_csv(str(tmp_path / "half.csv"), rows)
    ds = sv.VideoDataset(table, samples_per_shard=2, samples_per_rank=6, fetch=LOCAL)
    samples = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
    assert len(samples) == 6 and all(s["json"]["status"] == "success" for s in samples)


def test_fixed_length_counts_yielded_failures(tmp_path, corpus_dir, corpus_names):
    rows = [{"url": "/missing.mp4"}] + [{"url": f"{corpus_dir}/{n}"} for n in corpus_names[:3]]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    samples = list(sv.VideoDataset(table, samples_per_rank=5, yield_failures=True, fetch=LOCAL))
    assert len(samples) == 5 and samples[0]["json"]["status"] == "failed_to_download"


SPAWN_RANK = """
import os, sys, torch, torch.distributed as dist
sys.path.insert(0, sys.argv[1])
import streamv2d as sv
def main():
    dist.init_process_group("gloo", rank=int(sys.argv[3]), world_size=2, init_method="tcp://127.0.0.1:" + sys.argv[4])
    os.environ.pop("RANK", None); os.environ.pop("WORLD_SIZE", None)
    ds = sv.VideoDataset(sys.argv[2], samples_per_shard=2, fetch={"allow_local_files": True})
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, multiprocessing_context="spawn")
    print(" ".join(sorted(s["__key__"] for s in loader)))
    dist.destroy_process_group()
if __name__ == "__main__":
    main()
"""


def test_spawned_workers_keep_the_distributed_rank(tmp_path, local_table):
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    script = tmp_path / "spawn_rank.py"
    script.write_text(SPAWN_RANK)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    procs = [subprocess.Popen([sys.executable, str(script), root, local_table, str(r), port],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    keys = [out.split() for out, _ in outputs]
    assert keys[0] and keys[1] and not set(keys[0]) & set(keys[1])
    assert len(keys[0]) + len(keys[1]) == 12
