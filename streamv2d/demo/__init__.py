"""Offline demo material: synthetic videos and a loopback HTTP server (also the tests' fixtures)."""
from .server import LoopbackServer
from .synth import make_corpus, make_video

__all__ = ["LoopbackServer", "make_corpus", "make_video"]
