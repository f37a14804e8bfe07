"""``video2dataset(...)``: video2dataset's function, with its arguments and defaults, run as a streamv2d Job."""
from __future__ import annotations

import ast
import contextlib
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import yaml

from ..config import job_from_dict
from ..fetch import merged
from ..job import Job
from ..materialize import MaterializeResult, materialize
from ..workflows.metadata import metadata_chain

#: video2dataset's packaged config names (``config="default"``)
PACKAGED_CONFIGS = ("default", "downsample_ml", "optical_flow", "caption")
#: stage → (input is tar shards, the config stage it needs, the members it writes beside json and those its
#: stages declare: None for a stage writing media)
STAGES: Dict[str, Any] = {
    "download": (False, None, None),
    "subset": (True, None, None),
    "optical_flow": (True, "OpticalFlowSubsampler", ()),
    "caption": (True, "CaptionSubsampler", ("txt",)),
    "whisper": (None, "WhisperSubsampler", ()),
}
#: video2dataset's output formats → ours
OUTPUT_FORMATS = {"files": "files", "webdataset": "tar", "parquet": "parquet", "tfrecord": "tfrecord",
                  "dummy": "dummy"}
#: video2dataset's input formats → our table format (None: told by the extension; webdataset: tar shards)
INPUT_FORMATS = {"txt": "txt", "csv": "csv", "tsv": "tsv", "tsv.gz": "tsv", "json": "json", "jsonl": "jsonl",
                 "parquet": "parquet", "webdataset": None}
INCREMENTAL_MODES = ("incremental", "overwrite")


