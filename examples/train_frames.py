"""Train on decoded clips streamed from a URL table: the embedded demo corpus served on loopback.

    python examples/train_frames.py [--steps 6]

Each DataLoader worker fetches videos in a thread pool, decodes 8 frames per video straight to a
``uint8 [T, H, W, C]`` tensor (``Frames``), and ships whole batches to the training loop.
"""
from __future__ import annotations

import argparse
import csv
import os
import tempfile

import torch
from torch import nn

from streamv2d import VideoDataset
from streamv2d.demo import LoopbackServer, make_corpus
from streamv2d.subsamplers import Frames


class TinyVideoNet(nn.Module):
    """A toy video classifier: a 3-D convolution, global pooling, a linear head."""

    def __init__(self, classes: int = 2):
        super().__init__()
        self.conv = nn.Conv3d(3, 8, kernel_size=3, padding=1)
        self.head = nn.Linear(8, classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 4, 1, 2, 3).float() / 255.0  # [B, T, H, W, C] uint8 → [B, C, T, H, W]
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, LoopbackServer(folder) as server:
        names = make_corpus(folder, count=12)
        table = os.path.join(folder, "urls.csv")
        with open(table, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["url", "caption"])
            writer.writerows([server.url(f"videos/{n}"), f"clip {i % 2}"] for i, n in enumerate(names))

        frames = Frames(num_frames=8, size=112, sampling="random", seed=0)
        dataset = VideoDataset(table, caption_col="caption", samples_per_shard=6, batch_size=4, subsamplers=[frames])
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
        model = TinyVideoNet()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        step, epoch = 0, 0
        while step < args.steps:
            frames.seed = epoch  # new random frames each epoch, reproducible across runs
            dataset.set_epoch(epoch)
            epoch += 1
            for batch in loader:
                labels = torch.tensor([int(c.split()[-1]) for c in batch["txt"]])
                loss = nn.functional.cross_entropy(model(batch["frames"]), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                print(f"step {step}: frames {tuple(batch['frames'].shape)} {batch['frames'].dtype}, "
                      f"loss {loss.item():.3f}, first clip's frame indices {batch['json'][0]['frames']['indices']}")
                if step == args.steps:
                    break


if __name__ == "__main__":
    main()
