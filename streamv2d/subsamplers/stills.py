"""video2dataset's other FrameSubsampler methods: the first frame as a JPEG, or the keyframes alone."""
from __future__ import annotations

import io

import av

from ..decode.media import MediaError, open_media, video_stream
from ..sample import Sample
from .base import Subsampler
from .probe import media_bytes


def first_frame_jpeg(data: bytes, quality: int = 2) -> bytes:
    """The first decodable frame of ``data`` as JPEG bytes (``quality``: mjpeg's qscale, 2 = best, as
    video2dataset's ``q:v 2``)."""
    with open_media(data) as container:
        video = video_stream(container)
        frame = next(iter(container.decode(video)), None)
        if frame is None:
            raise MediaError("no decodable frame for a still")
        out = io.BytesIO()
        with av.open(out, mode="w", format="image2pipe") as oc:
            stream = oc.add_stream("mjpeg", rate=1)
            stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuvj420p"
            stream.codec_context.qscale = quality
            image = frame.reformat(format="yuvj420p")
            image.pts = 0
            oc.mux(stream.encode(image))
            oc.mux(stream.encode(None))
    return out.getvalue()


def keyframes_only(data: bytes) -> bytes:
    """A video of the keyframes of ``data`` alone, stream-copied with their timestamps (ffmpeg's
    ``-discard nokey -c copy -copyts``): no decoding, no re-encoding."""
    with open_media(data) as container:
        video = video_stream(container)
        out = io.BytesIO()
        with av.open(out, mode="w", format="mp4") as oc:
            target = oc.add_stream_from_template(video)
            for packet in container.demux(video):
                if packet.pts is None or not packet.is_keyframe:
                    continue
                packet.stream = target
                oc.mux(packet)
    return out.getvalue()


class Still(Subsampler):
    """``method="first_frame"`` adds the first frame as ``sample["jpg"]`` (the video stays); ``"keyframe"``
    replaces the video by its keyframes alone. video2dataset's ``FrameSubsampler(downsample_method=…)``."""

    METHODS = ("first_frame", "keyframe")
    metadata_fields = {"still": "string"}

    def __init__(self, method: str = "first_frame") -> None:
        if method not in self.METHODS:
            raise ValueError(f"still method must be one of {self.METHODS}, got {method!r}")
        self.method = method

    def __call__(self, sample: Sample) -> Sample:
        ext, data = media_bytes(sample)
        if self.method == "first_frame":
            sample["jpg"] = first_frame_jpeg(data)
        else:
            sample.pop(ext)
            sample["mp4"] = keyframes_only(data)
        sample.setdefault("json", {})["still"] = self.method
        return sample
