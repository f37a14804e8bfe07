"""Engines benchmark: samples/s of a "probe + fps 5 + 224² scale,crop + H.264" materialize with 1 and 2 local
processes, Ray (2 CPUs) and Spark (local[2]), each engine's overhead against 2 local processes; and the time to
publish a 100 MB shard to a loopback S3 server (moto) against a plain s3fs put of the same bytes.

    python benchmarks/engines.py                 # 16 videos, 2 per shard
    python benchmarks/engines.py --count 8       # quick look

Engine start-up (ray.init, the Spark session) is timed apart from the run. Needs ray, pyspark and
moto[server] + s3fs (pip install -e '.[test]').
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from _common import corpus, print_table, served

import streamv2d as sv
from streamv2d.cache.layout import ShardPaths
from streamv2d.cache.location import Location
from streamv2d.cache.writer import publish_data
from streamv2d.subsamplers import Encode


def job_of(table: str, per_shard: int) -> sv.Job:
    chain = [sv.Probe(), sv.FPS(5), sv.Resolution(224, mode="scale,crop"),
             Encode(codec="libx264", crf=23, preset="veryfast")]
    return sv.Job(source=table, subsamplers=chain, table={"samples_per_shard": per_shard}, fetch={"threads": 2})


def run_engine(name: str, job: sv.Job, out: str) -> dict:
    """One materialize of ``job`` into ``out`` by engine ``name``; start-up and run seconds, samples/s."""
    start = time.perf_counter()
    if name == "ray":
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    elif name == "spark":
        from pyspark.sql import SparkSession

        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    started = time.perf_counter()
    processes = 1 if name == "local-1" else 2
    distributor = {"local-1": "multiprocessing", "local-2": "multiprocessing"}.get(name, name)
    result = sv.materialize(None, out, job, processes=processes, distributor=distributor, progress=False)
    run = time.perf_counter() - started
    if result.failed:
        raise RuntimeError(f"{name}: shards {result.failed} failed")
    samples = result.summary.totals["samples"]
    if name == "ray":
        import ray

        ray.shutdown()
    return {"engine": name, "startup_s": started - start, "run_s": run, "samples": samples,
            "samples_per_s": samples / run}


def start_moto():
    port = 5000 + os.getpid() % 1000
    binary = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    bucket = f"bench{uuid.uuid4().hex[:8]}"
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")).close()
    return proc, bucket, {"key": "testing", "secret": "testing",
                          "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"}}


def publish_vs_put(size: int, repeat: int) -> list:
    """Seconds to publish a ``size``-byte shard (data + stats) to moto, and a plain s3fs put of the same file."""
    proc, bucket, options = start_moto()
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
    parser.add_argument("--rows", type=int, help="rows of the table (the videos repeated; default: --count)")
    parser.add_argument("--samples-per-shard", type=int, default=2,
                        help="rows per shard, i.e. per task (real jobs: 1000)")
    parser.add_argument("--corpus", default=os.path.join(tempfile.gettempdir(), "streamv2d-bench-engines"))
    parser.add_argument("--engines", default="local-1,local-2,ray,spark")
    parser.add_argument("--publish-mb", type=int, default=100)
    parser.add_argument("--publish-repeat", type=int, default=3)
    args = parser.parse_args()
    names = corpus(args.corpus, args.count)
    rows = []
    with served(args.corpus) as base, tempfile.TemporaryDirectory() as work:
        table = os.path.join(work, "t.csv")
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["url"])
            count = args.rows or len(names)
            writer.writerows([[f"{base}/videos/{os.path.basename(names[i % len(names)])}"] for i in range(count)])
        for name in args.engines.split(","):
            rows.append(run_engine(name, job_of(table, args.samples_per_shard), os.path.join(work, name)))
            print(rows[-1], flush=True)
    local = next((r for r in rows if r["engine"] == "local-2"), None)
    for row in rows:
        row["overhead_vs_local2"] = row["run_s"] / local["run_s"] if local else float("nan")
    print_table(f"materialize, {args.rows or args.count} rows, {args.samples_per_shard} per shard "
                "(probe + fps 5 + 224² + H.264)", rows)
    print_table(f"publish a {args.publish_mb} MB shard to moto vs plain s3fs put",
                publish_vs_put(args.publish_mb * 10**6, args.publish_repeat))


if __name__ == "__main__":
    main()
