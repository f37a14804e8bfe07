"""Quick start: stream a URL table through a DataLoader — offline, on generated videos served on 127.0.0.1.

    python examples/quickstart.py
"""
import csv
import tempfile

import torch

import streamv2d as sv
from streamv2d.demo import LoopbackServer, make_corpus


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = make_corpus(f"{tmp}/videos", count=8)
        with LoopbackServer(f"{tmp}/videos") as server:
            with open(f"{tmp}/urls.csv", "w", newline="") as f:       # a WebVid-style table
                writer = csv.writer(f)
                writer.writerow(["contentUrl", "name", "videoid"])
                writer.writerows([server.url(f"videos/{n}"), f"clip {i}", i] for i, n in enumerate(names))

            ds = sv.VideoDataset(f"{tmp}/urls.csv", url_col="contentUrl", caption_col="name",
                                 save_additional_columns=["videoid"], samples_per_shard=4)
            loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2)
            for sample in loader:
                print(sample["__key__"], len(sample["mp4"]), "bytes,", repr(sample["txt"]), sample["json"]["videoid"])


if __name__ == "__main__":
    main()
