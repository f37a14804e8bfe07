"""One Job, every entry point: train on it through the write-through cache, materialize it, and check that both
hold the same shards — offline, on generated videos served on 127.0.0.1.

    python examples/one_job.py
"""
import csv
import filecmp
import glob
import os
import tempfile

import pyarrow.parquet as pq
import torch

import streamv2d as sv
from streamv2d.demo import LoopbackServer, make_corpus


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = make_corpus(f"{tmp}/videos", count=6)
        with LoopbackServer(f"{tmp}/videos") as server:
            with open(f"{tmp}/urls.csv", "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(["url", "caption"])
                writer.writerows([server.url(f"videos/{n}"), f"clip {i}"] for i, n in enumerate(names))
                writer.writerow([server.url("status/404"), "a dead link"])

            job = sv.Job(source=f"{tmp}/urls.csv", subsamplers=[sv.Probe(), sv.FPS(5), sv.Resolution(64)],
                         table={"caption_col": "caption", "samples_per_shard": 4})
            ds = sv.VideoDataset.from_job(job, cache_dir=f"{tmp}/cache")
            for _ in range(2):   # epoch 1 fills the cache, epoch 2 reads it
                samples = list(torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2))
            print(f"training: {len(samples)} samples per epoch, {server.total_requests()} HTTP requests in all")

            result = sv.materialize(None, f"{tmp}/out", job, progress=False)
            print(f"materialize: {result.written} shards written")

        same = all(filecmp.cmp(os.path.join(ds.cache.root, name), f"{tmp}/out/{name}", shallow=False)
                   for name in ("00000.tar", "00001.tar"))
        print("cache and materialize hold byte-identical tars:", same)
        metadata = pq.read_table(sorted(glob.glob(f"{tmp}/out/0*.parquet")))   # one schema for every shard
        print(metadata.select(["key", "status", "error_message"]).to_pylist())


if __name__ == "__main__":
    main()
