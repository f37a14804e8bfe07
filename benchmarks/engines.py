"""Engines benchmark: samples/s of a J1-style materialize (probe + fps 5 + 224² scale,crop + H.264) with 1 and 2
local processes, Ray (2 CPUs) and Spark (local[2]); scaling efficiency of local ×2 over ×1 and each engine's
overhead against local ×2 (target ≤ 10 %); and the time to publish a 100 MB shard to a loopback S3 server (moto)
against a plain s3fs put of the same bytes.

    python benchmarks/engines.py                                  # 192 rows of 10 s clips, 24 per shard, 3 rounds
    python benchmarks/engines.py --rows 48 --repeats 1            # quick look

Each engine lives in its own process for the whole run (a runner: ``ray.init`` or the Spark session once, timed
as start-up; local runners fork their workers from a parent with no engine threads). A first round warms every
engine (its workers start and import streamv2d: reported as ``cold_extra_s``), then ``--repeats`` rounds run the
engines one after another in a rotating order, so the load of a shared machine falls on all alike; figures are
medians, and overheads are medians of each round's ratio to local ×2. Needs ray, pyspark and moto[server] + s3fs
(pip install -e '.[test]').
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _common import print_table, served

import streamv2d as sv
from streamv2d.cache.layout import ShardPaths
from streamv2d.cache.location import Location
from streamv2d.cache.writer import publish_data
from streamv2d.demo import make_corpus
from streamv2d.demo.s3 import make_bucket, s3_options, start_moto
from streamv2d.subsamplers import Encode

ENGINES = ("local-1", "local-2", "ray", "spark")
#: Corpus clips: 10 s at 10 fps, 640×360 and 480×270 (a J1 input is a short web clip, not a 2 s thumbnail).
CLIP_SECONDS, CLIP_SIZES = 10.0, ((640, 360), (480, 270))


def job_of(table: str, per_shard: int) -> sv.Job:
    chain = [sv.Probe(), sv.FPS(5), sv.Resolution(224, mode="scale,crop"),
             Encode(codec="libx264", crf=23, preset="veryfast")]
    return sv.Job(source=table, subsamplers=chain, table={"samples_per_shard": per_shard}, fetch={"threads": 2})


def start_engine(name: str) -> None:
    """Start engine ``name``'s runtime in this process (nothing for local processes)."""
    if name == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    elif name == "spark":
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used by process ``pid`` and all its descendants, those alive and those they
    reaped: the cost of a run whatever else loads the machine (wall time on a shared machine is not)."""
    tick, children, cpu = os.sysconf("SC_CLK_TCK"), {}, {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):   # gone meanwhile
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        cpu[int(entry)] = sum(int(v) for v in fields[11:15]) / tick   # utime, stime, cutime, cstime
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += cpu.get(current, 0.0)
        todo.extend(children.get(current, ()))
    return total


def materialize_once(name: str, table: str, per_shard: int, out: str) -> dict:
    """One materialize of the J1 job on ``table`` into ``out`` by engine ``name``: seconds, CPU seconds of this
    runner's whole process tree (engine daemons and workers included) and samples."""
    distributor = "multiprocessing" if name.startswith("local") else name
    start, cpu = time.perf_counter(), tree_cpu_seconds(os.getpid())
    result = sv.materialize(None, out, job_of(table, per_shard), processes=1 if name == "local-1" else 2,
                            distributor=distributor, progress=False)
    run, cpu = time.perf_counter() - start, tree_cpu_seconds(os.getpid()) - cpu
    if result.failed:
        raise RuntimeError(f"{name}: shards {result.failed} failed")
    return {"run_s": run, "cpu_s": cpu, "samples": result.summary.totals["samples"]}


def runner_main(name: str) -> None:
    """A runner: start engine ``name`` (its start-up time is the first line out), then one materialize per line
    in (``{"table", "per_shard", "out"}``), its figures as one JSON line out. Anything else written to stdout (by
    materialize, an engine, a child) goes to stderr, the runner's log."""
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    start = time.perf_counter()
    start_engine(name)
    print(json.dumps({"startup_s": time.perf_counter() - start}), file=answers, flush=True)
    for line in sys.stdin:
        order = json.loads(line)
        figures = materialize_once(name, order["table"], order["per_shard"], order["out"])
        print(json.dumps(figures), file=answers, flush=True)


def checkout_env(script: str) -> dict:
    """Where a runner of ``script`` runs: in its checkout, first on ``PYTHONPATH``; Ray and Spark workers inherit
    both (else they would import whichever streamv2d is installed, or the one in the caller's folder)."""
    root = os.path.dirname(os.path.dirname(script))
    return {"cwd": root, "env": {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get(
        "PYTHONPATH")]))}}


