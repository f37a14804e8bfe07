"""Per-stage CPU profile of the issue's jobs: where each one's CPU time goes (start-up, fetch, reading shards,
demux, decode, convert, encode, tar, our own glue, the hand-off of samples between processes), beside its wall
time.

    python benchmarks/stage_profile.py                 # 16 real 10-s videos (materialize.py's corpus), 2 processes
    python benchmarks/stage_profile.py --count 8

Each job runs in a child process with ``STREAMV2D_PROFILE`` set (:mod:`streamv2d.profile`): every process it
starts reports its CPU seconds by stage. ``start-up`` is every process's CPU before its first row (the main
process's imports and set-up, each worker's until its first stage); ``read`` parsing shard sources (tar members,
parquet pages); ``row`` our own per-row code outside every named stage; ``main`` the main process's CPU after its
start-up outside stages (receiving samples from DataLoader workers — unpickling, mapping shared memory — or the
pool's results and the progress bar); ``other`` the workers' CPU after their start-up outside the calling threads'
stages: handing samples over (the DataLoader's pickling, shared memory and queue threads) and the threads codecs
start themselves (x264's lookahead and slice threads, libavcodec's frame threads), whose time no stage's thread
sees.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time

from _common import print_table, served

from materialize import build_corpus, corpus_folder

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = ("download", "transcode", "frames-shards", "frames-fly")
STAGES = ("fetch", "read", "probe", "demux", "decode", "convert", "encode", "transcode", "frames", "tar", "row")


def child(job: str, table: str, out: str, shards: str) -> None:
    """Run ``job`` in this (profiled) process; print its wall seconds and samples as JSON."""
    start = time.perf_counter()
    import streamv2d as sv
    from streamv2d import profile

    if job.startswith("frames"):
        from torch.utils.data import DataLoader
    imported = time.perf_counter() - start   # what this job imports before its first row
    chain = [sv.Probe(), sv.FPS(5), sv.Resolution(224, mode="scale,crop"),
             sv.Encode(codec="libx264", crf=23, preset="veryfast")]
    rows = sum(1 for _ in open(table)) - 1
    first, started = None, time.process_time()   # the main process's start-up: its CPU before the job starts
    if job in ("download", "transcode"):
        result = sv.materialize(table, out, sv.Job(subsamplers=chain if job == "transcode" else [],
                                                   table={"samples_per_shard": max(1, rows // 2)}),
                                processes=2, progress=False)
        samples = result.summary.totals["samples"]
    else:
        source = shards if job == "frames-shards" else table
        dataset = sv.VideoDataset(source, subsamplers=[sv.Frames(num_frames=8, size=224)],
                                  **({} if job == "frames-shards" else {"samples_per_shard": max(1, rows // 4)}))
        samples, began = 0, time.perf_counter()
        for _ in DataLoader(dataset, batch_size=None, num_workers=2):
            first = first if first is not None else time.perf_counter() - began   # from iter(loader)
            samples += 1
    profile.save()
    print(json.dumps({"wall_s": time.perf_counter() - start, "import_s": imported, "first_s": first,
                      "samples": samples, "main_pid": os.getpid(), "cpu_main": time.process_time(),
                      "startup_main": started}))


def run_job(job: str, table: str, work: str, shards: str) -> dict:
    """``job`` in a child process profiled into its own folder; its figures and CPU seconds by stage."""
    folder = os.path.join(work, f"profile-{job}")
    os.makedirs(folder)
    env = {**os.environ, "STREAMV2D_PROFILE": folder}
    done = subprocess.run([sys.executable, __file__, "--child", job, table, os.path.join(work, job), shards],
                          env=env, capture_output=True, text=True, cwd=os.path.dirname(HERE))
    if done.returncode:
        raise RuntimeError(f"{job}: {done.stderr[-2000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    from streamv2d.profile import collect

    by_pid = collect(folder)
    stages = {s: 0.0 for s in STAGES}
    workers_total = main_staged = 0.0
    startup = figures["startup_main"]
    for pid, totals in by_pid.items():
        for name, seconds in totals.items():
            if name not in ("process", "start-up"):
                stages[name] = stages.get(name, 0.0) + seconds
                main_staged += seconds if pid == figures["main_pid"] else 0.0
        if pid != figures["main_pid"]:
            workers_total += totals.get("process", 0.0)
            startup += totals.get("start-up", 0.0)
    staged = sum(stages.values())
    row = {"job": job, "wall_s": figures["wall_s"], "import_s": figures["import_s"],
           "first_s": figures["first_s"] if figures["first_s"] is not None else float("nan"),
           "samples": figures["samples"], "cpu_s": figures["cpu_main"] + workers_total, "start-up": startup}
    row.update({s: stages[s] for s in STAGES})
    row["main"] = max(0.0, figures["cpu_main"] - figures["startup_main"] - main_staged)
    row["other"] = max(0.0, row["cpu_s"] - staged - row["main"] - startup)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "streamv2d-bench-corpus"))
    parser.add_argument("--count", type=int, default=16, help="videos (10 s of real footage each)")
    parser.add_argument("--child", nargs=4, metavar=("JOB", "TABLE", "OUT", "SHARDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    folder = corpus_folder(args.corpus)
    paths = build_corpus(folder, args.count, 10.0, 2, "normal")
    rows = []
    with served(folder) as base, tempfile.TemporaryDirectory() as work:
        table = os.path.join(work, "urls.csv")
        with open(table, "w", newline="") as f:
            csv.writer(f).writerows([["url"]] + [[f"{base}/videos/{os.path.basename(p)}"] for p in paths])
        shards = os.path.join(work, "transcode", "{00000..00001}.tar")
        for job in JOBS:   # frames-shards reads what transcode wrote
            rows.append(run_job(job, table, work, shards))
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    print_table(f"CPU seconds by stage, {args.count} videos, 2 processes / DataLoader workers", rows)
    print("\nshares of each job's CPU (%):")
    for row in rows:
        print(f"  {row['job']:14s} {shares(row)}")


def shares(row: dict) -> str:
    """``run_job``'s stages as percentages of the job's CPU, largest first (those under 0.5 % left out)."""
    parts = {k: row[k] for k in ("start-up", *STAGES, "main", "other") if row[k] > 0.005 * row["cpu_s"]}
    return ", ".join(f"{k} {100 * v / row['cpu_s']:.0f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))


if __name__ == "__main__":
    main()
