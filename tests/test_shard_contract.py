"""The shard contract: one meaning through every entry point, with and without a cache; explicit results; settings
checked when given; epochs reaching workers; stable cache identity; a publication a kill interrupted finished
without refetching. Each test names the finding it guards."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import torch

import streamv2d as sv
from conftest import write_csv
from streamv2d.cache import CacheStore, write_through
from streamv2d.cache.location import Location
from streamv2d.config import job_from_dict
from streamv2d.job import Job
from streamv2d.materialize import materialize
from streamv2d.shard import ShardJob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def epoch(ds, workers=0, **loader):
    return list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers, **loader))


def by_key(samples):
    return {s["__key__"]: s for s in samples}


# -- a chain means one thing -------------------------------------------------------------------------------------
@pytest.mark.parametrize("chain", [
    lambda: [sv.Clip(window=2), sv.FPS(5), sv.Resolution(64, mode="scale,crop"), sv.Frames(4, size=None)],
    lambda: [sv.Clip(window=1), sv.Frames(3, size=32)],
    lambda: [sv.Probe(), sv.FPS(5), sv.Frames(2, size=32, sampling="random")],
], ids=["clip-fps-resolution-frames", "clip-frames", "probe-fps-random-frames"])
def test_the_cache_does_not_change_what_training_sees(tmp_path, url_rows, server, chain):
    """Finding: with cache_dir the first chain gave 64×64 frames at 5 fps, without it 120×160 at 25 fps."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:3])
    plain = by_key(epoch(sv.VideoDataset(table, subsamplers=chain())))
    cached_ds = sv.VideoDataset(table, subsamplers=chain(), cache_dir=str(tmp_path / "cache"))
    writing, reading = by_key(epoch(cached_ds)), by_key(epoch(cached_ds))
    assert sorted(plain) == sorted(writing) == sorted(reading) and plain
    for key, sample in plain.items():
        for other in (writing[key], reading[key]):
            assert torch.equal(sample["frames"], other["frames"])
            assert sample["json"]["frames"] == other["json"]["frames"]
    shapes = {tuple(s["frames"].shape[1:3]) for s in plain.values()}
    assert shapes == ({(64, 64)} if len(chain()) == 4 else {(32, 32)})


def test_clip_fps_resolution_before_frames_is_applied_without_a_cache(tmp_path, url_rows, server):
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:1])
    chain = [sv.Clip(window=2), sv.FPS(5), sv.Resolution(64, mode="scale,crop"), sv.Frames(4, size=None)]
    [first, *_] = epoch(sv.VideoDataset(table, subsamplers=chain))
    assert tuple(first["frames"].shape) == (4, 64, 64, 3) and first["json"]["frames"]["source_fps"] == 5


def test_every_entry_point_gives_the_same_shards(tmp_path, url_rows, server):
    """The same job through VideoDataset (no cache; cache written; cache read) and materialize: same keys, same
    media bytes, same json — the transcode included."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:4] + [{"url": server.url("status/404"), "caption": "x"}])
    job = Job(source=table, subsamplers=[sv.Probe(), sv.FPS(5), sv.Resolution(48, mode="scale,crop")],
              table={"caption_col": "caption", "samples_per_shard": 3})
    plain = epoch(sv.VideoDataset.from_job(job, yield_failures=True), workers=2)
    cached = sv.VideoDataset.from_job(job, yield_failures=True, cache_dir=str(tmp_path / "cache"))
    writing, reading = epoch(cached, workers=2), epoch(cached, workers=2)
    materialize(None, str(tmp_path / "out"), job, processes=2, progress=False)
    shards = epoch(sv.VideoDataset(str(tmp_path / "out"), yield_failures=True))

    def view(samples):
        return sorted((s["__key__"], s.get("mp4"), s.get("txt"), s["json"]) for s in samples)

    assert view(plain) == view(writing) == view(reading) == view(shards)
    assert len(plain) == 5 and sum(s["json"]["status"] == "success" for s in plain) == 4


# -- results a user can read ------------------------------------------------------------------------------------
def test_metadata_parquets_read_together_and_describe_the_final_samples(tmp_path, url_rows, server):
    """Findings: pq.read_table over the demo's parquets failed (null-typed error_message, a `permanent` column in
    some shards), and rows held each row's json from before the subsamplers ran."""
    rows = url_rows[:4] + [{"url": server.url("status/404"), "caption": "gone"}]
    table = write_csv(str(tmp_path / "t.csv"), rows)

    def tag(sample):
        sample["json"]["tagged"] = True
        return sample

    tag.metadata_fields = {"tagged": "bool"}   # declared: a column in every shard, even the all-failed one
    job = Job(source=table, subsamplers=[sv.Probe(), tag], table={"caption_col": "caption", "samples_per_shard": 2})
    out = str(tmp_path / "out")
    materialize(None, out, job, progress=False)
    materialize(None, out, job, progress=False)                                   # the memo replays the 404
    metadata = pq.read_table(sorted(glob.glob(os.path.join(out, "0*.parquet")))).to_pylist()
    assert len(metadata) == 5 and "permanent" not in metadata[0]
    assert [r["status"] for r in metadata].count("success") == 4
    assert all(r["tagged"] is True for r in metadata if r["status"] == "success")   # after the stages
    assert all(r["video_metadata"] for r in metadata if r["status"] == "success")
    schemas = {str(pq.read_schema(p)) for p in glob.glob(os.path.join(out, "0*.parquet"))}
    assert len(schemas) == 1
    assert sorted(os.listdir(out))[0] == ".streamv2d"                               # bookkeeping is hidden
    assert not [n for n in os.listdir(out) if n.endswith(".json") and not n.endswith("_stats.json")]


