"""OpticalFlow: dense Farneback flow on reduced frames (optional extra: ``opencv-python-headless``)."""
from __future__ import annotations

import io
from typing import Any, Optional

import numpy as np

from ..decode.media import open_media, video_stream
from ..sample import Sample
from .base import Subsampler, decoding
from .probe import media_bytes
from .video import analysis_rate, reduced_frames


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise ImportError("OpticalFlow needs OpenCV: pip install 'streamv2d[flow]' "
                          "(opencv-python-headless)") from exc
    return cv2


class OpticalFlow(Subsampler):
    """Adds the flow as an ``.npy`` member (``dtype`` float16 or float32 [T-1, H, W, 2], pixels of the reduced
    frame; named ``member``, default ``optical_flow.npy``, video2dataset's stage names it ``npy``) and
    ``json["optical_flow"]``; frames at ``fps``, ``width`` wide — or with their shorter side ``size``, as
    video2dataset's ``resize_size`` — decoded with non-reference skipping. video2dataset's fields
    ``mean_optical_flow_magnitude`` (over everything) and ``mean_optical_flow_magnitude_per_frame`` are also at
    the top of ``json``, where its readers look."""

    metadata_fields = {"optical_flow": "json", "mean_optical_flow_magnitude": "float64",
                       "mean_optical_flow_magnitude_per_frame": "json"}
    DTYPES = {"fp16": np.float16, "fp32": np.float32}

    def __init__(self, fps: float = 2.0, width: int = 128, pyr_scale: float = 0.5, levels: int = 3,
                 winsize: int = 15, iterations: int = 3, poly_n: int = 5, poly_sigma: float = 1.2,
                 flags: int = 0, size: Optional[int] = None, dtype: str = "fp16",
                 member: str = "optical_flow.npy") -> None:
        _cv2()
        if dtype not in self.DTYPES:
            raise ValueError(f"optical flow dtype must be one of {sorted(self.DTYPES)}, got {dtype!r}")
        if size is not None and size < 2:
            raise ValueError(f"optical flow size must be at least 2 pixels, got {size!r}")
        self.fps, self.width, self.size, self.dtype, self.member = fps, width, size, dtype, member
        self.pyr_scale, self.levels, self.winsize = pyr_scale, levels, winsize
        self.iterations, self.poly_n, self.poly_sigma, self.flags = iterations, poly_n, poly_sigma, flags

    @property
    def metadata_members(self) -> tuple:
        """The member it writes beside json (kept in dedicated metadata shards)."""
        return (self.member,)

    def _reduced_width(self, video) -> int:
        """The analysis width: ``width``, or the one giving the shorter side ``size`` at the video's aspect."""
        if self.size is None:
            return self.width
        w, h = video.codec_context.width, video.codec_context.height
        return max(2, int(round(self.size * w / min(w, h))))

    @decoding
    def __call__(self, sample: Sample) -> Sample:
        cv2 = _cv2()
        _, data = media_bytes(sample)
        with open_media(data) as container:
            video = video_stream(container)
            rate = analysis_rate(video, self.fps)
            frames = list(reduced_frames(container, video, rate, self._reduced_width(video), fmt="gray"))
        flows = [cv2.calcOpticalFlowFarneback(a, b, None, self.pyr_scale, self.levels, self.winsize,
                                              self.iterations, self.poly_n, self.poly_sigma, self.flags)
                 for a, b in zip(frames, frames[1:])]
        h, w = frames[0].shape if frames else (0, 0)
        dtype = self.DTYPES[self.dtype]
        flow = np.stack(flows).astype(dtype) if flows else np.zeros((0, h, w, 2), dtype)
        norms = np.linalg.norm(flow.astype(np.float32), axis=-1)
        per_frame = [float(m) for m in norms.mean(axis=(1, 2))] if flows else []
        magnitude = float(norms.mean()) if flows else 0.0
        buf = io.BytesIO()
        np.save(buf, flow, allow_pickle=False)
        sample[self.member] = buf.getvalue()
        meta = sample.setdefault("json", {})
        meta["optical_flow"] = {"fps": float(rate), "width": w, "height": h, "dtype": self.dtype,
                                "mean_optical_flow_magnitude": magnitude}
        meta["mean_optical_flow_magnitude"] = magnitude
        meta["mean_optical_flow_magnitude_per_frame"] = per_frame
        return sample
