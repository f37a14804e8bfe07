"""Subsamplers: per-sample transforms applied lazily, in order, inside each worker."""
from .base import Subsampler, SubsamplerLike, describe, run_chain

__all__ = ["Subsampler", "SubsamplerLike", "describe", "run_chain"]
from .audio import Audio
from .chain import compile_chain
from .cuts import CutDetection
from .flow import OpticalFlow
from .probe import MediaError, Probe, probe
from .registry import from_config, register
from .video import FPS, Clip, Encode, Resolution, Transcode

__all__ += ["Audio", "CutDetection", "OpticalFlow", "MediaError", "Probe", "probe", "FPS", "Clip", "Encode",
            "Resolution", "Transcode", "compile_chain", "from_config", "register"]
