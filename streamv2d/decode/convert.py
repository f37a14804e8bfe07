"""Decoded frame → numpy array through one swscale context per thread.

``VideoFrame.to_ndarray`` on a freshly decoded frame builds a new swscale context every call (~2.5 ms for a
224² frame, against ~0.3 ms for the conversion itself); a reformatter kept per thread reuses its context
while the size and format stay the same."""
from __future__ import annotations

import threading
from typing import Optional

import numpy as np
from av.video.reformatter import VideoReformatter

_local = threading.local()


def frame_to_array(frame, format: str = "rgb24", width: Optional[int] = None,
                   height: Optional[int] = None) -> np.ndarray:
    """``frame`` converted to ``format`` (and resized to ``width``×``height`` when given) as an array."""
    reformatter = getattr(_local, "reformatter", None)
    if reformatter is None:
        reformatter = _local.reformatter = VideoReformatter()
    return reformatter.reformat(frame, format=format, width=width, height=height).to_ndarray()
