"""Subsamplers: per-sample transforms applied lazily, in order, inside each worker."""
from ..decode.media import MediaError
from .audio import Audio
from .base import Subsampler, SubsamplerLike, decoding, run_chain
from .chain import Chain, compile_chain
from .cuts import CutDetection
from .fingerprint import describe
from .flow import OpticalFlow
from .frames import Frames
from .probe import Probe, probe
from .registry import from_config, register
from .video import FPS, Clip, Encode, Resolution, Transcode

__all__ = ["FPS", "Audio", "Chain", "Clip", "CutDetection", "Encode", "Frames", "MediaError", "OpticalFlow", "Probe",
           "Resolution", "Subsampler", "SubsamplerLike", "Transcode", "compile_chain", "decoding", "describe",
           "from_config", "probe", "register", "run_chain"]
