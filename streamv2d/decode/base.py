"""The decoder interface: open bytes once, read its stream facts, then fetch chosen frames as one array."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .media import MediaError


@dataclass(frozen=True)
class VideoInfo:
    """What sampling needs to know about the video stream; frame ``i`` is shown at ``i / fps`` seconds."""

    fps: float
    num_frames: int
    width: int
    height: int
    codec: str

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


class VideoReader(ABC):
    """One opened video. ``read`` returns frames ``indices`` (any order, repeats allowed) as a
    ``uint8 [T, H, W, 3]`` RGB array, resized so the shorter side is ``size`` and centre-cropped to
    ``size × size`` (``size=None`` keeps the native size)."""

    info: VideoInfo

    @abstractmethod
    def read(self, indices: Sequence[int], size: Optional[int] = None) -> np.ndarray:
        ...

    def keyframes(self) -> List[int]:
        """Sorted indices of the keyframes the container's index lists (no decoding); empty when it has none."""
        return []

    def close(self) -> None:
        """Release the demuxer; the default has nothing to release."""

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Gathered:
    """A read's output, filled as frames decode: each wanted frame is copied once, straight into every position
    that asked for it. No per-frame copy is kept and nothing is stacked afterwards: in a DataLoader worker, writing
    fresh pages costs as much as the copy itself (``np.stack`` was 8 % of a worker's CPU reading 224² shards)."""

    def __init__(self, indices: Sequence[int], height: int, width: int) -> None:
        self.array = np.empty((len(indices), height, width, 3), np.uint8)
        self.positions: "dict[int, list[int]]" = {}
        for position, index in enumerate(indices):
            self.positions.setdefault(index, []).append(position)
        self.filled: "set[int]" = set()

    def put(self, index: int, image: np.ndarray) -> None:
        for position in self.positions[index]:
            self.array[position] = image
        self.filled.add(index)

    def result(self) -> np.ndarray:
        """The array, once every asked-for frame is in; a missing one is a decode failure."""
        missing = sorted(self.positions.keys() - self.filled)
        if missing:
            raise MediaError(f"frames {missing[:5]} could not be decoded (truncated or corrupt stream)")
        return self.array
