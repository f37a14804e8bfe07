"""``streamv2d stats``: a summary of a folder of ``*_stats.json`` files (ours or video2dataset's); ``streamv2d
status``: the progress of a job read from its store (shards done, running, failed; rate, ETA)."""
from __future__ import annotations

import fcntl
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import fsspec

from .cache.evict import NAMESPACE_FILE
from .cache.layout import META_DIR, meta_dir, published_names, spooling_names
from .cache.location import Location

_COUNTS = ("count", "successes", "failed_to_download", "failed_to_subsample", "samples", "bytes_downloaded")


@dataclass
class Summary:
    """Totals over shards."""

    shards: int = 0
    totals: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    partial: int = 0             # shards being written (or left by a killed run): resume to complete them
    duration: float = 0.0        # wall time from the first shard's start to the last shard's end
    first_start: float = 0.0     # when the first shard started

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
    """Read every ``*_stats.json`` under ``folder`` (any fsspec URL); shards with a spool in its hidden folder
    (being written, or left by a stopped run) and no stats count as partial."""
    fs, root = fsspec.core.url_to_fs(folder, **(storage_options or {}))
    fs.invalidate_cache()
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
        summary.first_start = min(starts)
    if not is_url_path(folder) and os.path.isdir(root):
        summary.partial = len(set(spooling_names(root)) - set(published_names(os.listdir(root))))
    return summary


def is_url_path(folder: str) -> bool:
    """Whether ``folder`` is on an fsspec store rather than a local folder."""
    return "://" in folder and not folder.startswith("file://")


@dataclass
class Status:
    """A job's progress on its store: ``total`` shards (when known), ``done``, ``running`` (leased now),
    ``failed`` (an error recorded, not complete since), ``partial`` (left unfinished, not running)."""

    where: str
    summary: Summary
    total: Optional[int] = None
    running: List[int] = field(default_factory=list)
    failed: Dict[int, str] = field(default_factory=dict)
    partial: int = 0
    now: float = field(default_factory=time.time)

    @property
    def done(self) -> int:
        return self.summary.shards

    def eta(self) -> Optional[float]:
        """Seconds until every shard is done at the rate so far (None when unknown, 0 when done)."""
        if self.total is None:
            return None
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if not self.done or not self.summary.first_start:
            return None
        return left * (self.now - self.summary.first_start) / self.done

    def lines(self, top: int = 5) -> List[str]:
        t, s = self.summary.totals, self.summary
        elapsed = s.duration if self.total is not None and self.done >= self.total else self.now - s.first_start
        rate = t["samples"] / elapsed if s.first_start and elapsed > 0 else 0.0
        eta = self.eta()
        out = [f"{self.where}",
               f"shards: {self.done} done of {self.total if self.total is not None else '?'}, "
               f"{len(self.running)} running, {len(self.failed)} failed, {self.partial} partial",
               f"samples: {t['samples']}   {rate:.1f} samples/s   success rate: "
               f"{t['successes'] / t['count'] if t['count'] else 0:.1%} of {t['count']} rows",
               "ETA: " + ("done" if eta == 0 else "unknown" if eta is None else _duration(eta))]
        if self.failed:
            out.append("failed shards: " + ", ".join(f"{k} ({m})" for k, m in sorted(self.failed.items())[:top]))
        if s.errors:
            out.append(f"top errors ({min(top, len(s.errors))} of {len(s.errors)}):")
            out += [f"  {n:>8}  {message}" for message, n in s.errors.most_common(top)]
        return out


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def store_status(url: str, storage_options: Optional[Dict] = None) -> List[Status]:
    """The :class:`Status` of the output folder at ``url``, or of each cache namespace under it."""
    location = Location(url, storage_options, what="store")
    location.fresh()
    roots = [location.root] if location.exists(f"{meta_dir(location.root)}/{NAMESPACE_FILE}") else [
        location.join(name) for name in location.listdir(location.root)
        if name != META_DIR and location.exists(f"{meta_dir(location.join(name))}/{NAMESPACE_FILE}")]
    return [_status(location, root) for root in roots]


def _status(location: Location, root: str) -> Status:
    described = location.read_json(f"{meta_dir(root)}/{NAMESPACE_FILE}") or {}
    summary = summarize(location.display(root), location.storage_options)
    done = set(published_names(location.listdir(root)))
    running = _running(location, root)
    failed = {}
    for name in location.listdir(f"{meta_dir(root)}/failed"):
        stem = name[: -len(".json")]
        if stem.isdigit() and stem not in done and int(stem) not in running:
            failed[int(stem)] = (location.read_json(f"{meta_dir(root)}/failed/{name}") or {}).get("error", "?")
    spooled = {int(n) for n in spooling_names(root)} if location.local else set()
    partial = len(spooled - {int(n) for n in done} - set(running))
    return Status(location.display(root), summary, described.get("shards"), sorted(running), failed, partial)


def _running(location: Location, root: str) -> List[int]:
    """Shards whose lease is held now: a live lease object (object stores) or a held ``flock`` (local)."""
    held = []
    if location.local:
        folder = os.path.join(meta_dir(root), "locks")
        for name in location.listdir(folder):
            if name.endswith(".lock") and name[:-5].isdigit() and _flock_held(os.path.join(folder, name)):
                held.append(int(name[:-5]))
        return held
    now = time.time()
    for name in location.listdir(f"{meta_dir(root)}/leases"):
        lease = location.read_json(f"{meta_dir(root)}/leases/{name}") if name.endswith(".json") else None
        if lease and float(lease.get("expires", 0)) > now and name[:-5].isdigit():
            held.append(int(name[:-5]))
    return held


def _flock_held(path: str) -> bool:
    with open(path, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)   # fails only while a writer holds it
        except BlockingIOError:
            return True
        return False
