"""The unit of data: a WebDataset-style dict, plus its key and status conventions.

A :data:`Sample` is a plain ``dict``: ``__key__`` (str), payloads under their extension
(``mp4``: bytes, ``txt``: str, ``json``: dict) — the same layout WebDataset writes to tars and
video2dataset uses, so output shards stay readable by both.
"""
from __future__ import annotations

import math
from typing import Any, Dict

Sample = Dict[str, Any]

SUCCESS = "success"
FAILED_TO_DOWNLOAD = "failed_to_download"
FAILED_TO_SUBSAMPLE = "failed_to_subsample"

#: Payload extensions that carry video media, in sniffing order.
VIDEO_EXTENSIONS = ("mp4", "webm", "mkv", "mov", "avi", "flv", "ts", "mpg", "ogv", "gif")


def key_widths(num_shards: int, samples_per_shard: int) -> "tuple[int, int]":
    """Digits of the shard id and the row index in a key, as video2dataset computes them."""
    shard_digits = max(5, len(str(max(num_shards - 1, 0))))
    row_digits = max(1, math.ceil(math.log10(samples_per_shard))) if samples_per_shard > 1 else 1
    return shard_digits, row_digits


def make_key(shard_id: int, row: int, widths: "tuple[int, int]") -> str:
    """video2dataset-compatible sample key: zero-padded shard id then zero-padded row index."""
    return f"{shard_id:0{widths[0]}d}{row:0{widths[1]}d}"


def media_key(sample: Sample) -> "str | None":
    """The extension under which ``sample`` holds its video, or None."""
    for ext in VIDEO_EXTENSIONS:
        if ext in sample:
            return ext
    return None


def is_success(sample: Sample) -> bool:
    return sample.get("json", {}).get("status", SUCCESS) == SUCCESS


def mark_failed(sample: Sample, status: str, error: BaseException | str, detail: str = "") -> Sample:
    """Turn ``sample`` into a failure record: media dropped, status and error message kept in json. The message
    should be a stable category (stats count records by it); what varies (host, sizes) goes in ``error_detail``."""
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    meta = dict(sample.get("json", {}))
    meta.pop("error_detail", None)
    meta.update(status=status, error_message=message)
    if detail:
        meta["error_detail"] = detail
    record = {k: v for k, v in sample.items() if k.startswith("__") or k == "txt"}
    record["json"] = meta
    return record
