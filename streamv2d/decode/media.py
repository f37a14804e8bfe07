"""Opening media bytes with PyAV and reading the video stream's facts: the one layer ``Probe``, the fused
transforms and the frame decoders share, with one error class for bytes that cannot serve."""
from __future__ import annotations

import io
from fractions import Fraction
from typing import List

import av


class MediaError(ValueError):
    """Bytes that cannot serve the request: undecodable, no video stream, too short, corrupt."""


def open_media(data: bytes, pixel_format: bool = False) -> "av.container.InputContainer":
    """Open in-memory media, turning libav's errors into a readable :class:`MediaError`.

    Stream probing decodes no frame unless ``pixel_format`` is asked for: the pixel format is the one stream fact
    only decoding tells (size, rate, frame count and duration come from the headers), and that decoding made
    opening a 720p H.264 file ~6× dearer (12 ms against 2 ms)."""
    try:
        container = av.open(io.BytesIO(data), mode="r", options=None if pixel_format else {"skip_frame": "all"})
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"undecodable media: {exc}") from exc
    if not pixel_format and any(s.codec_context.width == 0 for s in container.streams.video):
        container.close()   # a format whose frame size only decoding tells: probe the usual way
        return open_media(data, pixel_format=True)
    return container


def video_stream(container) -> "av.video.stream.VideoStream":
    if not container.streams.video:
        raise MediaError("no video stream")
    return container.streams.video[0]


def stream_fps(stream) -> Fraction:
    """The video's frame rate: average rate, else guessed rate, else 25 (libav's own fallback)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def duration_seconds(container, stream) -> float:
    """Video duration: the stream's own when stored, else the container's."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    raise MediaError("unknown duration")


def keyframe_timestamps(container, stream) -> List[float]:
    """Presentation times of the video's keyframes, found by demuxing only (no decoding)."""
    times = sorted(float(p.pts * stream.time_base) for p in container.demux(stream)
                   if p.is_keyframe and p.pts is not None)
    container.seek(0)
    return times
