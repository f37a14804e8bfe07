"""VideoDataset with cache_dir: epoch 1 streams and writes through, epoch 2 reads shards with no request."""
import os

import torch
import webdataset as wds

import streamv2d as sv
from conftest import write_csv


def run_epoch(ds, workers=2):
    return list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers))


def test_epoch_two_makes_no_request(tmp_path, url_rows, server):
    rows = url_rows + [{"url": server.url("status/404"), "caption": "gone"}]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    ds = sv.VideoDataset(table, caption_col="caption", samples_per_shard=4, cache_dir=str(tmp_path / "cache"))
    first = run_epoch(ds)
    requests_after_epoch_1 = server.total_requests()
    assert len(first) == len(url_rows)
    ds.set_epoch(1)
    second = run_epoch(ds)
    assert server.total_requests() == requests_after_epoch_1
    assert sorted((s["__key__"], s["mp4"], s["txt"]) for s in first) == \
           sorted((s["__key__"], s["mp4"], s["txt"]) for s in second)
    shards = sorted(f for f in os.listdir(ds.cache.root) if f.endswith(".tar"))
    assert shards == [f"{k:05d}.tar" for k in range(4)]
    read_back = list(wds.WebDataset(os.path.join(ds.cache.root, "{00000..00003}.tar"), shardshuffle=False))
    assert len([s for s in read_back if "mp4" in s]) == len(url_rows) and len(read_back) == len(rows)


def test_changed_subsamplers_get_a_new_namespace(tmp_path, url_rows):
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:2])
    cache = str(tmp_path / "cache")

    def tag(sample):
        sample["json"]["tag"] = 1
        return sample

    plain = sv.VideoDataset(table, cache_dir=cache)
    tagged = sv.VideoDataset(table, cache_dir=cache, subsamplers=[tag])
    assert plain.cache.root != tagged.cache.root
    assert sv.VideoDataset(table, cache_dir=cache).cache.root == plain.cache.root
    list(plain), list(tagged)
    assert all("tag" in s["json"] for s in tagged)
    assert not any("tag" in s["json"] for s in plain)


def test_stopped_epoch_publishes_nothing_then_completes(tmp_path, url_rows):
    table = write_csv(str(tmp_path / "t.csv"), url_rows)
    ds = sv.VideoDataset(table, samples_per_shard=100, cache_dir=str(tmp_path / "cache"))
    it = iter(ds)
    next(it), next(it)
    it.close()
    assert not ds.cache.is_complete(0)
    assert not [f for f in os.listdir(ds.cache.root) if f.endswith(".tar")]
    assert len(list(ds)) == len(url_rows)
    assert ds.cache.is_complete(0)


def test_frames_run_after_the_cache(tmp_path, url_rows, server):
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    ds = sv.VideoDataset(table, subsamplers=[sv.FPS(5), sv.Frames(num_frames=2, size=32)],
                         samples_per_shard=2, cache_dir=str(tmp_path / "cache"))
    first = run_epoch(ds)
    before = server.total_requests()
    second = run_epoch(ds)
    assert server.total_requests() == before
    for epoch in (first, second):
        assert len(epoch) == 4 and all(tuple(s["frames"].shape) == (2, 32, 32, 3) for s in epoch)
    cached = list(wds.WebDataset(os.path.join(ds.cache.root, "{00000..00001}.tar"), shardshuffle=False))
    assert len(cached) == 4 and all("mp4" in s and "frames" not in s for s in cached)   # 5 fps mp4s, no tensors


def test_uncacheable_user_output_is_a_counted_failure_not_a_dead_epoch(tmp_path, url_rows):
    import torch

    def tensor_maker(sample):
        sample["embedding"] = torch.zeros(3)
        return sample

    table = write_csv(str(tmp_path / "t.csv"), url_rows[:2])
    ds = sv.VideoDataset(table, subsamplers=[tensor_maker], cache_dir=str(tmp_path / "cache"), yield_failures=True)
    samples = list(ds)
    assert [s["json"]["status"] for s in samples] == ["failed_to_subsample"] * 2
    assert "cannot cache payload 'embedding'" in samples[0]["json"]["error_message"]
    assert json_stats(ds)["failed_to_subsample"] == 2 and json_stats(ds)["successes"] == 0