def test_no_control_flags_inside_samples(tmp_path, url_rows, server):
    """Findings: `permanent`, the `{}`/`[]` sentinels and `shard_unreadable` travelled inside samples."""
    rows = url_rows[:1] + [{"url": server.url("status/404"), "caption": "gone"}]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    for cache in (None, str(tmp_path / "cache")):
        ds = sv.VideoDataset(table, caption_col="caption", yield_failures=True, cache_dir=cache)
        for _ in range(2):
            for sample in epoch(ds):
                assert not {"permanent", "shard_unreadable"} & set(sample["json"])
    results = list(ShardJob(Job(source=table)).rows(0))
    assert [r.permanent for r in results] == [False, True] and [r.index for r in results] == [0, 1]


def test_batches_keep_every_field(tmp_path, url_rows, server):
    """Finding: collate took its keys from the first sample, so a failure first dropped `frames` for all."""
    rows = [{"url": server.url("status/404"), "caption": "gone"}] + url_rows[:2]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    [batch] = epoch(sv.VideoDataset(table, subsamplers=[sv.Frames(2, size=16)], yield_failures=True, batch_size=3))
    assert batch["frames"][0] is None and all(isinstance(t, torch.Tensor) for t in batch["frames"][1:])
    assert [j["status"] for j in batch["json"]] == ["failed_to_download", "success", "success"]


