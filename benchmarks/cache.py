"""Write-through cache: epoch 1 (network + transcode, filling the cache) against epoch 2 (cache), and peak RSS
per materialize worker as the table grows 10× (it must stay flat).

Epochs go through ``DataLoader(num_workers=2, batch_size=None)`` from a loopback server in its own process
with per-request latency; the job is probe + 5 fps + 128² scale,crop,pad, H.264 out. Medians of ``--repeats``
(each repeat uses a fresh cache). RSS: each materialize run is its own process; its workers' peak RSS is read
from ``/proc/<pid>/status`` (VmHWM) as they finish.

    python benchmarks/cache.py                              # 48 videos, 3 repeats; RSS at 200 and 2000 rows
    python benchmarks/cache.py --count 16 --repeats 1 --rss-rows 50 500    # quick
"""
from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from typing import List

import torch

from _common import Row, corpus, median_rows, print_table, served

import streamv2d as sv

JOB = [sv.Probe(), sv.FPS(5), sv.Resolution(128, mode="scale,crop,pad")]


def write_table(path: str, urls: List[str]) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "caption"])
        writer.writerows([u, f"clip {i}"] for i, u in enumerate(urls))
    return path


def epoch(ds: sv.VideoDataset, label: str, workers: int) -> Row:
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    t0 = time.perf_counter()
    first, count = 0.0, 0
    for _ in loader:
        first = first or time.perf_counter() - t0
        count += 1
    seconds = time.perf_counter() - t0
    return {"epoch": label, "samples": count, "seconds": seconds, "samples/s": count / seconds,
            "first sample s": first}


def epochs(table: str, args: argparse.Namespace) -> List[Row]:
    rows: List[List[Row]] = [[], []]
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            ds = sv.VideoDataset(table, subsamplers=JOB, samples_per_shard=args.samples_per_shard, cache_dir=cache)
            for e, label in enumerate(("epoch 1: network + transcode", "epoch 2: cache")):
                ds.set_epoch(e)
                rows[e].append(epoch(ds, label, args.workers))
    out = [median_rows(r) for r in rows]
    out.append({"epoch": "ratio epoch 2 / epoch 1", "samples": 0, "seconds": 0.0,
                "samples/s": out[1]["samples/s"] / out[0]["samples/s"], "first sample s": 0.0})
    return out


#: One materialize run in a child process; prints the peak RSS (MiB) of each worker, measured at exit.
CHILD = r"""
import os, sys, atexit
sys.path.insert(0, sys.argv[1])
import streamv2d.materialize as m

_worker = m._worker
def measured(*args):
    def report():
        with open("/proc/self/status") as f:
            hwm = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
        with open(sys.argv[4], "a") as out:
            out.write(f"{hwm / 1024:.1f}\n")
    try:
        _worker(*args)
    finally:
        report()
m._worker = measured
from streamv2d.config import JobConfig
from streamv2d.fetch import FetchConfig
import streamv2d as sv
job = JobConfig(subsamplers=[sv.Probe(), sv.FPS(5), sv.Resolution(128, mode="scale,crop,pad")],
                reading={"caption_col": "caption", "samples_per_shard": 100}, fetch=FetchConfig(), processes=2)
m.materialize(sys.argv[2], sys.argv[3], job, progress=False)
"""


def rss(urls: List[str], rows: int, tmp: str) -> Row:
    table = write_table(os.path.join(tmp, f"rss{rows}.csv"), (urls * (rows // len(urls) + 1))[:rows])
    report = os.path.join(tmp, f"rss{rows}.txt")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD, root, table, os.path.join(tmp, f"out{rows}"), report], check=True)
    seconds = time.perf_counter() - t0
    with open(report) as f:
        peaks = [float(line) for line in f if line.strip()]
    return {"rows": rows, "seconds": seconds, "rows/s": rows / seconds, "peak RSS per worker MiB": max(peaks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default="bench-output/corpus")
    parser.add_argument("--count", type=int, default=48, help="distinct videos")
    parser.add_argument("--latency", type=float, default=0.02, help="seconds per request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--samples-per-shard", type=int, default=8)
    parser.add_argument("--rss-rows", type=int, nargs=2, default=[200, 2000], help="small and 10× row counts")
    args = parser.parse_args()
    names = corpus(args.corpus_dir, args.count)
    with served(args.corpus_dir) as base, tempfile.TemporaryDirectory() as tmp:
        urls = [f"{base}/slow/{args.latency}/{n}" for n in names]
        table = write_table(os.path.join(tmp, "urls.csv"), urls)
        print_table(f"epochs through DataLoader({args.workers} workers), {args.count} videos, "
                    f"{args.latency * 1000:.0f} ms latency, median of {args.repeats}", epochs(table, args))
        fast = [f"{base}/videos/{n}" for n in names]
        print_table("materialize, 2 processes: peak RSS per worker as rows grow 10×",
                    [rss(fast, n, tmp) for n in args.rss_rows])


if __name__ == "__main__":
    main()
