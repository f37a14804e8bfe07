"""Stop a training loop mid-epoch, save the loader state as JSON, resume in a new loader — by position: the
resumed loader fetches only what is left. Then mix two datasets by weight. Offline, on generated videos.

    python examples/resume.py
"""
import csv
import json
import tempfile

from torchdata.stateful_dataloader import StatefulDataLoader

import streamv2d as sv
from streamv2d.demo import LoopbackServer, make_corpus


def table(path, server, names, tag):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["url", "caption"])
        writer.writerows([server.url(f"videos/{n}"), f"{tag} {i}"] for i, n in enumerate(names))
    return path


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        names = make_corpus(f"{tmp}/videos", count=8)
        with LoopbackServer(f"{tmp}/videos") as server:
            urls = table(f"{tmp}/a.csv", server, names, "a")
            make = lambda: sv.VideoDataset(urls, caption_col="caption", samples_per_shard=2,  # noqa: E731
                                           subsamplers=[sv.Frames(4, size=64)], shuffle_buffer=3)
            loader = StatefulDataLoader(make(), batch_size=None, num_workers=2)
            seen = []
            for sample in loader:
                seen.append(sample["txt"])
                if len(seen) == 3:
                    break
            checkpoint = json.dumps(loader.state_dict())      # saved with the model
            print(f"stopped after {seen}; state: {len(checkpoint)} bytes of JSON")

            before = server.total_requests()
            resumed = StatefulDataLoader(make(), batch_size=None, num_workers=2)
            resumed.load_state_dict(json.loads(checkpoint))
            rest = [s["txt"] for s in resumed]
            print(f"resumed: {rest} ({server.total_requests() - before} requests for {len(rest)} samples left)")

            other = table(f"{tmp}/b.csv", server, names, "b")
            mixed = sv.mix([sv.VideoDataset(urls, caption_col="caption"), sv.VideoDataset(other, caption_col="caption")],
                           weights=[0.75, 0.25], seed=0, resampled=True, batch_size=4)
            batches = iter(mixed)
            print("mixed batches:", [next(batches)["txt"] for _ in range(3)])


if __name__ == "__main__":
    main()