# -- a publication a kill interrupted ---------------------------------------------------------------------------
def test_a_kill_between_the_data_and_the_stats_rename_refetches_nothing(tmp_path, url_rows, server, monkeypatch):
    """Finding: a kill after the tar was renamed into place but before the stats file refetched the whole shard."""
    shard_job = ShardJob(Job(source=write_csv(str(tmp_path / "t.csv"), url_rows[:3])))
    store = CacheStore.for_job(str(tmp_path / "out"), shard_job, flat=True)
    real = Location.write_json

    def killed(self, path, document):
        if path == store.paths(0).stats:
            raise KeyboardInterrupt("killed before the stats rename")
        real(self, path, document)

    monkeypatch.setattr(Location, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        list(write_through(shard_job, 0, store))
    assert os.path.exists(store.paths(0).data) and not store.is_complete(0)
    monkeypatch.setattr(Location, "write_json", real)
    before = server.total_requests()
    again = list(write_through(shard_job, 0, store))
    assert server.total_requests() == before and store.is_complete(0) and len(again) == 3


# -- stable cache identity ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_cache_survives_touch_copy_and_another_path(tmp_path, url_rows, server, fmt):
    """Finding: the namespace hashed the table's path and mtime: `touch` or a copy made the cache cold."""
    import pyarrow as pa

    table = str(tmp_path / f"t.{fmt}")
    if fmt == "csv":
        write_csv(table, url_rows[:2])
    else:
        pq.write_table(pa.Table.from_pylist(url_rows[:2]), table)
    cache = str(tmp_path / "cache")
    first = sv.VideoDataset(table, cache_dir=cache, table_cache=str(tmp_path / "tables"))
    epoch(first)
    requests = server.total_requests()
    os.utime(table, (1, 1))
    os.makedirs(tmp_path / "elsewhere")
    copy = str(tmp_path / "elsewhere" / f"copy.{fmt}")
    shutil.copy(table, copy)
    for path in (table, copy):
        again = sv.VideoDataset(path, cache_dir=cache, table_cache=str(tmp_path / "tables"))
        assert again.cache.root == first.cache.root
        assert len(epoch(again)) == 2 and server.total_requests() == requests


def test_an_unreadable_tar_is_an_error_not_another_fingerprint(tmp_path):
    """Finding: a failed fs.info silently changed the fingerprint."""
    from streamv2d.errors import SourceError
    from streamv2d.sources import TarSource

    (tmp_path / "a.tar").write_bytes(b"\0" * 1024)
    source = TarSource(str(tmp_path / "a.tar"))
    os.remove(tmp_path / "a.tar")
    with pytest.raises(SourceError, match="cannot read it to identify its content"):
        source.fingerprint()


# -- settings checked when given ----------------------------------------------------------------------------------
@pytest.mark.parametrize("options,message", [
    ({"subsamplers": ["probe"]}, r"subsamplers\[0\]: 'probe' is not callable"),
    ({"batch_size": 0}, "batch_size: 0 is not an integer >= 1"),
    ({"shuffle_buffer": -1}, "shuffle_buffer: -1 is not an integer >= 0"),
    ({"samples_per_rank": 0}, "samples_per_rank: 0 is not an integer >= 1"),
    ({"cache_limit": "1GB"}, "cache_limit: given without cache_dir"),
    ({"rank": 3, "world_size": 2}, "invalid world"),
    ({"rank": 1}, "rank and world_size go together"),
    ({"fetch_threads": 0}, "fetch_threads: 0 is not an integer >= 1"),
])
def test_dataset_settings_are_checked_at_construction(tmp_path, options, message):
    table = write_csv(str(tmp_path / "t.csv"), [{"url": "http://127.0.0.1:9/a.mp4"}])
    with pytest.raises(ValueError, match=message):
        sv.VideoDataset(table, **options)


@pytest.mark.parametrize("doc,message", [
    ({"distribution": {"threads": -3}}, "distribution.threads: -3 is not an integer >= 1"),
    ({"distribution": {"processes": 0}}, "distribution.processes: 0"),
    ({"storage": {"format": "zip"}}, "output format: 'zip'"),
    ({"subsampling": [{"fps": {"rate": -1}}]}, "fps rate must be positive"),
    ({"distribution": {"distributor": "dask"}}, "distributor: 'dask' is not one of multiprocessing"),
])
def test_config_settings_are_checked_when_loaded(doc, message):
    with pytest.raises(ValueError, match=message):
        job_from_dict(doc)


def test_our_names_written_as_a_mapping_are_ours():
    """Finding: `subsampling: {probe: {}}` was taken for a video2dataset config and silently dropped."""
    job = job_from_dict({"subsampling": {"probe": {}, "fps": {"rate": 5}}})
    assert [type(s).__name__ for s in job.subsamplers] == ["Probe", "FPS"]


def test_frames_in_a_materialize_job_is_refused_before_any_row(tmp_path, capsys):
    """Finding: a Frames in a materialize config failed every row instead of being refused up front."""
    from streamv2d.cli import main

    table = write_csv(str(tmp_path / "t.csv"), [{"url": "http://127.0.0.1:9/never-fetched.mp4"}])
    config = tmp_path / "job.yaml"
    config.write_text("subsampling: [probe, {frames: {num_frames: 4}}]\n")
    assert main(["materialize", table, str(tmp_path / "out"), "--config", str(config), "-q"]) == 2
    assert "materialize writes shards, which cannot hold what Frames makes" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out")


def test_an_object_store_output_is_never_written_locally(tmp_path, monkeypatch, capsys):
    """Finding: `materialize urls.parquet s3://bucket/out` wrote a local folder named `s3:` and exited 0. Object
    stores are written through fsspec now (tests/test_object_store.py); one whose driver is missing is refused
    up front, naming the extra to install."""
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    from streamv2d.cli import main

    monkeypatch.chdir(tmp_path)
    table = write_csv(str(tmp_path / "t.csv"), [{"url": "http://127.0.0.1:9/a.mp4"}])
    assert main(["materialize", table, "gs://bucket/out", "-q"]) == 2
    assert "streamv2d[gcs]" in capsys.readouterr().err and not os.path.exists(tmp_path / "gs:")
    with pytest.raises(ImportError, match=r"streamv2d\[gcs\]"):
        sv.VideoDataset(table, cache_dir="gs://bucket/cache")


# -- epochs ------------------------------------------------------------------------------------------------------
def test_set_epoch_reaches_persistent_workers(tmp_path):
    """Finding: with persistent_workers=True every epoch had the same shard order, with no warning."""
    rows = [{"url": f"http://127.0.0.1:9/{i}.mp4"} for i in range(8)]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    ds = sv.VideoDataset(table, samples_per_shard=1, shuffle_shards=True, yield_failures=True,
                         fetch={"retries": 0, "connect_timeout": 0.5})
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=1, persistent_workers=True)
    orders = []
    for n in range(3):
        ds.set_epoch(n)
        orders.append([s["__key__"] for s in loader])
    expected = [[f"{k:05d}0" for k in sv.distribute.epoch_order(8, seed=0, epoch=n, shuffle=True)] for n in range(3)]
    assert orders == expected and len({tuple(o) for o in orders}) == 3


