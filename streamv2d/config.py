"""Job configuration from YAML: ``subsampling``, ``reading``, ``storage``, ``distribution`` sections.

A video2dataset config file runs as is where its features map; a key that has no meaning here is reported
(``Job.notes``), and a stage that cannot run is an error, so nothing is silently dropped.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, Dict, List, Mapping, Optional

import yaml

from .cache.evict import parse_size
from .job import Job, positive_int
from .sources.table import TableOptions

#: video2dataset keys that have no meaning here, with the reason given to the user.
_V2D_IGNORED = {
    "storage.oom_shard_count": "shard id width is derived from the shard count (at least 5 digits)",
    "distribution.subjob_size": "every input shard is its own job",
    "reading.sampler": "shard selection is done by ranks (RANK/WORLD_SIZE)",
    "reading.yt_args.download_audio_rate": "audio comes with the video's own track; resample it with the "
                                           "AudioRateSubsampler (audio stage)",
}

#: ``reading.dataloader_args`` keys that change how stages decode (read by the stage translations), and the ones
#: that only tune video2dataset's own loader.
_DATALOADER_USED = ("batch_size", "resize_size", "decoder_kwargs")
_DECODER_USED = ("n_frames", "fps")
_DECODER_TUNING = ("num_threads", "return_bytes", "uniformly_sample")
#: ``yt_args.yt_metadata_args`` keys (video2dataset's get_yt_meta)
_YT_METADATA_KEYS = ("writesubtitles", "subtitleslangs", "writeautomaticsub", "get_info")


def load_config(path: Optional[str], source: Any = None, *, clip_col: Optional[str] = None) -> Job:
    """The :class:`Job` a YAML file describes (ours or video2dataset's), on ``source``; None gives the defaults.
    ``clip_col``: the table's clip column, given apart (a video2dataset config then clips by it, as
    video2dataset does). Every value is checked here, before any row runs: a wrong one is a ValueError naming
    the key."""
    if path is None:
        return Job(source=source)
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a job config must be a mapping with subsampling/reading/storage/distribution")
    try:
        return job_from_dict(doc, source, clip_col=clip_col)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def job_from_dict(doc: Mapping[str, Any], source: Any = None, *, clip_col: Optional[str] = None,
                  encode_formats: Optional[Mapping[str, str]] = None) -> Job:
    """The :class:`Job` of a config document (the YAML file's content). ``clip_col`` and ``encode_formats``
    are video2dataset's run arguments that shape its stages (a clip column makes it clip)."""
    unknown = sorted(set(doc) - {"subsampling", "subsamplers", "reading", "storage", "distribution"})
    if unknown:
        raise ValueError(f"unknown section(s) {unknown}")
    notes: List[str] = []
    reading, storage, distribution = (_section(doc, name) for name in ("reading", "storage", "distribution"))
    context = _translate_v2d(reading, storage, distribution, notes)
    context.clip_col = clip_col or reading.get("clip_col")
    context.encode_formats = dict(encode_formats or {})
    leading = metadata_stages(reading.pop("yt_metadata", None))
    fetch = dict(reading.pop("fetch", None) or {})
    if "timeout" in reading:
        fetch.setdefault("read_timeout", reading.pop("timeout"))
    table = {f.name: reading.pop(f.name) for f in fields(TableOptions) if f.name in reading}
    if "max_bytes" in fetch:
        fetch["max_bytes"] = parse_size(fetch["max_bytes"])
    if "threads" in distribution:
        fetch["threads"] = positive_int("distribution.threads", distribution.pop("threads"))
    output_format = storage.pop("format", "tar")
    processes = positive_int("distribution.processes", distribution.pop("processes", None), allow_none=True)
    distributor = distribution.pop("distributor", "multiprocessing")
    distributor_args = distribution.pop("distributor_args", None) or {}
    if not isinstance(distributor_args, Mapping):
        raise ValueError(f"distribution.distributor_args: expected a mapping, got {distributor_args!r}")
    for section, rest in (("reading", reading), ("storage", storage), ("distribution", distribution)):
        if rest:
            raise ValueError(f"unknown key(s) in {section}: {sorted(rest)}")
    subsampling = doc.get("subsamplers", doc.get("subsampling")) or []
    if isinstance(doc.get("subsampling"), Mapping) and not set(subsampling) & set(_our_names()):
        stages = _v2d_subsamplers(subsampling, notes, context)
    else:
        stages = build_subsamplers(subsampling, notes)
    return Job(source=source, subsamplers=leading + stages, table=table, fetch=fetch,
               output_format=output_format, processes=processes, distributor=distributor,
               distributor_args=distributor_args, notes=notes)


def _our_names() -> List[str]:
    from .subsamplers.registry import available

    return list(available())


def _v2d_subsamplers(spec: Mapping[str, Any], notes: List[str], context: Any) -> List[Any]:
    from .subsamplers.registry import from_video2dataset

    return from_video2dataset(spec, notes, context)


def metadata_stages(yt_metadata: Optional[Mapping[str, Any]]) -> List[Any]:
    """The stages video2dataset runs while downloading, before any subsampler: the platform metadata and
    subtitles of ``yt_metadata_args`` (``json["yt_meta_dict"]``)."""
    if not yt_metadata:
        return []
    from .subsamplers.youtube import YtMetadata

    unknown = sorted(set(yt_metadata) - set(_YT_METADATA_KEYS))
    if unknown:
        raise ValueError(f"reading.yt_args.yt_metadata_args: unknown key(s) {unknown}; known: "
                         f"{list(_YT_METADATA_KEYS)}")
    return [YtMetadata(**yt_metadata)]


def _section(doc: Mapping[str, Any], name: str) -> Dict[str, Any]:
    value = doc.get(name) or {}
    if not isinstance(value, Mapping):
        raise ValueError(f"section {name}: expected a mapping, got {value!r}")
    return dict(value)


def _translate_v2d(reading: dict, storage: dict, distribution: dict, notes: List[str]) -> Any:
    """Rename video2dataset's keys to ours in place, note the ones that have no counterpart, and return what
    shapes its stages (:class:`~streamv2d.subsamplers.registry.V2DContext`)."""
    from .subsamplers.registry import V2DContext

    for dotted, reason in _V2D_IGNORED.items():
        section, *keys = dotted.split(".")
        holder = {"reading": reading, "storage": storage, "distribution": distribution}[section]
        for key in keys[:-1]:
            holder = holder.get(key) if isinstance(holder.get(key), dict) else {}
        if keys[-1] in holder:
            holder.pop(keys[-1])
            notes.append(f"{dotted}: {reason}")
    context = V2DContext(captions_are_subtitles=bool(storage.pop("captions_are_subtitles", False)),
                         dataloader_args=_dataloader_args(reading.pop("dataloader_args", None), notes))
    _translate_yt_args(reading, reading.pop("yt_args", None) or {}, context.captions_are_subtitles)
    if "number_sample_per_shard" in storage:
        reading["samples_per_shard"] = storage.pop("number_sample_per_shard")
    if "processes_count" in distribution:
        distribution["processes"] = distribution.pop("processes_count")
    if "thread_count" in distribution:
        distribution["threads"] = distribution.pop("thread_count")
    _translate_distributor(distribution, notes)

    return context


#: video2dataset's slurm ``distributor_args`` that are sbatch options here.
_V2D_SBATCH = {"partition": "--partition", "account": "--account", "cpus_per_task": "--cpus-per-task",
               "gpus_per_node": "--gpus-per-node", "nodelist": "--nodelist", "exclude": "--exclude",
               "timeout": "--time"}


def _translate_distributor(distribution: dict, notes: List[str]) -> None:
    """video2dataset's ``pyspark`` is our ``spark``; its slurm arguments become ``sbatch_args`` (the array's
    width comes from ``n_nodes`` × ``tasks_per_node``), and the ones with no meaning here are noted."""
    if distribution.get("distributor") == "pyspark":
        distribution["distributor"] = "spark"
    if distribution.get("distributor", "multiprocessing") == "multiprocessing" and distribution.get("distributor_args"):
        distribution.pop("distributor_args")   # as video2dataset: its local distributor reads none of them
        notes.append("distribution.distributor_args: not used by the multiprocessing distributor")
    args = distribution.get("distributor_args")
    if distribution.get("distributor") != "slurm" or not isinstance(args, Mapping):
        return
    args = dict(args)
    sbatch = list(args.pop("sbatch_args", None) or [])
    sbatch += [f"{_V2D_SBATCH[k]}={args.pop(k)}" for k in list(args) if k in _V2D_SBATCH]
    if "n_nodes" in args or "tasks_per_node" in args:
        args.setdefault("max_parallel", int(args.pop("n_nodes", 1)) * int(args.pop("tasks_per_node", 1)))
    for key in ("job_name", "cache_path", "verbose_wait"):
        if key in args:
            args.pop(key)
            notes.append(f"distribution.distributor_args.{key}: not used (tasks log under the store's hidden folder)")
    if sbatch:
        args["sbatch_args"] = sbatch
    distribution["distributor_args"] = args


def _translate_yt_args(reading: dict, yt_args: Mapping[str, Any], captions_are_subtitles: bool) -> None:
    """``yt_args``: ``download_size`` → a yt-dlp format (the smallest single-file format at or above that
    height, as video2dataset picks, else the best); ``yt_metadata_args`` → ``reading["yt_metadata"]`` (with
    subtitles forced on by ``captions_are_subtitles``, as video2dataset does)."""
    yt_args = dict(yt_args)
    if "download_size" in yt_args:
        size = int(yt_args.pop("download_size"))
        fetch = reading.setdefault("fetch", {})
        fetch.setdefault("yt_dlp_options", {}).setdefault("format", download_size_format(size))
    metadata = dict(yt_args.pop("yt_metadata_args", None) or {})
    if captions_are_subtitles and not metadata.get("writesubtitles"):
        metadata["writesubtitles"] = "all"
    if metadata:
        reading["yt_metadata"] = metadata
    if yt_args:
        raise ValueError(f"reading.yt_args: unknown key(s) {sorted(yt_args)}; known: download_size, "
                         "download_audio_rate, yt_metadata_args")


def download_size_format(size: int) -> str:
    """yt-dlp's format for video2dataset's ``download_size``: the smallest format with sound at or above
    ``size`` px high (mp4 first), else the best one (single files: no merge needed)."""
    return f"w[height>={size}][ext=mp4]/w[height>={size}]/b[ext=mp4]/b"


def _dataloader_args(args: Optional[Mapping[str, Any]], notes: List[str]) -> Dict[str, Any]:
    """video2dataset's ``reading.dataloader_args``, checked; keys that only tune its own loader are noted."""
    args = dict(args or {})
    unknown = sorted(set(args) - set(_DATALOADER_USED))
    if unknown:
        raise ValueError(f"reading.dataloader_args: unknown key(s) {unknown}; known: {list(_DATALOADER_USED)}")
    decoder = dict(args.get("decoder_kwargs") or {})
    unknown = sorted(set(decoder) - set(_DECODER_USED) - set(_DECODER_TUNING))
    if unknown:
        raise ValueError(f"reading.dataloader_args.decoder_kwargs: unknown key(s) {unknown}; known: "
                         f"{list(_DECODER_USED + _DECODER_TUNING)}")
    for key in sorted(set(decoder) & set(_DECODER_TUNING)):
        notes.append(f"reading.dataloader_args.decoder_kwargs.{key}: frames are always sampled uniformly, "
                     "decoded in process and handed over decoded")
    return args


def build_subsamplers(spec: Any, notes: List[str]) -> List[Any]:
    """Subsamplers from the YAML list form, from the same names written as one mapping (``{probe: {},
    fps: {rate: 5}}``, in order), or from video2dataset's ``{ClassName: {args: …}}`` form."""
    if not spec:
        return []
    from .subsamplers.registry import available, from_config, from_video2dataset

    if isinstance(spec, Mapping):
        ours = set(spec) & set(available())
        if ours and ours != set(spec):
            raise ValueError(f"subsampling mixes streamv2d names {sorted(ours)} with others "
                             f"{sorted(set(spec) - ours)}; use one form")
        if ours:
            return from_config([{name: options} for name, options in spec.items()])
        return from_video2dataset(spec, notes)
    return from_config(spec)
