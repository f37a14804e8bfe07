"""Subsamplers by name, for YAML/CLI configs: ``[{fps: {rate: 8}}, {resolution: {size: 256}}, probe]``."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from .audio import Audio
from .base import SubsamplerLike
from .cuts import CutDetection
from .flow import OpticalFlow
from .frames import Frames
from .models import Caption, FrameEmbedding, Transcribe
from .probe import Probe
from .stills import Still
from .video import FPS, Clip, Encode, Resolution
from .youtube import SubtitleCaptions, SubtitleClips, YtMetadata

Factory = Callable[..., SubsamplerLike]
ConfigItem = Union[str, Mapping[str, Any]]

_REGISTRY: Dict[str, Factory] = {
    "probe": Probe, "fps": FPS, "resolution": Resolution, "clip": Clip, "encode": Encode,
    "cut_detection": CutDetection, "audio": Audio, "optical_flow": OpticalFlow, "frames": Frames,
    "still": Still, "yt_metadata": YtMetadata, "subtitle_clips": SubtitleClips,
    "subtitle_captions": SubtitleCaptions, "caption": Caption, "transcribe": Transcribe,
    "frame_embedding": FrameEmbedding,
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


@dataclass
class V2DContext:
    """What a video2dataset config says outside ``subsampling`` that changes its stages: the table's clip
    column (video2dataset clips whenever one exists), ``storage.captions_are_subtitles``,
    ``reading.dataloader_args`` (how the optical-flow and caption stages decode frames) and the run's
    ``encode_formats`` (containers of each modality)."""

    clip_col: Optional[str] = None
    captions_are_subtitles: bool = False
    dataloader_args: Mapping[str, Any] = field(default_factory=dict)
    encode_formats: Mapping[str, str] = field(default_factory=dict)


Translate = Callable[[Mapping[str, Any], V2DContext, List[str]], List[ConfigItem]]


def _unset(value: Any) -> bool:
    """video2dataset's "not given": None, or -1 for sizes."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0)


def _renamed(class_name: str, args: Mapping[str, Any], renames: Mapping[str, Optional[str]],
             notes: List[str]) -> Dict[str, Any]:
    """``args`` under our option names; an argument mapped to None has no effect here and is noted; one not in
    ``renames`` is an error naming it (it would change the output and be silently dropped)."""
    unknown = sorted(set(args) - set(renames))
    if unknown:
        raise ValueError(f"subsampling.{class_name}.args: unknown argument(s) {unknown}; known: {sorted(renames)}")
    options: Dict[str, Any] = {}
    for arg, value in args.items():
        ours = renames[arg]
        if ours is None:
            notes.append(f"subsampling.{class_name}.args.{arg}: has no effect here")
        elif not _unset(value):
            options[ours] = value
    return options


def _probe(args, context, notes):
    """FFProbeSubsampler → Probe."""
    return [{"probe": _renamed("FFProbeSubsampler", args, {"extract_keyframes": "keyframes"}, notes)}]


def _cut_detection(args, context, notes):
    """CutDetectionSubsampler → CutDetection (``cuts_are_clips`` is set by the caller)."""
    renames = {"cut_detection_mode": "cut_detection_mode", "threshold": "threshold",
               "min_scene_len": "min_scene_len", "framerates": "framerates"}
    return [{"cut_detection": _renamed("CutDetectionSubsampler", args, renames, notes)}]


def _clip(args, context, notes):
    """ClippingSubsampler → Clip, with video2dataset's default precision and its pass-through of unclipped videos."""
    renames = {"min_length": "min_length", "max_length": "max_length",
               "max_length_strategy": "max_length_strategy", "precision": "precision", "oom_clip_count": None}
    options = {"precision": "low", **_renamed("ClippingSubsampler", args, renames, notes)}
    return [{"clip": {**options, "no_clips": "pass"}}]


def _encode_format(args: Dict[str, Any], context: V2DContext) -> List[ConfigItem]:
    """An ``encode`` item for a video stage's ``encode_format`` (or the run's video format) other than mp4."""
    container = args.pop("encode_format", None) or context.encode_formats.get("video", "mp4")
    return [] if container == "mp4" else [{"encode": {"container": container}}]


def _resolution(args, context, notes):
    """ResolutionSubsampler → Resolution (and an Encode for another container)."""
    args = dict(args)
    encode = _encode_format(args, context)
    options = _renamed("ResolutionSubsampler", args, {"video_size": "size", "resize_mode": "mode",
                                                      "width": "width", "height": "height"}, notes)
    return [{"resolution": options}] + encode


def _frames(args, context, notes):
    """FrameSubsampler → FPS (and an Encode for another container), or a Still for its frame methods."""
    args = dict(args)
    encode = _encode_format(args, context)
    method = args.pop("downsample_method", "fps")
    options = _renamed("FrameSubsampler", args, {"frame_rate": "rate"}, notes)
    if method == "fps":
        return [{"fps": options}] + encode
    if method == "keyframe":
        return [{"still": {"method": "keyframe"}}]
    if "frame" in method:   # video2dataset: any other "…frame…" method keeps the first frame
        return [{"still": {"method": "first_frame"}}]
    raise ValueError(f"subsampling.FrameSubsampler.args.downsample_method: {method!r} cannot run here (known: fps, "
                     "first_frame, keyframe)")


def _audio(args, context, notes):
    """AudioRateSubsampler → Audio that keeps videos without sound."""
    renames = {"sample_rate": "rate", "n_audio_channels": "channels", "encode_format": "format"}
    options = _renamed("AudioRateSubsampler", args, renames, notes)
    return [{"audio": {"format": context.encode_formats.get("audio", "m4a"), **options, "required": False}}]


