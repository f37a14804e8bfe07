"""Platform metadata and subtitles (video2dataset's ``yt_metadata_args`` → ``json["yt_meta_dict"]``), and
subtitles as clips and captions (its ``captions_are_subtitles``)."""
from __future__ import annotations

import copy
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import urlsplit

import requests

from ..fetch.ytdlp import is_platform_url
from ..sample import Sample
from .base import Subsampler

#: fields video2dataset drops from yt-dlp's info (large, and per-format)
_INFO_DROPPED = ("subtitles", "requested_formats", "formats", "thumbnails", "automatic_captions")
#: the most bytes one subtitle file may have
MAX_SUBTITLE_BYTES = 4 << 20
_TIMING = re.compile(r"^\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})\s*-->\s*((?:\d+:)?\d{1,2}:\d{2}[.,]\d{1,3})")
_TAG = re.compile(r"<[^>]+>")


def vtt_time(text: str) -> str:
    """A WebVTT timestamp as ``HH:MM:SS.fff`` (hours added when the cue leaves them out)."""
    parts = text.replace(",", ".").split(":")
    hours, minutes, seconds = (["0"] + parts)[-3:]
    whole, _, fraction = seconds.partition(".")
    return f"{int(hours):02d}:{int(minutes):02d}:{int(whole):02d}.{(fraction + '000')[:3]}"


def parse_vtt(text: str, dedupe: bool = True) -> List[Dict[str, Any]]:
    """Cues of a WebVTT file as video2dataset writes them: ``{"start", "end", "lines"}``. With ``dedupe``,
    cues with karaoke ``<c>`` tags (auto-captions' word timing) are skipped and a line repeating the previous
    one is dropped."""
    cues: List[Dict[str, Any]] = []
    previous: Optional[str] = None
    for block in re.split(r"\r?\n\s*\r?\n", text):
        lines = block.splitlines()
        timing = next((i for i, line in enumerate(lines) if _TIMING.match(line)), None)
        if timing is None:
            continue
        start, end = _TIMING.match(lines[timing]).groups()
        body = lines[timing + 1:]
        if dedupe and any("<c>" in line for line in body):
            continue
        kept = []
        for line in (_TAG.sub("", line).strip() for line in body):
            if not line or (dedupe and line == previous):
                continue
            kept.append(line)
            previous = line
        if kept:
            cues.append({"start": vtt_time(start), "end": vtt_time(end), "lines": kept})
    return cues


def extract_info(url: str, options: Mapping[str, Any]) -> Dict[str, Any]:
    """yt-dlp's info for ``url`` without downloading the media (the one place yt-dlp is called here)."""
    import yt_dlp

    with yt_dlp.YoutubeDL({**options, "skip_download": True, "quiet": True, "no_warnings": True}) as ydl:
        return ydl.extract_info(url, download=False) or {}


