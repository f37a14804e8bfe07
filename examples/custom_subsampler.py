"""A user's own subsampler beside the built-in ones: any callable ``sample -> sample | list | None`` plugs in.

Here a brightness filter drops dark videos and records the mean luma it measured; it runs after the fused
transcode, so it reads the small 5 fps, 64² output rather than the original. It decodes, so ``@decoding`` has it take
its turn with the other decoding stages (as many rows decoding at once as the worker has cores). Run it:

    python examples/custom_subsampler.py
"""
from __future__ import annotations

import numpy as np

from streamv2d.decode.media import open_media
from streamv2d.demo import make_video
from streamv2d.subsamplers import (FPS, Probe, Resolution, Subsampler, compile_chain, decoding, from_config, register,
                                   run_chain)
from streamv2d.subsamplers.probe import media_bytes


class MinBrightness(Subsampler):
    """Drop samples whose mean luma is below ``threshold`` (0–255); keep the measure in json."""

    def __init__(self, threshold: float = 40.0) -> None:
        self.threshold = threshold

    @decoding
    def __call__(self, sample):
        _, data = media_bytes(sample)
        with open_media(data) as container:
            luma = float(np.mean([f.to_ndarray(format="gray").mean() for f in container.decode(video=0)]))
        sample["json"]["mean_luma"] = luma
        return sample if luma >= self.threshold else None  # None drops the sample; raising marks it failed


def main() -> None:
    samples = [{"__key__": f"{i:05d}", "mp4": make_video(2.0, 160, 120, seed=i), "json": {"key": f"{i:05d}"}}
               for i in range(3)]
    chain = compile_chain([Probe(), FPS(5), Resolution(64, mode="scale,crop"), MinBrightness(125)])
    for sample in samples:
        kept = run_chain(sample, chain)
        print(sample["__key__"], "kept" if kept else "dropped (too dark)",
              *(f"{out['json']['video_summary']['width']}px source, luma {out['json']['mean_luma']:.0f}" for out in kept))

    register("min_brightness", MinBrightness)  # the same filter, now usable from YAML configs
    print(from_config([{"fps": 5}, {"min_brightness": {"threshold": 60}}]))


if __name__ == "__main__":
    main()
