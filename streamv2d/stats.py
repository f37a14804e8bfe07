"""Per-shard counters with video2dataset's ``_stats.json`` field names."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any, Dict, List

from .sample import FAILED_TO_DOWNLOAD, FAILED_TO_SUBSAMPLE, SUCCESS, Sample

#: Distinct error messages kept in ``status_dict``; the rest are folded into "other".
MAX_DISTINCT_ERRORS = 100


@dataclass
class ShardStats:
    """What happened to one input shard. Rows are counted as video2dataset does — ``count`` input rows, each a
    success (at least one sample out), a download failure or a subsampling failure — and ``samples`` counts the
    samples written (more than the successes when clips split videos)."""

    shard_id: int
    count: int = 0
    successes: int = 0
    failed_to_download: int = 0
    failed_to_subsample: int = 0
    samples: int = 0
    bytes_downloaded: int = 0
    start_time: float = field(default_factory=time.time)
    end_time: float = 0.0
    status_dict: Counter = field(default_factory=Counter)

    def add_row(self, status: Sample, outputs: List[Sample], nbytes: int = 0, sign: int = 1) -> None:
        """Count one input row: its status after the fetch and the samples its subsamplers made
        (``sign=-1`` takes a row back out)."""
        self.count += sign
        self.bytes_downloaded += sign * nbytes
        meta = status.get("json", {})
        good = sum(1 for o in outputs if o.get("json", {}).get("status", SUCCESS) == SUCCESS)
        self.samples += sign * good
        if meta.get("status") == FAILED_TO_DOWNLOAD:
            self.failed_to_download += sign
            self._note(meta.get("error_message") or "unknown", sign)
        elif good:
            self.successes += sign
            self._note(SUCCESS, sign)
        else:
            failed = [o["json"] for o in outputs if o.get("json", {}).get("status") == FAILED_TO_SUBSAMPLE]
            if failed:
                self.failed_to_subsample += sign
                self._note(failed[0].get("error_message") or "unknown", sign)
            else:   # every sample dropped by a filter
                self._note("filtered", sign)

    def replace_row(self, status: Sample, counted: List[Sample], instead: List[Sample]) -> None:
        """Recount a row whose outputs changed after counting (a success the cache could not store)."""
        self.add_row(status, counted, 0, -1)
        self.add_row(status, instead, 0, +1)

    def _note(self, message: str, sign: int) -> None:
        key = message if message in self.status_dict or len(self.status_dict) < MAX_DISTINCT_ERRORS else "other"
        self.status_dict[key] += sign
        if self.status_dict[key] <= 0:
            del self.status_dict[key]

    def finish(self) -> "ShardStats":
        self.end_time = time.time()
        return self

    @classmethod
    def from_dict(cls, document: Dict[str, Any]) -> "ShardStats":
        """The stats a :meth:`to_dict` document describes (derived fields like ``duration`` are recomputed)."""
        values = {f.name: document[f.name] for f in fields(cls) if f.name in document}
        values["status_dict"] = Counter(document.get("status_dict", {}))
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """The ``_stats.json`` document: video2dataset's fields, plus ``shard_id`` and ``samples``."""
        doc = {f.name: getattr(self, f.name) for f in fields(self)}
        doc["status_dict"] = dict(self.status_dict)
        doc["duration"] = max(0.0, self.end_time - self.start_time)
        return doc