class YtMetadata(Subsampler):
    """Adds ``json["yt_meta_dict"] = {"info": …, "subtitles": {lang: cues}}`` for platform URLs (YouTube,
    Vimeo, …), as video2dataset's ``yt_metadata_args`` do: ``get_info`` keeps yt-dlp's info (less formats and
    thumbnails), ``writesubtitles`` (``all``, or ``first``: the first language of ``subtitleslangs`` that has
    subtitles) fetches and parses them, ``writeautomaticsub`` lets auto-captions count. A URL of another host
    gets ``{}`` unless ``platform_only=False``. A metadata failure never fails the sample (video2dataset's
    neither): it gets ``{}`` and ``json["yt_meta_error"]``."""

    metadata_fields = {"yt_meta_dict": "json", "yt_meta_error": "string"}

    def __init__(self, writesubtitles: Any = None, subtitleslangs: Sequence[str] = ("en",),
                 writeautomaticsub: bool = False, get_info: bool = False, timeout: float = 10.0,
                 platform_only: bool = True) -> None:
        self.writesubtitles = "first" if writesubtitles == "first" else ("all" if writesubtitles else None)
        self.subtitleslangs = [subtitleslangs] if isinstance(subtitleslangs, str) else list(subtitleslangs)
        self.writeautomaticsub, self.get_info = bool(writesubtitles and writeautomaticsub), bool(get_info)
        self.timeout, self.platform_only = timeout, platform_only

    def __call__(self, sample: Sample) -> Sample:
        meta = sample.setdefault("json", {})
        url = str(meta.get("url") or "")
        meta["yt_meta_dict"] = {}
        if not url or (self.platform_only and not is_platform_url(urlsplit(url).hostname or "")):
            return sample
        try:
            meta["yt_meta_dict"] = self.metadata(url)
        except Exception as exc:  # noqa: BLE001 - metadata is optional, as in video2dataset
            meta["yt_meta_error"] = f"{type(exc).__name__}: {exc}"[:500]
        return sample

    def metadata(self, url: str) -> Dict[str, Any]:
        """``{"info", "subtitles"}`` of one URL."""
        options = {"writesubtitles": bool(self.writesubtitles), "writeautomaticsub": self.writeautomaticsub,
                   "subtitleslangs": self.subtitleslangs}
        info = extract_info(url, options)
        subtitles = self._subtitles(info) if self.writesubtitles else None
        kept = {k: v for k, v in info.items() if k not in _INFO_DROPPED} if self.get_info else None
        return {"info": kept, "subtitles": subtitles}

    def _subtitles(self, info: Mapping[str, Any]) -> Dict[str, List[Dict[str, Any]]]:
        requested = info.get("requested_subtitles") or {}
        found: Dict[str, List[Dict[str, Any]]] = {}
        for lang in self.subtitleslangs:
            entry = requested.get(lang)
            if not entry or not entry.get("url"):
                continue
            found[lang] = parse_vtt(self._download(entry["url"]))
            if self.writesubtitles == "first":
                break
        return found

    def _download(self, url: str) -> str:
        with requests.get(url, timeout=self.timeout, stream=True) as response:
            response.raise_for_status()
            body = response.raw.read(MAX_SUBTITLE_BYTES + 1, decode_content=True)
        if len(body) > MAX_SUBTITLE_BYTES:
            raise ValueError(f"subtitles over {MAX_SUBTITLE_BYTES} bytes")
        return body.decode("utf-8", "replace")


def _first_language(meta: Mapping[str, Any]) -> List[Dict[str, Any]]:
    subtitles = (meta.get("yt_meta_dict") or {}).get("subtitles") or {}
    return next(iter(subtitles.values()), [])


class SubtitleClips(Subsampler):
    """Sets ``json["clips"]`` to the cues of the first subtitle language, for the Clip after it
    (video2dataset's ``captions_are_subtitles``); a sample without subtitles keeps what it had."""

    def __call__(self, sample: Sample) -> Sample:
        meta = sample.setdefault("json", {})
        cues = _first_language(meta)
        if cues:
            meta["clips"] = [[cue["start"], cue["end"]] for cue in cues]
        return sample


def _seconds(text: str) -> float:
    hours, minutes, seconds = text.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def clip_subtitles(meta: Mapping[str, Any], span: Sequence[float]) -> List[Dict[str, Any]]:
    """The cues overlapping ``span`` (seconds), each with its lines per language — video2dataset's
    ``clip_subtitles``: the first language's cues, other languages' lines added to them in order."""
    subtitles = (meta.get("yt_meta_dict") or {}).get("subtitles") or {}
    start, end = float(span[0]), float(span[1])
    out: List[Dict[str, Any]] = []
    for position, (lang, cues) in enumerate(subtitles.items()):
        overlapping = [c for c in cues if max(start, _seconds(c["start"])) < min(end, _seconds(c["end"]))]
        for i, cue in enumerate(overlapping):
            if position == 0:
                out.append({**copy.deepcopy(cue), "lines": {lang: cue["lines"]}})
            elif i < len(out):
                out[i]["lines"][lang] = cue["lines"]
    return out


class SubtitleCaptions(Subsampler):
    """After a Clip: the first line of each clip's ``json["clip_subtitles"]`` (the Clip writes them) as its
    caption (``txt``), as video2dataset captions subtitle clips."""

    def __call__(self, sample: Sample) -> Sample:
        meta = sample.setdefault("json", {})
        found = meta.get("clip_subtitles")
        if found:
            first = next(iter(found[0]["lines"].values()))
            sample["txt"] = first[0] if first else ""
            meta["caption"] = sample["txt"]
        return sample
