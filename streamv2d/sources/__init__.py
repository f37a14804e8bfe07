"""Sources: where input shards come from (URL tables or WebDataset tars, on any fsspec store)."""
from __future__ import annotations

import os
from typing import Any, Optional

from ..errors import SourceError
from .base import InputShard, Source
from .table import FORMATS, TableOptions, TableSource
from .tar import TarSource, looks_like_tar_spec


def open_source(spec: Any, table: Optional[TableOptions] = None, *, max_member_bytes: Optional[int] = None,
                allow_pickle: bool = False) -> Source:
    """A :class:`Source` for ``spec``: an existing Source is returned as is; tar paths, or a local folder of
    tars (a materialize output), give a :class:`TarSource` (of ``table``, only ``storage_options`` applies;
    members over ``max_member_bytes``, and pickle-capable ones unless ``allow_pickle``, are refused) — or, with
    a ``samples_per_shard`` other than the default, their samples cut anew into shards of that size
    (:class:`~streamv2d.workflows.ReshardSource`); anything else is a :class:`TableSource`."""
    table = table or TableOptions()
    if spec is None:
        raise SourceError("no source given: a URL table, tar shards or a Source")
    if isinstance(spec, Source) and not isinstance(spec, (str, os.PathLike)):
        return spec
    if isinstance(spec, (str, os.PathLike)) and os.path.isdir(spec):   # an output folder: its tar shards
        spec = os.path.join(os.fspath(spec), "*.tar")
    if looks_like_tar_spec(spec):
        extra = {"max_member_bytes": max_member_bytes} if max_member_bytes is not None else {}
        if table.samples_per_shard != TableOptions.samples_per_shard:
            from ..workflows.reshard import ReshardSource

            return ReshardSource(spec, table.samples_per_shard, storage_options=table.storage_options,
                                 allow_pickle=allow_pickle, **extra)
        return TarSource(spec, storage_options=table.storage_options, allow_pickle=allow_pickle, **extra)
    return TableSource(spec, table)


__all__ = ["FORMATS", "InputShard", "Source", "SourceError", "TableOptions", "TableSource", "TarSource", "open_source"]