def test_random_frames_follow_the_epoch(tmp_path, url_rows, server):
    """Finding: Frames(sampling="random") drew the same frames every epoch."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:2])
    ds = sv.VideoDataset(table, subsamplers=[sv.Frames(3, size=16, sampling="random")])
    draws = []
    for n in (0, 1, 0):
        ds.set_epoch(n)
        draws.append([s["json"]["frames"]["indices"] for s in epoch(ds)])
    assert draws[0] == draws[2] and draws[0] != draws[1]


# -- processes --------------------------------------------------------------------------------------------------
def _children(pid):
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split()[2] != "Z"


def _materialize_cli(table, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "streamv2d.cli", "materialize", table, out, "-q", *extra],
                            env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM])
def test_workers_die_with_the_materialize_process(tmp_path, server, corpus_names, how):
    """Finding: kill or kill -9 of the main materialize process left its workers running to the end."""
    rows = [{"url": server.url(f"slow/0.5/{n}")} for n in corpus_names * 2]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    job = _materialize_cli(table, str(tmp_path / "out"), "--processes", "2", "--samples-per-shard", "4",
                           "--threads", "1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(_children(job.pid)) < 2:
        time.sleep(0.05)
    workers = _children(job.pid)
    assert len(workers) >= 2
    os.kill(job.pid, how)
    job.wait(timeout=30)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers)


def test_two_materialize_runs_on_one_folder_split_the_work(tmp_path, server, corpus_names):
    """Finding: two runs on one folder each did the whole job (96 requests for 48 rows)."""
    rows = [{"url": server.url(f"slow/0.05/{n}")} for n in corpus_names * 2]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    out = str(tmp_path / "out")
    runs = [_materialize_cli(table, out, "--samples-per-shard", "2", "--threads", "1") for _ in range(2)]
    for run in runs:
        assert run.wait(timeout=120) == 0, run.stderr.read()
    assert server.total_requests() <= 1.1 * len(rows)
    assert len(glob.glob(os.path.join(out, "*_stats.json"))) == len(rows) // 2


def test_the_unit_of_work_is_idempotent(tmp_path, url_rows, server):
    """ShardJob.run(k, store) twice: the second run is a no-op on a complete shard, and ShardJob.samples reads
    back exactly what run published."""
    shard_job = ShardJob(Job(source=write_csv(str(tmp_path / "t.csv"), url_rows[:3]),
                             subsamplers=[sv.FPS(5), sv.Resolution(32)]))
    store = CacheStore.for_job(str(tmp_path / "out"), shard_job, flat=True)
    stats = shard_job.run(0, store)
    with open(store.paths(0).data, "rb") as f:
        first = f.read()
    requests = server.total_requests()
    assert shard_job.run(0, store).to_dict() == stats.to_dict() and server.total_requests() == requests
    with open(store.paths(0).data, "rb") as f:
        assert f.read() == first
    samples = list(shard_job.samples(0, store))
    assert [s["__key__"] for s in samples] == [f"00000{i:03d}" for i in range(3)] and stats.successes == 3
    assert server.total_requests() == requests


def test_one_job_gives_every_entry_point_the_same_settings(tmp_path, url_rows):
    """Finding: storage_options for media fetches and the threads check existed only in VideoDataset."""
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:1])
    job = Job(source=table, table={"storage_options": {"anon": True}}, subsamplers=[sv.Probe()])
    assert job.fetch.storage_options == {"anon": True}
    ds = sv.VideoDataset.from_job(job)
    assert ds.job.fetch == job.fetch and ds.job.table == job.table
    assert [type(s) for s in ds.job.subsamplers] == [sv.Probe]
    with pytest.raises(ValueError, match="fetch.threads"):
        Job(source=table, fetch={"threads": 0})
    with pytest.raises(ValueError, match="fetch.threads"):
        materialize(table, str(tmp_path / "out"), Job(fetch={"threads": 0}))
