"""Sources: where input shards come from (URL tables or WebDataset tars, on any fsspec store)."""
from __future__ import annotations

import os
from typing import Any

from ..errors import SourceError
from .base import InputShard, Source
from .table import FORMATS, TableOptions, TableSource
from .tar import TarSource, looks_like_tar_spec


def open_source(spec: Any, **options: Any) -> Source:
    """A :class:`Source` for ``spec``: an existing Source is returned as is; tar paths, or a local folder of
    tars (a materialize output), give a :class:`TarSource` (only ``storage_options`` applies); anything else is a
    :class:`TableSource`."""
    if isinstance(spec, Source) and not isinstance(spec, (str, os.PathLike)):
        return spec
    if isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec):   # an output folder: its tar shards
        spec = os.path.join(os.fspath(spec), "*.tar")
    if looks_like_tar_spec(spec):
        return TarSource(spec, storage_options=options.get("storage_options"))
    return TableSource(spec, **options)


__all__ = ["FORMATS", "InputShard", "Source", "SourceError", "TableOptions", "TableSource", "TarSource", "open_source"]
