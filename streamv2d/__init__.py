"""streamv2d: video URL tables and WebDataset shards → training-ready samples, on the fly.

The public names are imported on first use (PEP 562), so ``streamv2d materialize`` starts without loading torch
and ``streamv2d --help`` answers at once."""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# bound now, not lazily: importing the submodule of the same name would otherwise shadow the function with it
from .materialize import materialize  # noqa: E402  (no torch: curation code never needs it)

#: Public name → the module that defines it.
_EXPORTS = {
    "load_config": "config", "VideoDataset": "dataset", "FetchError": "errors", "SourceError": "errors",
    "StreamV2DError": "errors", "FetchConfig": "fetch", "Job": "job", "mix": "loader", "reshard_state": "loader",
    "RowResult": "pipeline", "ShardJob": "shard", "InputShard": "sources",
    "Source": "sources", "TableOptions": "sources", "TableSource": "sources", "TarSource": "sources",
    "ShardStats": "stats", "FPS": "subsamplers", "Audio": "subsamplers", "Clip": "subsamplers",
    "CutDetection": "subsamplers", "Encode": "subsamplers", "Frames": "subsamplers", "MediaError": "subsamplers",
    "OpticalFlow": "subsamplers", "Probe": "subsamplers", "Resolution": "subsamplers", "Subsampler": "subsamplers",
    "from_config": "subsamplers", "video2dataset": "v2d", "reprocess": "workflows", "reshard": "workflows",
}

__all__ = sorted(_EXPORTS) + ["__version__", "materialize"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamv2d' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    return __all__
