"""decord backend: ``VideoReader`` on a file-like object; it resizes inside its own filter graph."""
from __future__ import annotations

import io
from typing import List, Optional, Sequence

import numpy as np

from .base import Gathered, MediaError, VideoInfo, VideoReader
from .geometry import center_crop, scaled_size
from .pyav import PyAVReader


class DecordReader(VideoReader):
    """decord seeks per batch and decodes forward within a GOP; a resized read reopens the bytes because
    decord fixes the output size when a reader is built."""

    def __init__(self, data: bytes, threads: int = 1):
        import decord

        self._data, self._threads = data, threads
        with PyAVReader(data) as probe:  # clear errors for bad bytes; decord hides the frame size
            width, height, codec = probe.info.width, probe.info.height, probe.info.codec
            self._keyframes = probe.keyframes()
        try:
            reader = decord.VideoReader(io.BytesIO(data), ctx=decord.cpu(0), num_threads=threads)
        except (decord.DECORDError, RuntimeError) as exc:
            raise MediaError(f"not a decodable video: {exc}") from exc
        if len(reader) == 0 or not reader.get_avg_fps():
            raise MediaError("video stream has no frames")
        self._native = reader
        self.info = VideoInfo(fps=float(reader.get_avg_fps()), num_frames=len(reader), width=width,
                              height=height, codec=codec)

    def keyframes(self) -> List[int]:
        """The keyframes PyAV's index lists, so both backends pick the same frames in ``Frames(seek="keyframe")``."""
        return list(self._keyframes)

    def read(self, indices: Sequence[int], size: Optional[int] = None) -> np.ndarray:
        import decord

        wanted = sorted(set(indices))
        width, height = scaled_size(self.info.width, self.info.height, size)
        reader = self._native
        try:
            if size is not None:
                reader = decord.VideoReader(io.BytesIO(self._data), ctx=decord.cpu(0), width=width, height=height,
                                            num_threads=self._threads)
            batch = reader.get_batch(wanted).asnumpy()
        except (decord.DECORDError, RuntimeError) as exc:
            raise MediaError(f"decoding failed: {exc}") from exc
        frames = center_crop(batch, size)
        out = Gathered(indices, *frames.shape[1:3])
        for index, frame in zip(wanted, frames):
            out.put(index, frame)
        return out.result()


def open_decord(data: bytes, threads: int = 1) -> DecordReader:
    return DecordReader(data, threads=threads)
