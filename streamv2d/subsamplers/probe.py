"""Probe: container and stream metadata read in-process with PyAV (no ffprobe subprocess, no temp file)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

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


def _rate(value) -> str:
    """A rational as ffprobe prints it (``30000/1001``, ``0/0`` when unknown)."""
    return f"{value.numerator}/{value.denominator}" if value else "0/0"


def _seconds_text(ticks: Optional[int], time_base) -> Optional[str]:
    return None if ticks is None or time_base is None else f"{float(ticks * time_base):.6f}"


def _ffprobe_stream(stream) -> Dict[str, Any]:
    """One stream as ``ffprobe -show_streams -print_format json`` writes it: its numbers that ffprobe prints
    as strings (durations, rates, bit rates, frame counts) are strings here too; absent values are left out."""
    cc = stream.codec_context
    info: Dict[str, Any] = {"index": stream.index, "codec_name": cc.name,
                            "codec_long_name": getattr(cc.codec, "long_name", None), "profile": cc.profile,
                            "codec_type": stream.type}
    tag = getattr(cc, "codec_tag", None)
    if tag:
        info["codec_tag_string"] = tag
    if stream.type == "video":
        sar = getattr(cc, "sample_aspect_ratio", None)
        dar = getattr(cc, "display_aspect_ratio", None)
        info.update(width=cc.width, height=cc.height, coded_width=cc.coded_width or cc.width,
                    coded_height=cc.coded_height or cc.height, has_b_frames=int(bool(getattr(cc, "has_b_frames", 0))),
                    sample_aspect_ratio=f"{sar.numerator}:{sar.denominator}" if sar else None,
                    display_aspect_ratio=f"{dar.numerator}:{dar.denominator}" if dar else None,
                    pix_fmt=cc.format.name if cc.format else None, level=getattr(cc, "level", None),
                    r_frame_rate=_rate(stream.base_rate), avg_frame_rate=_rate(stream.average_rate))
    elif stream.type == "audio":
        info.update(sample_fmt=cc.format.name if cc.format else None, sample_rate=str(cc.sample_rate),
                    channels=cc.channels, channel_layout=cc.layout.name,
                    r_frame_rate="0/0", avg_frame_rate="0/0")
    info.update(id=f"0x{stream.id:x}" if stream.id else None, time_base=_rate(stream.time_base),
                start_pts=stream.start_time, start_time=_seconds_text(stream.start_time, stream.time_base),
                duration_ts=stream.duration, duration=_seconds_text(stream.duration, stream.time_base),
                bit_rate=str(cc.bit_rate) if cc.bit_rate else None,
                nb_frames=str(stream.frames) if stream.frames else None,
                disposition={name: int(bool(stream.disposition & flag)) for name, flag in _dispositions()},
                tags=dict(stream.metadata))
    return {k: v for k, v in info.items() if v is not None}


def _dispositions() -> List[Tuple[str, int]]:
    from av.stream import Disposition

    return [(flag.name, flag.value) for flag in Disposition]


def ffprobe_json(container, size: int, filename: str) -> Dict[str, Any]:
    """``{"streams", "format"}`` of an open container as ``ffprobe -show_format -show_streams -print_format
    json`` writes them (video2dataset's ``video_metadata``): ``format.filename`` is ``filename`` (there is no
    file), ``size``, ``duration``, ``start_time`` and ``bit_rate`` are strings, ``tags`` the container's."""
    duration = container.duration
    fmt = {"filename": filename, "nb_streams": len(container.streams), "nb_programs": 0,
           "format_name": container.format.name, "format_long_name": container.format.long_name,
           "start_time": f"{container.start_time / 1e6:.6f}" if container.start_time is not None else None,
           "duration": f"{duration / 1e6:.6f}" if duration is not None else None, "size": str(size),
           "bit_rate": str(container.bit_rate) if container.bit_rate else None, "probe_score": 100,
           "tags": dict(container.metadata)}
    return {"streams": [_ffprobe_stream(s) for s in container.streams],
            "format": {k: v for k, v in fmt.items() if v is not None}}


def publish_probe(sample: Sample, meta: Dict[str, Any], document: Dict[str, Any]) -> None:
    """Write a probe into ``sample``'s json: ``video_metadata`` as ffprobe's JSON (plus video2dataset's
    ``keyframe_timestamps`` when asked for) and ``video_summary``, streamv2d's typed summary (duration, fps,
    frame_count, width, height, codec, bitrate, pix_fmt, audio_streams)."""
    summary = {k: v for k, v in meta.items() if k not in ("format", "streams", "keyframe_timestamps")}
    for stream in document["streams"]:
        if stream["codec_type"] == "video" and "pix_fmt" not in stream and meta.get("pix_fmt"):
            stream["pix_fmt"] = meta["pix_fmt"]   # known once a frame was decoded (fused probes)
    if "keyframe_timestamps" in meta:
        document = {**document, "keyframe_timestamps": meta["keyframe_timestamps"]}
    sample.setdefault("json", {}).update(video_metadata=document, video_summary=summary)


def probe_filename(sample: Sample, ext: str) -> str:
    """What stands for ffprobe's ``format.filename``: the sample's URL, else its key and extension."""
    return str((sample.get("json") or {}).get("url") or f"{sample.get('__key__', 'sample')}.{ext}")


class Probe(Subsampler):
    """Adds ``json["video_metadata"]`` (video2dataset's key: ffprobe's JSON, ``streams`` and ``format``) and
    ``json["video_summary"]`` (typed: duration, fps, frame count, size, codec, bit rate, audio streams…)."""

    metadata_fields = {"video_metadata": "json", "video_summary": "json"}

    def __init__(self, keyframes: bool = False) -> None:
        self.keyframes = keyframes

    def __call__(self, sample: Sample) -> Sample:
        ext, data = media_bytes(sample)
        with open_media(data, pixel_format=True) as container:
            meta = probe_container(container, len(data), self.keyframes)
            document = ffprobe_json(container, len(data), probe_filename(sample, ext))
        publish_probe(sample, meta, document)
        return sample
