"""OpticalFlow: dense Farneback flow on reduced frames (optional extra: ``opencv-python-headless``)."""
from __future__ import annotations

import io
from typing import Any

import numpy as np

from ..decode.media import open_media, video_stream
from ..sample import Sample
from .base import Subsampler
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
    """Adds ``sample["optical_flow.npy"]`` (float16 [T-1, H, W, 2], pixels of the reduced frame) and
    ``json["optical_flow"]`` with video2dataset's ``mean_optical_flow_magnitude``; frames at ``fps``, ``width``
    wide, decoded with non-reference skipping."""

    metadata_fields = {"optical_flow": "json"}

    def __init__(self, fps: float = 2.0, width: int = 128, pyr_scale: float = 0.5, levels: int = 3,
                 winsize: int = 15, iterations: int = 3, poly_n: int = 5, poly_sigma: float = 1.2) -> None:
        _cv2()
        self.fps, self.width = fps, width
        self.pyr_scale, self.levels, self.winsize = pyr_scale, levels, winsize
        self.iterations, self.poly_n, self.poly_sigma = iterations, poly_n, poly_sigma

    def __call__(self, sample: Sample) -> Sample:
        cv2 = _cv2()
        _, data = media_bytes(sample)
        with open_media(data) as container:
            video = video_stream(container)
            rate = analysis_rate(video, self.fps)
            frames = list(reduced_frames(container, video, rate, self.width, fmt="gray"))
        flows = [cv2.calcOpticalFlowFarneback(a, b, None, self.pyr_scale, self.levels, self.winsize,
                                              self.iterations, self.poly_n, self.poly_sigma, 0)
                 for a, b in zip(frames, frames[1:])]
        h, w = frames[0].shape if frames else (0, 0)
        flow = np.stack(flows).astype(np.float16) if flows else np.zeros((0, h, w, 2), np.float16)
        magnitude = float(np.linalg.norm(flow.astype(np.float32), axis=-1).mean()) if flows else 0.0
        buf = io.BytesIO()
        np.save(buf, flow, allow_pickle=False)
        sample["optical_flow.npy"] = buf.getvalue()
        sample.setdefault("json", {})["optical_flow"] = {
            "fps": float(rate), "width": w, "height": h, "mean_optical_flow_magnitude": magnitude}
        return sample
