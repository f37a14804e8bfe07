"""Probe: container and stream metadata read in-process with PyAV (no ffprobe subprocess, no temp file)."""
from __future__ import annotations

from typing import Any, Dict

from ..decode.media import MediaError, duration_seconds, keyframe_timestamps, open_media, stream_fps, video_stream
from ..sample import Sample, media_key
from .base import Subsampler


def media_bytes(sample: Sample) -> "tuple[str, bytes]":
    """The video payload's extension and bytes; a clear error when there is none."""
    ext = media_key(sample)
    if ext is None:
        raise MediaError("sample has no video payload")
    return ext, sample[ext]


def probe(data: bytes, keyframes: bool = False) -> Dict[str, Any]:
    """ffprobe-like ``{"format", "streams"}`` plus flat summary fields; ``keyframe_timestamps`` on request
    (ending with the duration, as video2dataset's FFProbeSubsampler does)."""
    with open_media(data, pixel_format=True) as container:
        return probe_container(container, len(data), keyframes)


def set_pixel_format(meta: Dict[str, Any], name: str) -> None:
    """Fill the video's pixel format into :func:`probe_container`'s metadata once a decoded frame has told it."""
    meta["pix_fmt"] = name
    next(s for s in meta["streams"] if s["codec_type"] == "video")["pix_fmt"] = name


def probe_container(container, size: int, keyframes: bool = False) -> Dict[str, Any]:
    """:func:`probe` of an open container of ``size`` bytes. Opened without ``pixel_format=True``, its pixel
    formats are None until :func:`set_pixel_format` fills them from a decoded frame."""
    video = video_stream(container)
    cc = video.codec_context
    fps = stream_fps(video)
    duration = duration_seconds(container, video)
    streams = [_stream_info(s) for s in container.streams]
    audio = [s for s in streams if s["codec_type"] == "audio"]
    meta: Dict[str, Any] = {
        "format": {"format_name": container.format.name, "duration": duration,
                   "bit_rate": container.bit_rate, "size": size, "nb_streams": len(streams)},
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

    metadata_fields = {"video_metadata": "json"}

    def __init__(self, keyframes: bool = False) -> None:
        self.keyframes = keyframes

    def __call__(self, sample: Sample) -> Sample:
        _, data = media_bytes(sample)
        sample.setdefault("json", {})["video_metadata"] = probe(data, self.keyframes)
        return sample
