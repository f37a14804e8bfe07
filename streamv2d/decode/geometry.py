"""Resize-then-centre-crop geometry shared by the backends."""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np


def scaled_size(width: int, height: int, size: Optional[int]) -> Tuple[int, int]:
    """Width and height after scaling the shorter side to ``size`` (aspect kept, even-free rounding)."""
    if size is None:
        return width, height
    if width <= height:
        return size, max(size, round(height * size / width))
    return max(size, round(width * size / height)), size


def center_crop(image: np.ndarray, size: Optional[int]) -> np.ndarray:
    """The central ``size × size`` window of an ``[..., H, W, C]`` array (no copy)."""
    if size is None:
        return image
    height, width = image.shape[-3], image.shape[-2]
    top, left = (height - size) // 2, (width - size) // 2
    return image[..., top:top + size, left:left + size, :]
