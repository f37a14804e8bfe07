"""Subsamplers: per-sample transforms applied lazily, in order, inside each worker."""
from .base import Subsampler, SubsamplerLike, describe, run_chain
from .frames import Frames

__all__ = ["Frames", "Subsampler", "SubsamplerLike", "describe", "run_chain"]