def literal(text: str) -> Any:
    """A command-line value read as python-fire reads it: a Python literal (``True``, ``5``, ``{"a": 1}``), a
    list or dict whose bare words are strings (``[videoid,page_idx]``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text[:1] in "[{(":
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError:
            return text
        for node in ast.walk(tree):
            for name, child in ast.iter_fields(node):
                if isinstance(child, list):
                    child[:] = [ast.Constant(c.id) if isinstance(c, ast.Name) else c for c in child]
                elif isinstance(child, ast.Name):
                    setattr(node, name, ast.Constant(child.id))
        try:
            return ast.literal_eval(tree)
        except (ValueError, SyntaxError):
            return text
    return text


def load_v2d_config(config: Union[str, Mapping[str, Any]]) -> Dict[str, Any]:
    """A config document: a packaged name, a YAML path, or the config itself (a mapping)."""
    if isinstance(config, Mapping):
        return dict(config)
    path = (os.path.join(os.path.dirname(__file__), "configs", f"{config}.yaml")
            if config in PACKAGED_CONFIGS else config)
    try:
        with open(path) as f:
            doc = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise ValueError(f"config: {config!r} is neither a packaged config ({', '.join(PACKAGED_CONFIGS)}) "
                         "nor a YAML file") from None
    if not isinstance(doc, dict):
        raise ValueError(f"config: {config!r} is not a mapping of subsampling/reading/storage/distribution")
    return doc


def _columns(value: Union[None, str, Sequence[str]]) -> List[str]:
    """``save_additional_columns`` as a list: a list, one name, or the ``'[a,b]'`` text of a command line."""
    if value is None:
        return []
    if isinstance(value, str):
        value = literal(value)
        value = [value] if isinstance(value, str) else value
    return [str(column) for column in value]


def _choice(name: str, value: Any, allowed: Sequence[str]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not one of {', '.join(map(str, allowed))}")
    return value


def build_job(url_list: str, *, output_format: str = "files", input_format: str = "csv",
              encode_formats: Optional[Mapping[str, str]] = None, stage: str = "download", url_col: str = "url",
              caption_col: Optional[str] = None, clip_col: Optional[str] = None,
              save_additional_columns: Union[None, str, Sequence[str]] = None,
              config: Union[str, Mapping[str, Any]] = "default") -> Job:
    """The :class:`Job` a video2dataset call describes (every argument checked here, before any row runs)."""
    _choice("stage", stage, list(STAGES))
    _choice("output_format", output_format, list(OUTPUT_FORMATS))
    _choice("input_format", input_format, list(INPUT_FORMATS))
    encode_formats = dict(literal(encode_formats) if isinstance(encode_formats, str) else
                          encode_formats if encode_formats is not None else {"video": "mp4"})
    tars, needed, kept = STAGES[stage]
    if tars is not None and tars != (input_format == "webdataset"):
        want = "webdataset (tar shards)" if tars else "a table format"
        raise ValueError(f"stage {stage!r} reads {want}; got input_format={input_format!r}")
    doc = load_v2d_config(config)
    subsampling = dict(doc.get("subsampling") or {})
    if needed is not None:
        if needed not in subsampling:
            raise ValueError(f"stage {stage!r} needs subsampling.{needed} in the config")
        doc = {**doc, "subsampling": {needed: subsampling[needed]}}
    table = {"url_col": url_col, "caption_col": caption_col, "clip_col": clip_col,
             "save_additional_columns": _columns(save_additional_columns), "input_format": INPUT_FORMATS[input_format]}
    job = job_from_dict(doc, url_list, clip_col=clip_col, encode_formats=encode_formats)
    stages = list(job.subsamplers) + _modality_stages(encode_formats, stage, job.subsamplers)
    if kept is not None:
        stages = metadata_chain(stages, kept)
    # video2dataset reads local paths in its tables (Kinetics, MSR-VTT): its tables are the user's own
    fetch = merged(job.fetch, allow_local_files=True)
    return job.replace(table=table, subsamplers=stages, output_format=OUTPUT_FORMATS[output_format], fetch=fetch)


def _modality_stages(encode_formats: Mapping[str, str], stage: str, stages: Sequence[Any]) -> List[Any]:
    """The audio of ``encode_formats`` (``{"video": "mp4", "audio": "m4a"}``) as its own member, kept even
    when a video has no sound (video2dataset extracts it while downloading); without ``video``, only audio."""
    from ..subsamplers import Audio

    if stage not in ("download", "subset") or "audio" not in encode_formats:
        return []
    if any(isinstance(s, Audio) for s in stages):
        return []
    return [Audio(format=encode_formats["audio"], required=False, keep_video="video" in encode_formats)]


@contextlib.contextmanager
def _temp_dir(path: str) -> Iterator[None]:
    """Temporary files (yt-dlp's downloads) under ``path`` for the run (streamv2d keeps media in memory)."""
    if not os.path.isdir(path):
        raise ValueError(f"tmp_dir: {path!r} is not a folder")
    previous, tempfile.tempdir = tempfile.tempdir, path
    try:
        yield
    finally:
        tempfile.tempdir = previous


def _wandb_run(enabled: bool, project: str, arguments: Mapping[str, Any]):
    """A wandb run (``WANDB_MODE=offline`` works without a network) or None; a clear error without wandb."""
    if not enabled:
        return None
    try:
        import wandb
    except ImportError:
        raise ValueError("enable_wandb: wandb is not installed: pip install 'streamv2d[wandb]'") from None
    return wandb.init(project=project, config={**arguments, "config": str(arguments["config"])})


def video2dataset(url_list: str, output_folder: str = "dataset", output_format: str = "files",
                  input_format: str = "csv", encode_formats: Optional[Mapping[str, str]] = None,
                  stage: str = "download", url_col: str = "url", caption_col: Optional[str] = None,
                  clip_col: Optional[str] = None, save_additional_columns: Union[None, str, Sequence[str]] = None,
                  enable_wandb: bool = False, wandb_project: str = "video2dataset",
                  incremental_mode: str = "incremental", max_shard_retry: int = 1, tmp_dir: str = "/tmp",
                  config: Union[str, Mapping[str, Any]] = "default", progress: bool = True) -> MaterializeResult:
    """video2dataset's function: the same arguments and defaults, the same output layout (see
    docs/video2dataset.md for what maps). ``incremental_mode``: ``incremental`` skips complete shards,
    ``overwrite`` deletes the output folder first; a failed shard is run again up to ``max_shard_retry`` times."""
    arguments = dict(locals())
    _choice("incremental_mode", incremental_mode, INCREMENTAL_MODES)
    if isinstance(max_shard_retry, bool) or not isinstance(max_shard_retry, int) or max_shard_retry < 0:
        raise ValueError(f"max_shard_retry: {max_shard_retry!r} is not an integer >= 0")
    job = build_job(url_list, output_format=output_format, input_format=input_format, encode_formats=encode_formats,
                    stage=stage, url_col=url_col, caption_col=caption_col, clip_col=clip_col,
                    save_additional_columns=save_additional_columns, config=config)
    for line in job.notes:
        print(f"config: ignored {line}", file=sys.stderr)
    if incremental_mode == "overwrite" and os.path.isdir(output_folder):
        shutil.rmtree(output_folder)
    run = _wandb_run(enable_wandb, wandb_project, arguments)
    try:
        with _temp_dir(tmp_dir):
            result = materialize(None, output_folder, job, progress=progress)
            for _ in range(max_shard_retry):
                if not result.failed:
                    break
                result = materialize(None, output_folder, job, progress=progress)
        if run is not None:
            run.log({f"total/{name}": value for name, value in result.summary.totals.items()})
        return result
    finally:
        if run is not None:
            run.finish()
