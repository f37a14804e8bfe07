"""Frame decoding for training: backends behind one small interface, and frame sampling."""
from __future__ import annotations

from typing import Callable, Dict

from .base import MediaError, VideoInfo, VideoReader

#: A backend opens bytes with a codec thread count and returns a :class:`VideoReader`.
Opener = Callable[..., VideoReader]

#: ``backend="auto"`` resolves to this one (the fastest exact backend in ``benchmarks/decoders.py``).
AUTO_BACKEND = "pyav"


def _pyav() -> Opener:
    from .pyav import open_pyav
    return open_pyav


def _decord() -> Opener:
    from .decord_backend import open_decord
    return open_decord


_BACKENDS: Dict[str, Callable[[], Opener]] = {"pyav": _pyav, "decord": _decord}


def backend_names() -> "list[str]":
    return sorted(_BACKENDS)


def get_opener(name: str = "auto") -> Opener:
    """The opener of backend ``name`` (imported lazily, so decord is only needed when asked for)."""
    name = AUTO_BACKEND if name == "auto" else name
    if name not in _BACKENDS:
        raise ValueError(f"unknown decode backend {name!r}; choose 'auto' or one of {backend_names()}")
    return _BACKENDS[name]()


__all__ = ["AUTO_BACKEND", "MediaError", "Opener", "VideoInfo", "VideoReader", "backend_names", "get_opener"]
