"""Probe: container and stream metadata read in-process with PyAV (no ffprobe subprocess, no temp file)."""
from __future__ import annotations

import io
from fractions import Fraction
from typing import Any, Dict, List

import av

from ..sample import Sample, media_key
from .base import Subsampler


class MediaError(ValueError):
    """Bytes that cannot serve the requested transform: undecodable, no video, too short."""


def media_bytes(sample: Sample) -> "tuple[str, bytes]":
    """The video payload's extension and bytes; a clear error when there is none."""
    ext = media_key(sample)
    if ext is None:
        raise MediaError("sample has no video payload")
    return ext, sample[ext]


def open_media(data: bytes) -> "av.container.InputContainer":
    """Open in-memory media, turning libav's errors into a readable :class:`MediaError`."""
    try:
        return av.open(io.BytesIO(data), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as exc:
        raise MediaError(f"undecodable media: {exc}") from exc


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


def probe(data: bytes, keyframes: bool = False) -> Dict[str, Any]:
    """ffprobe-like ``{"format", "streams"}`` plus flat summary fields; ``keyframe_timestamps`` on request
    (ending with the duration, as video2dataset's FFProbeSubsampler does)."""
    with open_media(data) as container:
        video = video_stream(container)
        cc = video.codec_context
        fps = stream_fps(video)
        duration = duration_seconds(container, video)
        streams = [_stream_info(s) for s in container.streams]
        audio = [s for s in streams if s["codec_type"] == "audio"]
        meta: Dict[str, Any] = {
            "format": {"format_name": container.format.name, "duration": duration,
                       "bit_rate": container.bit_rate, "size": len(data), "nb_streams": len(streams)},
            "streams": streams,
            "duration": duration, "fps": float(fps),
            "frame_count": video.frames or int(round(duration * fps)),
            "width": cc.width, "height": cc.height, "codec": cc.name,
            "bitrate": cc.bit_rate or container.bit_rate, "pix_fmt": cc.format.name if cc.format else None,
            "audio_streams": len(audio),
        }
        if keyframes:
            meta["keyframe_timestamps"] = keyframe_timestamps(container, video) + [duration]
    return meta


def _stream_info(stream) -> Dict[str, Any]:
    cc = stream.codec_context
    info: Dict[str, Any] = {"index": stream.index, "codec_type": stream.type, "codec_name": cc.name,
                            "bit_rate": cc.bit_rate,
                            "duration": float(stream.duration * stream.time_base) if stream.duration else None}
    if stream.type == "video":
        info.update(width=cc.width, height=cc.height, pix_fmt=cc.format.name if cc.format else None,
                    avg_frame_rate=str(stream.average_rate), nb_frames=stream.frames)
    elif stream.type == "audio":
        info.update(sample_rate=cc.sample_rate, channels=cc.channels, channel_layout=cc.layout.name,
                    nb_frames=stream.frames)
    return info


class Probe(Subsampler):
    """Adds ``json["video_metadata"]`` (video2dataset's key) with duration, fps, size, codec, audio streams…"""

    def __init__(self, keyframes: bool = False) -> None:
        self.keyframes = keyframes

    def __call__(self, sample: Sample) -> Sample:
        _, data = media_bytes(sample)
        sample.setdefault("json", {})["video_metadata"] = probe(data, self.keyframes)
        return sample
