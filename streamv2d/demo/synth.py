"""Synthetic H.264 videos made in memory with PyAV: moving gradients, optional AAC tone."""
from __future__ import annotations

import io
import os
from fractions import Fraction
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np


def encode_video(frames: Iterable[np.ndarray], fps: int, *, container: str = "mp4", codec: str = "libx264",
                 options: Optional[Dict[str, str]] = None, gop: int = 0,
                 audio_seconds: float = 0.0) -> bytes:
    """Encode RGB frames (``[H, W, 3]`` uint8, all one size) into a container in memory; ``audio_seconds`` > 0
    adds an AAC tone. ``options`` go to the encoder (x264 defaults here: ultrafast, crf 28)."""
    import av

    from ..scheduling import encode_frame

    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = astream = None
        for i, img in enumerate(frames):
            if stream is None:
                stream = out.add_stream(codec, rate=fps)
                stream.height, stream.width = img.shape[:2]
                stream.pix_fmt = "yuv420p"
                default = {"preset": "ultrafast", "crf": "28"} if codec == "libx264" else {}
                stream.options = dict(options if options is not None else default)
                if gop:
                    stream.gop_size = gop
                if audio_seconds:   # every stream exists before the first packet is muxed
                    astream = out.add_stream("aac", rate=44100)
                    astream.layout = "stereo"
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in encode_frame(stream, frame):
                out.mux(packet)
        for packet in encode_frame(stream, None) if stream is not None else ():
            out.mux(packet)
        if astream is not None:
            _encode_tone(out, astream, audio_seconds)
    return buf.getvalue()


def make_video(seconds: float = 2.0, width: int = 320, height: int = 240, fps: int = 10, *,
               audio: bool = False, container: str = "mp4", codec: str = "libx264", seed: int = 0,
               gop: int = 0) -> bytes:
    """A short test clip. Each frame differs (a moving, seeded pattern) so decoders can be checked for exact
    frames; ``gop`` > 0 fixes the keyframe interval."""
    base = np.random.default_rng(seed).integers(0, 255, size=3)
    ys, xs = np.mgrid[0:height, 0:width]

    def frames() -> Iterator[np.ndarray]:
        for i in range(int(seconds * fps)):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = (xs + 4 * i + base[0]) % 256
            img[..., 1] = (ys + 2 * i + base[1]) % 256
            img[..., 2] = (base[2] + 8 * i) % 256
            yield img

    return encode_video(frames(), fps, container=container, codec=codec, gop=gop,
                        audio_seconds=seconds if audio else 0.0)


def _encode_tone(out, astream, seconds: float) -> None:
    import av

    rate, samples = 44100, 1024
    t0 = 0
    for _ in range(int(seconds * rate / samples)):
        t = (np.arange(t0, t0 + samples) / rate).astype(np.float32)
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = t0
        t0 += samples
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_corpus(directory: str, count: int = 12, sizes: Sequence[Tuple[int, int]] = ((320, 240), (256, 144)),
                seconds: float = 2.0) -> List[str]:
    """Write ``count`` small, distinct clips (every third with audio) to ``directory``; return their names."""
    os.makedirs(directory, exist_ok=True)
    names = []
    for i in range(count):
        name = f"video{i:03d}.mp4"
        path = os.path.join(directory, name)
        if not os.path.exists(path):
            width, height = sizes[i % len(sizes)]
            data = make_video(seconds, width, height, audio=(i % 3 == 0), seed=i)
            with open(path + ".tmp", "wb") as f:
                f.write(data)
            os.replace(path + ".tmp", path)
        names.append(name)
    return names
