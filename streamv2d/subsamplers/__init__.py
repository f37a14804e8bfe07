"""Subsamplers: per-sample transforms applied lazily, in order, inside each worker."""
from .base import Subsampler, SubsamplerLike, describe, run_chain

__all__ = ["Subsampler", "SubsamplerLike", "describe", "run_chain"]
