"""PyAV backend: seek to the keyframe before the first wanted frame, then decode sequentially, keeping only
wanted frames, skipping non-reference packets nobody wants, and draining the decoder once the last wanted
packet is in; when a keyframe lies between two wanted frames, seek to it instead of decoding the rest of the
GOP."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .. import profile
from .base import Gathered, VideoInfo, VideoReader
from .convert import frame_to_array
from .geometry import center_crop, scaled_size
from .media import (MediaError, decode_packet, duration_seconds, open_media, rewind, seek_keyframe,
                    skips_per_packet, stream_fps, video_stream)
from .sampling import keyframe_runs


class PyAVReader(VideoReader):
    """Decodes from bytes in memory. ``threads`` is the codec's thread count (1 by default: DataLoader
    workers and the fetch pool already keep the cores busy); ``skip_nonref`` enables per-packet skipping,
    ``jump_gops`` the seeks over GOPs that hold no wanted frame."""

    def __init__(self, data: bytes, threads: int = 1, skip_nonref: bool = True, jump_gops: bool = True):
        self._container = open_media(data, threads=threads)
        try:
            self._stream = stream = video_stream(self._container)
            rate = stream_fps(stream)
            self._skip_nonref = skip_nonref and skips_per_packet(stream.codec_context)
            self._jump_gops = jump_gops
            # AVI stores decode times, not presentation times (off by the decoder's delay; out of display order
            # with B-frames): its frames are numbered by counting them in one pass from the start
            self._by_count = self._container.format.name == "avi"
            self._start = stream.start_time or 0
            self._pts_per_frame = float(1 / (rate * stream.time_base))
            # rounded, not truncated: a duration from millisecond timestamps (Matroska) may fall just short
            num_frames = stream.frames or round(duration_seconds(self._container, stream) * rate)
            if num_frames <= 0:
                raise MediaError("video stream has no frames")
        except BaseException:
            self._container.close()
            raise
        # read once: an unindexed container (MPEG-TS) grows an index as it is read, from packet flags that also
        # mark I-frames a decoder cannot start from; GOP jumps and keyframe reads trust only the index it opens with
        self._keyframe_indices = self._indexed_keyframes()
        self.info = VideoInfo(fps=float(rate), num_frames=num_frames, width=stream.codec_context.width,
                              height=stream.codec_context.height, codec=stream.codec_context.name)

    def _index(self, pts: int) -> int:
        return round((pts - self._start) / self._pts_per_frame)

    def keyframes(self) -> "list[int]":
        """Keyframe indices from the index the container opened with; none for AVI, whose frames are numbered
        by counting (its index times are decode times, out of display order with B-frames)."""
        return [] if self._by_count else list(self._keyframe_indices)

    def _indexed_keyframes(self) -> "list[int]":
        """Keyframe indices from the container's index (no decoding). Index timestamps are decode times,
        earlier than presentation times by the reorder delay of the first frame, which is added back."""
        entries = self._stream.index_entries
        if len(entries) == 0:
            return []
        delay = max(0, -self._index(entries[0].timestamp))
        return sorted(self._index(e.timestamp) + delay for e in entries if e.is_keyframe)

    def read(self, indices: Sequence[int], size: Optional[int] = None) -> np.ndarray:
        import av

        wanted = sorted(set(indices))
        width, height = scaled_size(self.info.width, self.info.height, size)
        out = Gathered(indices, size or height, size or width)

        def keep(frames, run: "set[int]") -> None:
            for index, frame in frames:
                if index in run:
                    out.put(index, center_crop(frame_to_array(frame, "rgb24", width, height), size))

        try:
            if self._by_count:
                keep(self._counted_frames(wanted[-1]), set(wanted))
                return out.result()
            jumps = self._keyframe_indices if self._jump_gops and len(wanted) > 1 else []
            for run in keyframe_runs(wanted, jumps):
                # from the keyframe before the run; if that misses frames, from the start: a packet marked key may
                # be an I-frame the decoder will not start from (MPEG-TS marks non-IDR ones; FFmpeg waits for a
                # recovery point), and whatever happened, a full decode up to the run is exact
                members = set(run)
                for start in dict.fromkeys((self._start + int(run[0] * self._pts_per_frame), self._start)):
                    keep(self._frames(seek_keyframe(self._container, self._stream, start), members, run[-1]), members)
                    if out.filled >= members:
                        break
        except av.FFmpegError as exc:
            raise MediaError(f"decoding failed: {exc}") from exc
        return out.result()

    def _frames(self, packets, wanted: "set[int]", last: int):
        """(index, frame) from ``packets`` in presentation order until frame ``last`` has been seen. Once every
        wanted frame's packet is in, the decoder is drained instead of being fed the further packets its B-frame
        reorder delay waits for (often a P-frame, decoded for nothing)."""
        context = self._stream.codec_context
        unsent = set(wanted)
        for packet in profile.timed("demux", packets):
            position = None if packet.pts is None else self._index(packet.pts)
            unsent.discard(position)
            keep = not self._skip_nonref or position is None or position in wanted
            frames = decode_packet(context, packet, keep)
            drained = not unsent and packet.size > 0
            if drained:   # the next run's seek flushes the drained decoder (PyAV's seek flushes codec buffers)
                frames += context.decode(None)
            for frame in frames:
                if frame.pts is None:
                    continue
                index = self._index(frame.pts)
                yield index, frame
                if index >= last:
                    return
            if drained:
                return

    def _counted_frames(self, last: int):
        """(index, frame) numbered by counting from the first frame, up to frame ``last``: every packet decoded,
        since a skipped frame would not be counted."""
        rewind(self._container)
        context, index = self._stream.codec_context, 0
        for packet in profile.timed("demux", self._container.demux(self._stream)):
            for frame in decode_packet(context, packet, True):
                yield index, frame
                if index >= last:
                    return
                index += 1

    def close(self) -> None:
        self._container.close()


def open_pyav(data: bytes, threads: int = 1) -> PyAVReader:
    return PyAVReader(data, threads=threads)