def json_stats(ds):
    import json

    with open(ds.cache.paths(0).stats) as f:
        return json.load(f)


def test_fingerprints_see_the_settings_of_user_callables():
    import functools

    from streamv2d.subsamplers import describe

    def keep_if(sample, min_bytes):
        return sample if len(sample.get("mp4", b"")) >= min_bytes else None

    def threshold(limit):
        return lambda sample: sample if limit else None

    class Filter:
        def __init__(self, p):
            self.p = p

        def __call__(self, sample):
            return sample

    assert describe(functools.partial(keep_if, min_bytes=10)) != describe(functools.partial(keep_if, min_bytes=99))
    assert describe(threshold(1)) != describe(threshold(0))
    assert describe(lambda s: s) != describe(lambda s: None)
    assert describe(Filter(0.1)) != describe(Filter(0.9))
    assert describe(Filter(0.1)) == describe(Filter(0.1))
    assert describe(sv.FPS(5)) != describe(sv.FPS(8))


def test_extra_columns_of_any_type_are_cached(tmp_path, url_rows):
    import datetime

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [dict(r, seen=datetime.datetime(2024, 1, 2)) for r in url_rows[:2]]
    pq.write_table(pa.Table.from_pylist(rows), str(tmp_path / "t.parquet"))
    ds = sv.VideoDataset(str(tmp_path / "t.parquet"), save_additional_columns=["seen"], cache_dir=str(tmp_path / "c"))
    assert len(list(ds)) == 2 and len(list(ds)) == 2


FP_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[1])
from streamv2d.subsamplers import describe
def keep_video(sample):
    return sample if sample.get("ext") in {"mp4", "webm", "mkv", "mov"} else None
class Holder:
    def __init__(self):
        self.exts = {"a", "b", "c", "d"}
    def keep(self, sample):
        return sample
print(describe(keep_video), describe(Holder().keep))
"""


def test_fingerprints_are_the_same_in_every_process(tmp_path):
    import os
    import subprocess
    import sys

    script = tmp_path / "fp.py"
    script.write_text(FP_SCRIPT)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    outputs = {subprocess.run([sys.executable, str(script), root], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2", "3")}
    assert len(outputs) == 1


def test_fingerprints_of_methods_and_recursive_functions():
    from streamv2d.subsamplers import describe

    class Filt:
        def __init__(self, n):
            self.n = n

        def keep(self, sample):
            return sample

    def make_recursive():
        def walk(x):
            return walk(x - 1) if x else x
        return walk

    assert describe(Filt(1).keep) != describe(Filt(100).keep)
    describe(make_recursive())


def test_unreadable_shard_is_not_published_and_is_retried(tmp_path, url_rows):
    import shutil

    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4])
    shutil.copy(table, tmp_path / "backup.csv")
    ds = sv.VideoDataset(table, samples_per_shard=2, cache_dir=str(tmp_path / "cache"), yield_failures=True)
    arrow = ds.source._files[0].readable
    shutil.move(arrow, arrow + ".away")                     # the shard's rows vanish while training (the table
    shutil.move(table, table + ".away")                     # too, or its Arrow copy would be made again)
    first = list(ds)
    assert {s["json"]["status"] for s in first} == {"failed_to_download"}
    assert ds.cache.complete_shards() == []
    shutil.move(arrow + ".away", arrow)                     # back again: the next epoch completes the shards
    shutil.move(table + ".away", table)
    assert len([s for s in ds if s["json"]["status"] == "success"]) == 4
    assert ds.cache.complete_shards() == [0, 1]
