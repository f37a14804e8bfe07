"""Model inputs from a sample: frames (through :class:`~streamv2d.subsamplers.Frames`) and mono audio."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import av
import numpy as np

from ...decode.media import MediaError, open_media
from ...sample import Sample
from ..audio import AUDIO_FORMATS, audio_frames
from ..frames import Frames
from ..probe import media_bytes


def video_frames(sample: Sample, num_frames: int, size: Optional[int]) -> Tuple[List[np.ndarray], Dict[str, Any]]:
    """``num_frames`` RGB frames spread uniformly over the sample's video (or its ``json["span"]``), shorter side
    ``size`` centre-cropped; and their ``json["frames"]`` description (indices, timestamps)."""
    decoded = Frames(num_frames=num_frames, size=size, keep_media=True)(dict(sample))
    return list(decoded["frames"].numpy()), decoded["json"]["frames"]


def mono_audio(sample: Sample, rate: int) -> np.ndarray:
    """The sample's audio as mono float32 at ``rate`` Hz: its audio member (``m4a``, ``wav``, …) if it has one,
    else the video's first audio track, cut to ``json["span"]`` when a Clip set one."""
    member = next((ext for ext in AUDIO_FORMATS if isinstance(sample.get(ext), (bytes, bytearray))), None)
    data = sample[member] if member else media_bytes(sample)[1]
    span = (sample.get("json") or {}).get("span") if member is None else None
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    parts: List[np.ndarray] = []
    with open_media(data) as container:
        if not container.streams.audio:
            raise MediaError("no audio stream to transcribe")
        stream = container.streams.audio[0]
        start, end = (span[0], span[1]) if span else (0.0, None)
        for frame in audio_frames(container, stream, start, end):
            parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    parts += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
