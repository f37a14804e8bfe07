"""Analysis jobs benchmark: ``streamv2d materialize`` with cut detection and with optical flow over floor.py's
96-URL table (48 real 10-s videos at 720p/480p/360p, each at two URLs, served on loopback), 2 processes, one shard
each; wall and CPU seconds of the whole command, medians of ``--repeats``.

    python benchmarks/analysis.py                              # this checkout
    python benchmarks/analysis.py --against /path/to/checkout  # A/B: runs alternate; ratios per pair; same bytes?

With ``--against`` each repeat runs both checkouts in turn (in reverse order every other repeat); the ratio is the
median of the per-pair ratios, and the tars of the last runs are compared by sha256.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

from _common import served
from floor import ROOT, floor_corpus, samples_in, write_table

JOBS = {"cuts": [{"cut_detection": {"threshold": 27, "min_scene_len": 15}}],
        "flow": [{"optical_flow": {"fps": 2, "width": 128}}]}


def run(checkout: str, table: str, job: str, out: str, rows: int) -> Dict[str, float]:
    """One whole ``streamv2d materialize`` of ``checkout``: its wall and CPU seconds (its process tree)."""
    shutil.rmtree(out, ignore_errors=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    argv = [sys.executable, "-m", "streamv2d.cli", "materialize", table, out, "--processes", "2",
            "--samples-per-shard", str(rows // 2), "-q", "--config", job]
    start = time.perf_counter()   # run from the checkout: ``-m`` puts the working folder first on sys.path
    done = subprocess.run(argv, capture_output=True, text=True, cwd=checkout,
                          env={**os.environ, "PYTHONPATH": checkout})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode or samples_in(out) != rows:
        raise RuntimeError(f"{checkout}: exit {done.returncode}, {samples_in(out) if os.path.isdir(out) else 0} of "
                           f"{rows} videos written: {(done.stderr or done.stdout)[-1500:]}")
    return {"wall": wall, "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime}


def tar_digests(folder: str) -> List[str]:
    return [hashlib.sha256(open(os.path.join(folder, n), "rb").read()).hexdigest()[:12]
            for n in sorted(os.listdir(folder)) if n.endswith(".tar")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--against", help="another checkout to run alternately (its streamv2d on PYTHONPATH)")
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "streamv2d-bench-corpus"))
    args = parser.parse_args()
    checkouts = {"this": ROOT, **({"against": os.path.abspath(args.against)} if args.against else {})}
    paths = floor_corpus(args.corpus, args.rows, 48)
    with served(os.path.dirname(paths[0])) as base, tempfile.TemporaryDirectory() as work:
        table = write_table(os.path.join(work, "urls.csv"), [f"{base}/videos/{os.path.basename(p)}" for p in paths])
        for name in args.jobs.split(","):
            job = os.path.join(work, f"{name}.yaml")
            with open(job, "w") as f:
                json.dump({"subsampling": JOBS[name]}, f)   # JSON is YAML
            runs: Dict[str, List[Dict[str, float]]] = {c: [] for c in checkouts}
            for i in range(args.repeats):
                for c in (list(checkouts) if i % 2 == 0 else list(checkouts)[::-1]):
                    runs[c].append(run(checkouts[c], table, job, os.path.join(work, f"{name}-{c}"), args.rows))
            print(f"\n## {name}: {args.rows} rows, 2 processes, medians of {args.repeats}")
            for c, rs in runs.items():
                line = (f"{c:8s} wall {statistics.median(r['wall'] for r in rs):6.2f} s  "
                        f"cpu {statistics.median(r['cpu'] for r in rs):6.2f} s  "
                        f"{args.rows / statistics.median(r['wall'] for r in rs):5.2f} samples/s")
                if c != "this":
                    ratio = {k: statistics.median(a[k] / b[k] for a, b in zip(runs["this"], rs))
                             for k in ("wall", "cpu")}
                    same = tar_digests(os.path.join(work, f"{name}-this")) == \
                        tar_digests(os.path.join(work, f"{name}-{c}"))
                    line += f"   this / against: wall {ratio['wall']:.3f}, cpu {ratio['cpu']:.3f}; same bytes: {same}"
                print(line, flush=True)


if __name__ == "__main__":
    main()
