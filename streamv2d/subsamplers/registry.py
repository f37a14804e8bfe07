"""Subsamplers by name, for YAML/CLI configs: ``[{fps: {rate: 8}}, {resolution: {size: 256}}, probe]``."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, List, Mapping, Sequence, Union

from .audio import Audio
from .base import SubsamplerLike
from .cuts import CutDetection
from .flow import OpticalFlow
from .frames import Frames
from .probe import Probe
from .video import FPS, Clip, Encode, Resolution

Factory = Callable[..., SubsamplerLike]
ConfigItem = Union[str, Mapping[str, Any]]

_REGISTRY: Dict[str, Factory] = {
    "probe": Probe, "fps": FPS, "resolution": Resolution, "clip": Clip, "encode": Encode,
    "cut_detection": CutDetection, "audio": Audio, "optical_flow": OpticalFlow, "frames": Frames,
}


def register(name: str, factory: Factory) -> None:
    """Make ``factory`` (a class or function returning a subsampler) available to configs as ``name``."""
    _REGISTRY[name] = factory


def available() -> Dict[str, Factory]:
    """Every name a config may use."""
    return dict(_REGISTRY)


def from_config(items: Sequence[ConfigItem]) -> List[SubsamplerLike]:
    """Subsamplers from names and ``{name: options}`` items; options may be a mapping, a list of positional
    values, a single value (the first parameter) or null. Unknown names or options raise ``ValueError``."""
    if isinstance(items, (str, Mapping)):
        raise ValueError("subsamplers must be a list of names or {name: options} items")
    return [_build(item) for item in items]


def _build(item: ConfigItem) -> SubsamplerLike:
    if isinstance(item, str):
        name, options = item, None
    elif isinstance(item, Mapping) and len(item) == 1:
        name, options = next(iter(item.items()))
    else:
        raise ValueError(f"a subsampler item is a name or a one-key {{name: options}} mapping, got {item!r}")
    factories = available()
    if name not in factories:
        raise ValueError(f"unknown subsampler {name!r}; known: {', '.join(sorted(factories))}")
    factory = factories[name]
    args, kwargs = _arguments(options)
    params = inspect.signature(factory).parameters
    accepted = ", ".join(params)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    unknown = sorted(set(kwargs) - set(params)) if not takes_any else []
    if unknown:
        raise ValueError(f"subsampler {name!r}: unknown option(s) {', '.join(unknown)}; accepted: {accepted}")
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as exc:
        raise ValueError(f"subsampler {name!r}: {exc}; accepted options: {accepted}") from None
    return factory(*args, **kwargs)


def _arguments(options: Any) -> "tuple[list, dict]":
    if options is None:
        return [], {}
    if isinstance(options, Mapping):
        return [], dict(options)
    if isinstance(options, (list, tuple)):
        return list(options), {}
    return [options], {}


#: video2dataset subsampler class → (our name, {their arg: our option}), in the order video2dataset applies them.
_V2D = {
    "FFProbeSubsampler": ("probe", {"extract_keyframes": "keyframes"}),
    "CutDetectionSubsampler": ("cut_detection", {"cut_detection_mode": "cut_detection_mode", "threshold": "threshold",
                                                 "min_scene_len": "min_scene_len", "framerates": "framerates"}),
    "ClippingSubsampler": ("clip", {"min_length": "min_length", "max_length": "max_length",
                                    "max_length_strategy": "max_length_strategy", "precision": "precision"}),
    "FrameSubsampler": ("fps", {"frame_rate": "rate"}),
    "ResolutionSubsampler": ("resolution", {"video_size": "size", "resize_mode": "mode"}),
    "AudioRateSubsampler": ("audio", {"sample_rate": "rate", "n_audio_channels": "channels",
                                      "encode_format": "format"}),
    "OpticalFlowSubsampler": ("optical_flow", {"target_fps": "fps"}),
}


def from_video2dataset(spec: Mapping[str, Any], notes: List[str]) -> List[SubsamplerLike]:
    """Subsamplers from a video2dataset ``subsampling:`` mapping (``{ClassName: {args: {...}}}``), applied in
    video2dataset's order; arguments with no counterpart are appended to ``notes`` as ``"key: reason"`` lines,
    and a stage with no counterpart is an error (it would be skipped while the job reports success)."""
    missing = sorted(set(spec) - set(_V2D))
    if missing:
        raise ValueError(f"subsampling: {', '.join(missing)} cannot run here (no streamv2d counterpart; known: "
                         f"{', '.join(_V2D)}); remove it or register a custom subsampler")
    items: List[ConfigItem] = []
    for class_name, (name, renames) in _V2D.items():
        if class_name not in spec:
            continue
        entry = spec[class_name] or {}
        options: Dict[str, Any] = {}
        if entry.get("cuts_are_clips"):
            options["cuts_are_clips"] = True
        for arg, value in (entry.get("args") or {}).items():
            ours = renames.get(arg)
            if ours is None:
                notes.append(f"subsampling.{class_name}.args.{arg}: not supported")
            elif value is not None:
                options[ours] = value
        items.append({name: options})
    return from_config(items)
