"""Job configuration from YAML: ``subsampling``, ``reading``, ``storage``, ``distribution`` sections.

A video2dataset config file runs as is where its features map; every key that does not map is reported,
so nothing is silently ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, List, Optional

import yaml

from .cache.evict import parse_size
from .fetch import FetchConfig
from .sources.table import TableOptions

#: video2dataset keys that have no meaning here, with the reason given to the user.
_V2D_IGNORED = {
    "storage.oom_shard_count": "shard id width is derived from the shard count (at least 5 digits)",
    "storage.captions_are_subtitles": "subtitles as captions are not supported",
    "distribution.subjob_size": "every input shard is its own job",
    "reading.sampler": "shard selection is done by ranks (RANK/WORLD_SIZE)",
    "reading.yt_args.yt_metadata_args": "yt-dlp metadata/subtitle download is not supported; pass yt_dlp_options",
    "reading.yt_args.download_audio_rate": "use the audio subsampler to resample audio",
}

@dataclass
class JobConfig:
    """Everything a ``materialize`` job needs besides its input and output paths."""

    subsamplers: List[Any] = field(default_factory=list)
    reading: Dict[str, Any] = field(default_factory=dict)     # TableOptions fields, as keywords
    fetch: FetchConfig = field(default_factory=FetchConfig)
    output_format: str = "tar"
    processes: int = 1
    ignored: List[str] = field(default_factory=list)         # "key: reason" lines for the user


def load_config(path: Optional[str]) -> JobConfig:
    """Read a YAML job file (ours or video2dataset's); None gives the defaults."""
    if path is None:
        return JobConfig()
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ValueError(f"{path}: no such config file") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: a job config must be a mapping with subsampling/reading/storage/distribution")
    unknown = sorted(set(doc) - {"subsampling", "subsamplers", "reading", "storage", "distribution"})
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {unknown}")
    job = JobConfig()
    reading = dict(doc.get("reading") or {})
    storage = dict(doc.get("storage") or {})
    distribution = dict(doc.get("distribution") or {})
    _translate_v2d(reading, storage, distribution, job.ignored)
    fetch = reading.pop("fetch", {}) or {}
    if "timeout" in reading:
        fetch.setdefault("read_timeout", reading.pop("timeout"))
    job.reading = {f.name: reading.pop(f.name) for f in fields(TableOptions) if f.name in reading}
    if "max_bytes" in fetch:
        fetch["max_bytes"] = parse_size(fetch["max_bytes"])
    if "threads" in distribution:
        fetch["threads"] = int(distribution.pop("threads"))
    job.fetch = FetchConfig.from_any(fetch)
    job.output_format = storage.pop("format", "tar")
    job.processes = int(distribution.pop("processes", 1))
    for section, rest in (("reading", reading), ("storage", storage), ("distribution", distribution)):
        if rest:
            raise ValueError(f"{path}: unknown key(s) in {section}: {sorted(rest)}")
    subsampling = doc.get("subsamplers", doc.get("subsampling")) or []
    job.subsamplers = build_subsamplers(subsampling, job.ignored)
    return job


def _translate_v2d(reading: dict, storage: dict, distribution: dict, ignored: List[str]) -> None:
    """Rename video2dataset's keys to ours in place, and note the ones that have no counterpart."""
    for dotted, reason in _V2D_IGNORED.items():
        section, *keys = dotted.split(".")
        holder = {"reading": reading, "storage": storage, "distribution": distribution}[section]
        for key in keys[:-1]:
            holder = holder.get(key) if isinstance(holder.get(key), dict) else {}
        if keys[-1] in holder:
            holder.pop(keys[-1])
            ignored.append(f"{dotted}: {reason}")
    yt_args = reading.pop("yt_args", None) or {}
    if "download_size" in yt_args:
        size = int(yt_args.pop("download_size"))
        fetch = reading.setdefault("fetch", {})
        fetch.setdefault("yt_dlp_options", {}).setdefault(
            "format", f"best[height<={size}][ext=mp4]/best[height<={size}]/best")
    for key in yt_args:
        ignored.append(f"reading.yt_args.{key}: not supported")
    if "number_sample_per_shard" in storage:
        reading["samples_per_shard"] = storage.pop("number_sample_per_shard")
    if "processes_count" in distribution:
        distribution["processes"] = distribution.pop("processes_count")
    if "thread_count" in distribution:
        distribution["threads"] = distribution.pop("thread_count")
    distributor = distribution.pop("distributor", "multiprocessing")
    if distributor != "multiprocessing":
        ignored.append(f"distribution.distributor: {distributor!r} runs as local multiprocessing here")


def build_subsamplers(spec: Any, ignored: List[str]) -> List[Any]:
    """Subsamplers from the YAML list form, or from video2dataset's ``{ClassName: {args: …}}`` form."""
    if not spec:
        return []
    from .subsamplers.registry import from_config, from_video2dataset

    if isinstance(spec, dict):
        return from_video2dataset(spec, ignored)
    return from_config(spec)