def _optical_flow(args, context, notes):
    """OpticalFlowSubsampler (+ ``dataloader_args``) → OpticalFlow writing video2dataset's ``npy`` member."""
    args = dict(args)
    detector = args.pop("detector", "cv2")
    if detector != "cv2":
        raise ValueError(f"subsampling.OpticalFlowSubsampler.args.detector: {detector!r} cannot run here (RAFT "
                         "needs its own weights and code); use 'cv2' (Farneback)")
    options: Dict[str, Any] = {}
    detector_args = args.pop("detector_args", None) or ()
    farneback = ("pyr_scale", "levels", "winsize", "iterations", "poly_n", "poly_sigma", "flags")
    if isinstance(detector_args, Mapping):
        options.update(_renamed("OpticalFlowSubsampler.detector_args", detector_args,
                                {**{name: name for name in farneback}, "downsample_size": "size"}, notes))
    else:
        options.update(zip(farneback, detector_args))
    options.update(_renamed("OpticalFlowSubsampler", args, {"dtype": "dtype", "is_slurm_task": None}, notes))
    decoding = context.dataloader_args.get("decoder_kwargs") or {}
    if decoding.get("fps"):
        options["fps"] = decoding["fps"]
    options.update(_resize_option(context))
    options["member"] = context.encode_formats.get("optical_flow", "npy")
    return [{"optical_flow": options}]


def _resize_option(context) -> Dict[str, Any]:
    """``dataloader_args.resize_size`` (one side, or ``[h, w]``: its shorter side) as a stage's ``size``."""
    size = context.dataloader_args.get("resize_size")
    if not size:
        return {}
    return {"size": min(size) if isinstance(size, (list, tuple)) else size}


def _caption(args, context, notes):
    """CaptionSubsampler (+ ``dataloader_args``) → Caption writing ``vblip`` and ``txt``."""
    args = dict(args)
    captioner = dict(args.pop("captioner_args", None) or {})
    _renamed("CaptionSubsampler", args, {"is_slurm_task": None}, notes)
    options = _renamed("CaptionSubsampler.captioner_args", captioner,
                       {"video_captioner": "model", "prompt": "prompt", "device": "device"}, notes)
    decoding = context.dataloader_args.get("decoder_kwargs") or {}
    if decoding.get("n_frames"):
        options["num_frames"] = decoding["n_frames"]
    options.update(_resize_option(context))
    if context.dataloader_args.get("batch_size"):
        options["batch_size"] = context.dataloader_args["batch_size"]
    return [{"caption": {**options, "field": "vblip", "to_txt": True}}]


def _whisper(args, context, notes):
    """WhisperSubsampler → Transcribe."""
    renames = {"model_name": "model", "batch_size": "batch_size", "compute_type": "dtype",
               "download_root": "cache_dir", "is_slurm_task": None}
    return [{"transcribe": _renamed("WhisperSubsampler", args, renames, notes)}]


#: video2dataset subsampler class → its translation, in the order video2dataset applies them (probe, cut
#: detection, clipping, the video stages, audio; the model stages run in stages of their own).
_V2D: Dict[str, Translate] = {
    "FFProbeSubsampler": _probe, "CutDetectionSubsampler": _cut_detection, "ClippingSubsampler": _clip,
    "ResolutionSubsampler": _resolution, "FrameSubsampler": _frames, "AudioRateSubsampler": _audio,
    "OpticalFlowSubsampler": _optical_flow, "CaptionSubsampler": _caption, "WhisperSubsampler": _whisper,
}


def from_video2dataset(spec: Mapping[str, Any], notes: List[str],
                       context: Optional[V2DContext] = None) -> List[SubsamplerLike]:
    """Subsamplers from a video2dataset ``subsampling:`` mapping (``{ClassName: {args: {...}}}``), applied in
    video2dataset's order. As there, a stage runs only with its ``args``; a Clip is added whenever
    video2dataset clips (a clip column, ``cuts_are_clips``, ``captions_are_subtitles``) even when not
    configured. Arguments with no effect here are appended to ``notes``; an unknown stage or argument is an
    error naming it."""
    context = context or V2DContext()
    missing = sorted(set(spec) - set(_V2D))
    if missing:
        raise ValueError(f"subsampling: {', '.join(missing)} cannot run here (no streamv2d counterpart; known: "
                         f"{', '.join(_V2D)}); remove it or register a custom subsampler")
    entries = {name: dict(spec[name] or {}) for name in spec}
    cuts = entries.get("CutDetectionSubsampler", {})
    clips = bool(context.clip_col or context.captions_are_subtitles or cuts.get("cuts_are_clips"))
    if clips and "ClippingSubsampler" not in entries:
        entries["ClippingSubsampler"] = {"args": {}}
    items: List[ConfigItem] = []
    for class_name, translate in _V2D.items():
        entry = entries.get(class_name)
        if entry is None:
            continue
        extra = sorted(set(entry) - {"args", "cuts_are_clips"})
        if extra:
            raise ValueError(f"subsampling.{class_name}: unknown key(s) {extra}; known: args, cuts_are_clips")
        if entry.get("args") is None and "args" not in entry and class_name != "ClippingSubsampler":
            continue   # video2dataset: no args, no stage (cuts_are_clips alone clips by the cuts in json)
        if class_name == "ClippingSubsampler" and context.captions_are_subtitles:
            items.append({"subtitle_clips": {}})
        items += translate(entry.get("args") or {}, context, notes)
        if class_name == "CutDetectionSubsampler" and entry.get("cuts_are_clips"):
            items[-1]["cut_detection"]["cuts_are_clips"] = True
    if context.captions_are_subtitles:
        items.append({"subtitle_captions": {}})   # last: between video ops it would split their fused pass
    return from_config(items)
