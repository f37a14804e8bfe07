"""``streamv2d stats``: a summary of a folder of ``*_stats.json`` files (ours or video2dataset's)."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List

import fsspec

_COUNTS = ("count", "successes", "failed_to_download", "failed_to_subsample", "samples", "bytes_downloaded")


@dataclass
class Summary:
    """Totals over shards."""

    shards: int = 0
    totals: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    partial: int = 0             # shards being written (or left by a killed run): resume to complete them
    duration: float = 0.0        # wall time from the first shard's start to the last shard's end

    def add(self, doc: Dict) -> None:
        self.shards += 1
        for key in _COUNTS:
            self.totals[key] += int(doc.get(key) or 0)
        for message, n in (doc.get("status_dict") or {}).items():
            if message not in ("success", "filtered"):
                self.errors[message] += n

    def lines(self, top: int = 10) -> List[str]:
        t = self.totals
        rate = t["successes"] / t["count"] if t["count"] else 0.0
        out = [f"shards: {self.shards}" + (f" complete, {self.partial} partial (run materialize again to finish "
                                           "them)" if self.partial else ""),
               f"rows: {t['count']}   successes: {t['successes']} ({rate:.1%})   samples written: {t['samples']}",
               f"failed to download: {t['failed_to_download']}   failed to subsample: {t['failed_to_subsample']}",
               f"downloaded: {t['bytes_downloaded'] / 1e6:.1f} MB"]
        if self.duration > 0:
            out.append(f"wall time: {self.duration:.1f} s   ({t['count'] / self.duration:.1f} rows/s, "
                       f"{t['bytes_downloaded'] / self.duration / 1e6:.1f} MB/s)")
        if self.errors:
            out.append(f"top errors ({min(top, len(self.errors))} of {len(self.errors)}):")
            out += [f"  {n:>8}  {message}" for message, n in self.errors.most_common(top)]
        return out


def summarize(folder: str, storage_options: Dict = None) -> Summary:
    """Read every ``*_stats.json`` under ``folder`` (any fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    summary, starts, ends = Summary(), [], []
    for path in sorted(fs.glob(f"{root.rstrip('/')}/*_stats.json")):
        with fs.open(path, "r") as f:
            doc = json.load(f)
        summary.add(doc)
        if doc.get("start_time") and doc.get("end_time"):
            starts.append(float(doc["start_time"]))
            ends.append(float(doc["end_time"]))
    if starts:
        summary.duration = max(ends) - min(starts)
    summary.partial = len(fs.glob(f"{root.rstrip('/')}/*.partial"))
    return summary
