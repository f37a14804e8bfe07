"""Audio: the audio track as its own modality (m4a, mp3, wav, flac), resampled, mono or stereo, in memory."""
from __future__ import annotations

import io
from typing import Iterator, Optional, Sequence

import av

from ..sample import Sample
from .base import Subsampler
from .probe import MediaError, media_bytes, open_media

#: output extension -> (container format, encoder)
AUDIO_FORMATS = {"m4a": ("mp4", "aac"), "mp3": ("mp3", "libmp3lame"), "wav": ("wav", "pcm_s16le"),
                 "flac": ("flac", "flac")}


class NoAudioError(MediaError):
    """The media has no audio track."""


def layout_for(channels: Optional[int], source_channels: int) -> str:
    """``mono``/``stereo`` for a requested count; by default keep mono/stereo and fold surround to stereo."""
    count = channels or min(source_channels, 2)
    if count not in (1, 2):
        raise ValueError(f"channels must be 1 or 2, got {count}")
    return "mono" if count == 1 else "stereo"


class AudioEncoder:
    """An output audio stream fed decoded frames; PyAV resamples them to the encoder's rate and layout."""

    def __init__(self, container, codec: str, rate: int, layout: str, bitrate: Optional[int] = None) -> None:
        self.container = container
        self.stream = container.add_stream(codec, rate=rate, layout=layout)
        if bitrate:
            self.stream.bit_rate = bitrate

    def encode(self, frame) -> None:
        frame.pts = None  # the encoder numbers samples itself, so clipped audio starts at 0
        self.container.mux(self.stream.encode(frame))

    def flush(self) -> None:
        self.container.mux(self.stream.encode(None))


def audio_frames(container, stream, start: float = 0.0, end: Optional[float] = None) -> Iterator:
    """Decoded frames of ``stream`` overlapping [start, end), after one seek."""
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True)
    for frame in container.decode(stream):
        t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
        if end is not None and t >= end:
            break
        if t + frame.samples / frame.sample_rate > start:
            yield frame


def encode_audio(data: bytes, fmt: str = "m4a", rate: Optional[int] = None, channels: Optional[int] = None,
                 span: Optional[Sequence[float]] = None, bitrate: Optional[int] = None) -> "tuple[bytes, dict]":
    """Re-encode the first audio track of ``data`` (optionally only ``span`` seconds); bytes and metadata."""
    container_format, codec = AUDIO_FORMATS[fmt]
    with open_media(data) as container:
        if not container.streams.audio:
            raise NoAudioError("no audio stream")
        source = container.streams.audio[0]
        rate = rate or source.rate
        layout = layout_for(channels, source.codec_context.channels)
        out = io.BytesIO()
        with av.open(out, mode="w", format=container_format) as oc:
            encoder = AudioEncoder(oc, codec, rate, layout, bitrate)
            start, end = (span[0], span[1]) if span else (0.0, None)
            for frame in audio_frames(container, source, start, end):
                encoder.encode(frame)
            encoder.flush()
    meta = {"sample_rate": rate, "channels": 1 if layout == "mono" else 2, "format": fmt, "codec": codec,
            "source_sample_rate": source.rate}
    return out.getvalue(), meta


class Audio(Subsampler):
    """Adds the audio track as ``sample[format]`` and ``json["audio_metadata"]``; honours ``json["span"]``.

    No audio track: a failure when ``required`` (default), else the sample passes unchanged."""

    def __init__(self, rate: Optional[int] = None, channels: Optional[int] = None, format: str = "m4a",
                 bitrate: Optional[int] = None, required: bool = True, keep_video: bool = True) -> None:
        if format not in AUDIO_FORMATS:
            raise ValueError(f"audio format must be one of {sorted(AUDIO_FORMATS)}, got {format!r}")
        layout_for(channels, 2)  # validates channels early
        self.rate, self.channels, self.format, self.bitrate = rate, channels, format, bitrate
        self.required, self.keep_video = required, keep_video

    def __call__(self, sample: Sample) -> Sample:
        ext, data = media_bytes(sample)
        meta = sample.setdefault("json", {})
        try:
            audio, info = encode_audio(data, self.format, self.rate, self.channels, meta.get("span"), self.bitrate)
        except NoAudioError:
            if self.required:
                raise
            return sample
        sample[self.format] = audio
        meta["audio_metadata"] = info
        if not self.keep_video:
            del sample[ext]
        return sample
