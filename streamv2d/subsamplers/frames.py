"""``Frames``: decode a clip straight to a ``uint8 [T, H, W, C]`` tensor for training."""
from __future__ import annotations

import random
from typing import Any, Dict, Optional

from ..decode import get_opener
from ..decode.sampling import SAMPLINGS, SEEKS, frame_step, nearest_keyframes, sample_indices, span_frames
from ..sample import Sample
from .base import Subsampler, current_epoch, decoding
from .probe import media_bytes


class Frames(Subsampler):
    """Adds ``sample["frames"]`` (``torch.uint8 [T, H, W, C]``, RGB) and ``json["frames"]`` (indices,
    timestamps from the clip's start, source fps). Decodes only what it keeps: one seek, sequential decoding
    within the sample's ``json["span"]`` if a preceding ``Clip`` set one, unwanted non-reference frames skipped.

    Args:
        num_frames: frames per clip (T).
        size: shorter side resized to ``size`` then centre-cropped to ``size × size``; None keeps native size.
        sampling: ``uniform`` (deterministic) or ``random`` (drawn from ``seed``, the epoch and the sample key:
            new draws every epoch, the same ones on every run).
        fps, stride: sample a contiguous window at this frame rate, or every ``stride``-th frame; neither:
            spread the frames over the whole span.
        seek: ``exact`` (default): the sampled frames themselves; ``keyframe``: each sampled frame replaced by the
            keyframe nearest to it within the span (repeated when several share one; ``json["frames"]`` gives the
            frames returned), one packet decoded per keyframe — approximate, for training reads. A span the
            container's index shows no keyframe in is read exactly.
        backend: ``auto``, ``pyav`` or ``decord``. threads: codec threads per decode.
        keep_media: keep the encoded bytes in the sample (dropped by default: they would cost IPC for nothing).
    """

    consumes_spans = True   # a Clip right before it only marks spans; nothing is encoded
    cacheable = False       # tensors: with cache_dir, Frames runs on what the cache returns

    def __init__(self, num_frames: int = 16, size: Optional[int] = 224, sampling: str = "uniform",
                 fps: Optional[float] = None, stride: Optional[int] = None, backend: str = "auto",
                 keep_media: bool = False, seed: int = 0, threads: int = 1, seek: str = "exact"):
        if num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {num_frames}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if seek not in SEEKS:
            raise ValueError(f"Frames seek must be one of {SEEKS}, got {seek!r}")
        if fps is not None and stride is not None:
            raise ValueError("give fps or stride, not both")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool)):
            raise ValueError(f"Frames size is one int (the square side) or None, not {size!r}")
        if (fps is not None and fps <= 0) or (stride is not None and stride < 1) or (size is not None and size < 1):
            raise ValueError("fps, stride and size must be positive")
        self.num_frames, self.size, self.sampling = num_frames, size, sampling
        self.fps, self.stride, self.backend = fps, stride, backend
        self.keep_media, self.seed, self.threads, self.seek = keep_media, seed, threads, seek
        self._open = get_opener(backend)

    def config(self) -> Dict[str, Any]:
        config = super().config()
        del config["threads"]  # changes speed, not output
        return config

    @decoding
    def __call__(self, sample: Sample) -> Sample:
        ext, data = media_bytes(sample)
        meta = dict(sample.get("json", {}))
        rng = random.Random(f"{self.seed}/{current_epoch()}/{sample['__key__']}")
        with self._open(data, threads=self.threads) as reader:
            info = reader.info
            frames = span_frames(info, meta.get("span"))
            indices = sample_indices(frames, self.num_frames, self.sampling, frame_step(info, self.fps, self.stride),
                                     rng)
            if self.seek == "keyframe":
                indices = nearest_keyframes(indices, reader.keyframes(), frames) or indices
            array = reader.read(indices, self.size)
        start = float((meta.get("span") or [0.0])[0])   # timestamps within the clip, cached (encoded) or not
        meta["frames"] = {"indices": indices, "timestamps": [round(i / info.fps - start, 6) for i in indices],
                          "source_fps": info.fps, "num_frames": len(indices)}
        out = {k: v for k, v in sample.items() if self.keep_media or k != ext}
        out["json"] = meta
        import torch   # here, not at import: curation jobs never decode frames and start without torch

        out["frames"] = torch.from_numpy(array)
        return out