class Runner:
    """The benchmark's handle on one engine's runner process."""

    def __init__(self, name: str, log_dir: str):
        self.name = name
        self.log = open(os.path.join(log_dir, f"runner-{name}.log"), "w+")
        script = os.path.abspath(__file__)
        self.proc = subprocess.Popen([sys.executable, script, "--runner", name],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, **checkout_env(script))
        self.startup_s = self._answer()["startup_s"]

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.log.seek(0)
            raise RuntimeError(f"runner {self.name} exited ({self.proc.wait()}): {self.log.read()[-3000:]}")
        return json.loads(line)

    def run(self, table: str, per_shard: int, out: str) -> dict:
        self.proc.stdin.write(json.dumps({"table": table, "per_shard": per_shard, "out": out}) + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(60)
        self.log.close()


def engine_rounds(names, table: str, per_shard: int, repeats: int, work: str):
    """``{engine: [figures of each round]}`` (round 0 is the warm-up) and each runner's start-up seconds."""
    runners = [Runner(name, work) for name in names]
    rounds = {name: [] for name in names}
    try:
        for r in range(repeats + 1):
            for runner in runners[r % len(runners):] + runners[:r % len(runners)]:   # a rotating order
                figures = runner.run(table, per_shard, os.path.join(work, f"{runner.name}-{r}"))
                rounds[runner.name].append(figures)
                print(f"round {r}: {runner.name} {figures['run_s']:.2f} s", flush=True)
    finally:
        for runner in runners:
            runner.close()
    return rounds, {runner.name: runner.startup_s for runner in runners}


def summary_rows(rounds, startup, reference: str = "local-2"):
    """One row per engine: start-up, the warm-up's extra seconds, median run and CPU seconds, samples/s, and the
    overhead in wall time and in CPU time against ``reference`` (medians of each round's ratio, so a loaded
    moment weighs on both sides)."""
    rows = []
    for name, figures in rounds.items():
        warm, against = figures[1:], rounds.get(reference, figures)[1:]
        run = statistics.median(f["run_s"] for f in warm)
        rows.append({"engine": name, "startup_s": startup[name], "cold_extra_s": figures[0]["run_s"] - run,
                     "run_s": run, "cpu_s": statistics.median(f["cpu_s"] for f in warm),
                     "samples": figures[0]["samples"], "samples_per_s": figures[0]["samples"] / run,
                     "wall_overhead": statistics.median(f["run_s"] / g["run_s"] for f, g in zip(warm, against)) - 1,
                     "cpu_overhead": statistics.median(f["cpu_s"] / g["cpu_s"] for f, g in zip(warm, against)) - 1,
                     "per_round_s": " ".join(f"{f['run_s']:.1f}" for f in warm)})
    return rows


def publish_vs_put(size: int, repeat: int) -> list:
    """Seconds to publish a ``size``-byte shard (data + stats) to moto, and a plain s3fs put of the same file."""
    proc, endpoint = start_moto()
    bucket, options = make_bucket(endpoint, "bench"), s3_options(endpoint)
    rows = []
    try:
        location = Location(f"s3://{bucket}/out", options)
        with tempfile.TemporaryDirectory() as scratch:
            blob = os.urandom(size)
            for i in range(repeat):
                paths = ShardPaths(location.root, i, "tar", 5, scratch)
                os.makedirs(os.path.dirname(paths.spool), exist_ok=True)
                with open(paths.spool, "wb") as f:
                    f.write(blob)
                start = time.perf_counter()
                publish_data(paths.spool, paths, location)
                location.write_json(paths.stats, {"count": 1})
                published = time.perf_counter() - start
                plain = os.path.join(scratch, "plain.bin")
                with open(plain, "wb") as f:
                    f.write(blob)
                start = time.perf_counter()
                location.fs.put_file(plain, f"{bucket}/plain/{i}.bin")
                put = time.perf_counter() - start
                rows.append({"MB": size / 1e6, "publish_s": published, "s3fs_put_s": put,
                             "overhead": published / put})
    finally:
        proc.terminate()
        proc.wait(10)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=16, help="distinct videos")
    parser.add_argument("--rows", type=int, default=192, help="rows of the table (the videos repeated)")
    parser.add_argument("--samples-per-shard", type=int, default=24,
                        help="rows per shard, i.e. per task (real jobs: 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="measured rounds after the warm-up round")
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "streamv2d-bench-engines-10s"))
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--publish-mb", type=int, default=100, help="0: skip the publication benchmark")
    parser.add_argument("--publish-repeat", type=int, default=3)
    parser.add_argument("--runner", help=argparse.SUPPRESS)   # internal: this process is one engine's runner
    args = parser.parse_args()
    if args.runner:
        return runner_main(args.runner)
    print(f"corpus: {args.count} clips of {CLIP_SECONDS:g} s in {args.corpus} …", flush=True)
    names = make_corpus(args.corpus, args.count, sizes=CLIP_SIZES, seconds=CLIP_SECONDS)
    with served(args.corpus) as base, tempfile.TemporaryDirectory() as work:
        table = os.path.join(work, "t.csv")
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["url"])
            writer.writerows([[f"{base}/videos/{names[i % len(names)]}"] for i in range(args.rows)])
        rounds, startup = engine_rounds(args.engines.split(","), table, args.samples_per_shard, args.repeats, work)
    rows = summary_rows(rounds, startup)
    print_table(f"materialize, {args.rows} rows, {args.samples_per_shard} per shard (probe + fps 5 + 224² + H.264), "
                f"median of {args.repeats} rounds after a warm-up; overheads against local-2", rows)
    by_name = {r["engine"]: r for r in rows}
    if "local-1" in by_name and "local-2" in by_name:
        efficiency = by_name["local-2"]["samples_per_s"] / (2 * by_name["local-1"]["samples_per_s"])
        print(f"scaling efficiency local ×2 over ×1: {efficiency:.0%}")
    for name in ("ray", "spark"):
        if name in by_name and "local-2" in by_name:
            row = by_name[name]
            verdict = {True: "holds", False: "missed"}
            print(f"{name} against local ×2: wall {row['wall_overhead']:+.1%} (≤ 10 %: "
                  f"{verdict[row['wall_overhead'] <= 0.10]}), CPU {row['cpu_overhead']:+.1%} (≤ 10 %: "
                  f"{verdict[row['cpu_overhead'] <= 0.10]}); start-up {row['startup_s']:.1f} s and warm-up "
                  f"{row['cold_extra_s']:.1f} s apart")
    if args.publish_mb:
        print_table(f"publish a {args.publish_mb} MB shard to moto vs plain s3fs put",
                    publish_vs_put(args.publish_mb * 10**6, args.publish_repeat))


if __name__ == "__main__":
    main()
