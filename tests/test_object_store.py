"""Output and cache on an object store (a real S3 server on loopback: moto), leases across machines, and
``streamv2d status``."""
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import fsspec
import pytest

import streamv2d as sv
from streamv2d.cache.lease import LeaseLost, ObjectLease
from streamv2d.cache.location import Location
from streamv2d.cli import main
from streamv2d.report import store_status
from conftest import write_csv
from s3_server import bucket, moto_endpoint  # noqa: F401  (fixtures)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def s3_files(url):
    """``{name: bytes}`` of the published files under ``url`` (the hidden folder left out)."""
    fs, root = fsspec.core.url_to_fs(url)
    fs.invalidate_cache()
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root) if "/.streamv2d/" not in p}


def local_files(folder):
    out = {}
    for name in sorted(os.listdir(folder)):
        if not name.startswith("."):
            with open(os.path.join(folder, name), "rb") as f:
                out[name] = f.read()
    return out


def without_times(files):
    """Stats files with their clock fields dropped (everything else must be equal)."""
    out = {}
    for name, data in files.items():
        if name.endswith("_stats.json"):
            doc = json.loads(data)
            data = {k: v for k, v in doc.items() if k not in ("start_time", "end_time", "duration")}
        out[name] = data
    return out


def table_of(tmp_path, server, corpus_names, route="videos", count=6):
    rows = [{"url": server.url(f"{route}/{n}"), "caption": n} for n in corpus_names[:count]]
    rows.append({"url": server.url("status/404"), "caption": "gone"})
    return write_csv(str(tmp_path / "t.csv"), rows)


@pytest.mark.parametrize("fmt", ["tar", "parquet"])
def test_materialize_to_s3_equals_a_local_run_and_reads_back(tmp_path, server, corpus_names, bucket, fmt):
    table = table_of(tmp_path, server, corpus_names)
    job = sv.Job(source=table, table={"samples_per_shard": 3, "caption_col": "caption"}, output_format=fmt)
    local = sv.materialize(None, str(tmp_path / "local"), job, progress=False)
    remote = sv.materialize(None, f"{bucket}/out", job, progress=False, tmp_dir=str(tmp_path / "scratch"))
    assert remote.written == 3 and remote.failed == [] and remote.summary.shards == local.summary.shards == 3
    assert without_times(s3_files(f"{bucket}/out")) == without_times(local_files(str(tmp_path / "local")))
    left = [n for _, _, names in os.walk(tmp_path / "scratch") for n in names if "tar" in n or "journal" in n]
    assert left == []                                                  # spools and journals gone from scratch
    before = server.total_requests()
    again = sv.materialize(None, f"{bucket}/out", job, progress=False)
    assert again.skipped == 3 and server.total_requests() == before
    back = list(sv.VideoDataset(f"{bucket}/out/0000*.tar") if fmt == "tar" else ())
    assert fmt != "tar" or sorted(s["__key__"] for s in back) == sorted(
        s["__key__"] for s in sv.VideoDataset(str(tmp_path / "local" / "0000*.tar")))


def test_training_from_an_s3_cache_after_a_warm_makes_no_request(tmp_path, server, corpus_names, bucket):
    table = table_of(tmp_path, server, corpus_names)
    ds = sv.VideoDataset(table, samples_per_shard=3, cache_dir=f"{bucket}/cache", subsamplers=[sv.Probe()])
    warm = sorted(s["__key__"] for s in ds)
    before = server.total_requests()
    again = sv.VideoDataset(table, samples_per_shard=3, cache_dir=f"{bucket}/cache", subsamplers=[sv.Probe()])
    assert sorted(s["__key__"] for s in again) == warm and len(warm) == 6
    assert server.total_requests() == before


def test_a_url_whose_driver_is_missing_names_the_extra(tmp_path):
    try:
        import gcsfs  # noqa: F401
        pytest.skip("gcsfs is installed")
    except ImportError:
        pass
    with pytest.raises(ImportError, match=r"streamv2d\[gcs\]"):
        Location("gs://bucket/out")


def test_cache_limit_is_refused_on_an_object_store(tmp_path, bucket):
    table = write_csv(str(tmp_path / "t.csv"), [{"url": "http://127.0.0.1:9/a.mp4"}])
    with pytest.raises(ValueError, match="cache_limit: not supported on an object store"):
        sv.VideoDataset(table, cache_dir=f"{bucket}/cache", cache_limit="1GB")


def test_object_lease_is_exclusive_renewed_and_taken_over_once_expired(bucket):
    location = Location(bucket)
    path = f"{location.root}/.streamv2d/leases/00000.json"
    first, second = ObjectLease(location, path, 1.0), ObjectLease(location, path, 1.0)
    assert first.acquire(exclusive=True, wait=False)
    assert not second.acquire(exclusive=True, wait=False)          # conditional create: one winner
    first.renew()
    first._stop.set()                                               # the holder "dies": no more renewals
    first._renewer.join()
    time.sleep(1.2)
    assert second.holder() is None and second.acquire(exclusive=True, wait=False)   # expired: taken over
    with pytest.raises(LeaseLost):
        first.renew()                                               # the old holder finds out before publishing
    second.release()
    assert not location.exists(path)
    first.release()


