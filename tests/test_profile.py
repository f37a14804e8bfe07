"""``streamv2d.profile``: CPU time by stage for the benchmarks — off by default, exclusive when stages nest, and
with no effect on a job's output."""
import hashlib
import os
import subprocess
import sys

from conftest import write_csv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUN = """
import hashlib, sys
import streamv2d as sv
from streamv2d import profile
job = sv.Job(subsamplers=[sv.Probe(), sv.FPS(5), sv.Resolution(32, mode="scale,crop")], table={"samples_per_shard": 3})
sv.materialize(sys.argv[1], sys.argv[2], job, processes=2, progress=False)
profile.save()
"""


def _materialize(table, out, profile_dir=None):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("STREAMV2D_PROFILE", None)
    if profile_dir:
        env["STREAMV2D_PROFILE"] = profile_dir
    subprocess.run([sys.executable, "-c", RUN, table, out], env=env, check=True, capture_output=True, timeout=300)
    return {n: hashlib.sha256(open(os.path.join(out, n), "rb").read()).hexdigest()
            for n in sorted(os.listdir(out)) if n.endswith(".tar")}


def test_a_profiled_materialize_reports_every_stage_and_writes_the_same_bytes(tmp_path, url_rows):
    table = write_csv(str(tmp_path / "t.csv"), url_rows[:6])
    folder = tmp_path / "profile"
    folder.mkdir()
    profiled = _materialize(table, str(tmp_path / "a"), str(folder))
    assert profiled == _materialize(table, str(tmp_path / "b"))
    from streamv2d.profile import collect

    reports = collect(str(folder))
    assert len(reports) == 3   # the two workers and the main process
    totals = {}
    for report in reports.values():
        for name, seconds in report.items():
            assert seconds >= 0
            totals[name] = totals.get(name, 0.0) + seconds
    assert {"row", "fetch", "read", "decode", "encode", "convert", "demux", "transcode", "tar", "process",
            "start-up"} <= set(totals)
    # each worker's start-up (its CPU before its first stage) is part of its CPU time; the main process runs none
    workers = [r for r in reports.values() if set(r) - {"process", "start-up"}]
    assert len(workers) == 2 and all(0 < r["start-up"] <= r["process"] for r in workers)


def test_nested_stages_count_exclusively(monkeypatch, tmp_path):
    """A stage inside another counts to itself only; on a fake clock, so nothing here depends on timing."""
    from streamv2d import profile

    clock = [0.0]
    monkeypatch.setattr(profile, "ENABLED", True)
    monkeypatch.setattr(profile, "FOLDER", str(tmp_path))
    monkeypatch.setattr(profile, "_totals", {})
    monkeypatch.setattr(profile.time, "thread_time", lambda: clock[0])

    def spend(seconds):
        clock[0] += seconds
        return seconds

    with profile.stage("outer"):
        spend(1.0)
        with profile.stage("inner"):
            spend(2.0)
        for _ in profile.timed("items", (spend(4.0) for _ in range(2))):
            spend(0.5)
    report = profile.collect(str(tmp_path))[os.getpid()]
    assert {k: report[k] for k in ("outer", "inner", "items")} == {"outer": 2.0, "inner": 2.0, "items": 8.0}


def test_profiling_is_off_unless_asked():
    env = {k: v for k, v in os.environ.items() if k != "STREAMV2D_PROFILE"}
    code = "from streamv2d import profile; assert not profile.ENABLED; profile.save()"
    subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": ROOT}, check=True, timeout=60)
