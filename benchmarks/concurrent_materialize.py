"""Two ``streamv2d materialize`` runs started together on one output folder split the shards: HTTP requests
they make together against one run alone (target: <= 1.1x), and their wall time.

    python benchmarks/concurrent_materialize.py [--rows 96] [--samples-per-shard 4] [--repeat 3]
"""
from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import corpus, print_table  # noqa: E402  (puts the checkout on sys.path)

from streamv2d.demo import LoopbackServer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_together(table: str, out: str, count: int, per_shard: int) -> float:
    start = time.perf_counter()
    runs = [subprocess.Popen([sys.executable, "-m", "streamv2d.cli", "materialize", table, out, "-q",
                              "--samples-per-shard", str(per_shard), "--processes", "1"],
                             env={**os.environ, "PYTHONPATH": ROOT}, stdout=subprocess.DEVNULL)
            for _ in range(count)]
    for run in runs:
        if run.wait() != 0:
            raise SystemExit("a materialize run failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--samples-per-shard", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        names = corpus(os.path.join(tmp, "videos"), 12)
        with LoopbackServer(os.path.join(tmp, "videos")) as server:
            table = os.path.join(tmp, "urls.csv")
            with open(table, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["url"])
                writer.writerows([server.url(f"slow/0.02/{names[i % len(names)]}")] for i in range(args.rows))
            rows = []
            for n in range(args.repeat):
                for count in (1, 2):   # alternated, in one run
                    before = server.total_requests()
                    seconds = run_together(table, os.path.join(tmp, f"out-{n}-{count}"), count,
                                           args.samples_per_shard)
                    rows.append({"runs": count, "requests": server.total_requests() - before, "seconds": seconds})
    summary = [{"runs together": count,
                "requests": statistics.median_low(r["requests"] for r in rows if r["runs"] == count),
                "seconds": statistics.median(r["seconds"] for r in rows if r["runs"] == count)} for count in (1, 2)]
    print_table(f"{args.rows} rows, {args.samples_per_shard} per shard, 1 process per run "
                f"(medians of {args.repeat})", summary)
    print(f"\nrequests, two runs together / one run: {summary[1]['requests'] / summary[0]['requests']:.2f}x")


if __name__ == "__main__":
    main()