def warmer(table, url, scratch, lease_seconds=2.0):
    """A materialize run in its own process with its own scratch folder: another node."""
    code = ("import sys, streamv2d as sv; job = sv.Job(source=sys.argv[1], table={'samples_per_shard': 2}, "
            "fetch={'threads': 1}); r = sv.materialize(None, sys.argv[2], job, progress=False, tmp_dir=sys.argv[3], "
            f"lease_seconds={lease_seconds}); sys.exit(1 if r.failed else 0)")
    return subprocess.Popen([sys.executable, "-c", code, table, url, scratch], env={**os.environ, "PYTHONPATH": ROOT},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_two_warmers_on_one_bucket_do_every_shard_once(tmp_path, server, corpus_names, bucket):
    rows = [{"url": server.url(f"slow/0.2/{n}")} for n in corpus_names[:8]]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    runs = [warmer(table, f"{bucket}/out", str(tmp_path / f"node{i}")) for i in range(2)]
    for run in runs:
        assert run.wait(timeout=180) == 0, run.stderr.read()
    assert server.total_requests() == len(rows)                      # no shard was fetched twice
    files = s3_files(f"{bucket}/out")
    assert sorted(n for n in files if n.endswith("_stats.json")) == [f"{k:05d}_stats.json" for k in range(4)]
    for k in range(4):                                                # every object whole
        with tarfile.open(fileobj=fsspec.open(f"{bucket}/out/{k:05d}.tar").open()) as tar:
            assert len([m for m in tar.getmembers() if m.name.endswith(".mp4")]) == 2
    local = sv.materialize(None, str(tmp_path / "local"),
                           sv.Job(source=table, table={"samples_per_shard": 2}), progress=False)
    assert local.failed == [] and without_times(files) == without_times(local_files(str(tmp_path / "local")))


def test_a_shard_killed_on_one_node_is_completed_by_another_after_expiry(tmp_path, server, corpus_names, bucket):
    rows = [{"url": server.url(f"slow/0.5/{n}")} for n in corpus_names[:2]]
    table = write_csv(str(tmp_path / "t.csv"), rows)
    fs, root = fsspec.core.url_to_fs(f"{bucket}/out")
    node_a = warmer(table, f"{bucket}/out", str(tmp_path / "a"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not fs.exists(f"{root}/.streamv2d/leases/00000.json"):
        fs.invalidate_cache()
        time.sleep(0.1)
    time.sleep(0.3)                                                   # part-way through its shard
    os.killpg(node_a.pid, signal.SIGKILL)
    node_a.wait()
    (status,) = store_status(f"{bucket}/out")
    assert status.running == [0] and status.done == 0
    node_b = warmer(table, f"{bucket}/out", str(tmp_path / "b"))
    assert node_b.wait(timeout=120) == 0, node_b.stderr.read()
    (status,) = store_status(f"{bucket}/out")
    assert status.done == 1 and status.running == [] and status.eta() == 0.0
    local = sv.materialize(None, str(tmp_path / "local"), sv.Job(source=table, table={"samples_per_shard": 2}),
                           progress=False)
    assert local.failed == [] and without_times(s3_files(f"{bucket}/out")) == \
        without_times(local_files(str(tmp_path / "local")))


def test_status_reads_progress_from_the_store(tmp_path, server, corpus_names, bucket, capsys):
    table = table_of(tmp_path, server, corpus_names)
    job = sv.Job(source=table, table={"samples_per_shard": 3})
    sv.materialize(None, f"{bucket}/out", job, progress=False)
    assert main(["status", f"{bucket}/out"]) == 0
    printed = capsys.readouterr().out
    assert "shards: 3 done of 3, 0 running, 0 failed, 0 partial" in printed
    assert "success rate: 85.7% of 7 rows" in printed and "HTTP 404" in printed and "ETA: done" in printed
    local = str(tmp_path / "cache")
    sv.VideoDataset(table, samples_per_shard=3, cache_dir=local)      # namespaces below a cache_dir
    assert main(["status", local]) == 0 and "0 done of 3" in capsys.readouterr().out


def test_stats_counts_shards_left_partial_by_a_stopped_run(tmp_path, server, corpus_names, capsys):
    """Bug: ``stats`` looked for ``*.partial`` files, which the hidden spool folder replaced, so a stopped
    run's unfinished shards were never reported."""
    table = table_of(tmp_path, server, corpus_names)
    out = str(tmp_path / "cache")
    ds = sv.VideoDataset(table, samples_per_shard=3, cache_dir=out)
    next(iter(ds))                                                    # stopped after one sample: shard 0 partial
    (namespace,) = [e.path for e in os.scandir(out) if not e.name.startswith(".")]
    assert main(["stats", namespace]) == 0
    assert "0 complete, 1 partial" in capsys.readouterr().out
