"""video2dataset's workflows on existing shards: merge two datasets into shards of another size (unique keys),
then compute dedicated metadata shards that zip with them. Offline, on generated videos.

    python examples/workflows.py
"""
import csv
import tempfile

import webdataset as wds

import streamv2d as sv
from streamv2d.demo import LoopbackServer, make_corpus


def download(tmp, server, names, tag):
    """A small dataset of ``names``, 2 rows a shard, one URL that fails (its record is kept)."""
    with open(f"{tmp}/{tag}.csv", "w", newline="") as f:
        csv.writer(f).writerows([["url", "caption"], *[[server.url(f"videos/{n}"), f"{tag} {n}"] for n in names],
                                 [server.url("status/404"), "gone"]])
    job = sv.Job(table={"caption_col": "caption", "samples_per_shard": 2})
    sv.materialize(f"{tmp}/{tag}.csv", f"{tmp}/{tag}", job, progress=False)
    return f"{tmp}/{tag}"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = make_corpus(f"{tmp}/videos", count=4)
        with LoopbackServer(f"{tmp}/videos") as server:
            parts = [download(tmp, server, names[:2], "a"), download(tmp, server, names[2:], "b")]
        merged = sv.reshard(parts, f"{tmp}/merged", samples_per_shard=4, progress=False)
        print("merged:", merged.summary.lines()[1])
        sv.reprocess(f"{tmp}/merged", f"{tmp}/probe", [sv.Probe()], progress=False)
        videos = wds.WebDataset(f"{tmp}/merged/00000.tar", shardshuffle=False).decode()
        probes = wds.WebDataset(f"{tmp}/probe/00000.tar", shardshuffle=False).decode()
        for video, meta in zip(videos, probes):
            summary = meta["json"].get("video_summary") or {}
            print(video["__key__"], meta["__key__"], "from", video["json"]["source_key"],
                  "duration", summary.get("duration"), meta["json"].get("error_message") or "")


if __name__ == "__main__":
    main()
