"""Per-shard counters with video2dataset's ``_stats.json`` field names."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict

from .sample import FAILED_TO_DOWNLOAD, FAILED_TO_SUBSAMPLE, SUCCESS, Sample

#: Distinct error messages kept in ``status_dict``; the rest are folded into "other".
MAX_DISTINCT_ERRORS = 100


@dataclass
class ShardStats:
    """What happened to one input shard: counts, bytes, timings and an error histogram."""

    shard_id: int
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0
    bytes_downloaded: int = 0
    start_time: float = field(default_factory=time.time)
    end_time: float = 0.0
    status_dict: Counter = field(default_factory=Counter)

    def add_download(self, sample: Sample, nbytes: int) -> None:
        """Count one input row after its fetch (success or not)."""
        self.count += 1
        self.bytes_downloaded += nbytes
        meta = sample.get("json", {})
        if meta.get("status") == FAILED_TO_DOWNLOAD:
            self.failed_to_download += 1
            self._note(meta.get("error_message", "unknown"))

    def add_output(self, sample: Sample) -> None:
        """Count one sample leaving the subsamplers."""
        meta = sample.get("json", {})
        status = meta.get("status", SUCCESS)
        if status == SUCCESS:
            self.successes += 1
            self.status_dict[SUCCESS] += 1
        elif status == FAILED_TO_SUBSAMPLE:
            self.failed_to_subsample += 1
            self._note(meta.get("error_message", "unknown"))

    def recount(self, counted: Sample, instead: Sample) -> None:
        """Replace an output already counted (a success the cache could not store) by another."""
        if counted.get("json", {}).get("status", SUCCESS) == SUCCESS:
            self.successes -= 1
            self.status_dict[SUCCESS] -= 1
        self.add_output(instead)

    def _note(self, message: str) -> None:
        if message in self.status_dict or len(self.status_dict) < MAX_DISTINCT_ERRORS:
            self.status_dict[message] += 1
        else:
            self.status_dict["other"] += 1

    def finish(self) -> "ShardStats":
        self.end_time = time.time()
        return self

    def to_dict(self) -> Dict[str, Any]:
        """The ``_stats.json`` document (video2dataset's fields plus ``shard_id``)."""
        return {
            "shard_id": self.shard_id,
            "count": self.count,
            "successes": self.successes,
            "failed_to_download": self.failed_to_download,
            "failed_to_subsample": self.failed_to_subsample,
            "bytes_downloaded": self.bytes_downloaded,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration": max(0.0, self.end_time - self.start_time),
            "status_dict": dict(self.status_dict),
        }
