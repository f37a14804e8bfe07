"""Recognise media containers by their leading bytes, so an HTML error page is never stored as .mp4."""
from __future__ import annotations

from typing import Optional

_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")


def sniff_container(data: bytes) -> Optional[str]:
    """The file extension for ``data``'s container (``mp4``, ``webm``, …), or None when it is not media."""
    head = data[:64]
    if len(head) >= 12 and head[4:8] in _MP4_BOXES:
        return "mov" if head[4:8] == b"ftyp" and head[8:12] == b"qt  " else "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm" if b"webm" in head else "mkv"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"OggS"):
        return "ogv"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(b"\x00\x00\x01\xba"):
        return "mpg"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"ID3"):
        return "mp3"
    if len(data) >= 377 and data[0] == 0x47 and data[188] == 0x47 and data[376] == 0x47:
        return "ts"
    return None


def looks_like_html(data: bytes, content_type: str = "") -> bool:
    """True for an HTML page (an error page, or a platform page that yt-dlp may resolve)."""
    if "html" in content_type.lower():
        return True
    head = data[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))
