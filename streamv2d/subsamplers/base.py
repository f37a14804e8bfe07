"""The subsampler contract: one sample in, zero, one or many samples out."""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
import types
from typing import Any, Callable, Dict, Iterable, Iterator, List, Sequence, Union

from ..sample import FAILED_TO_SUBSAMPLE, Sample, is_success, mark_failed

SubsamplerResult = Union[Sample, Iterable[Sample], None]
SubsamplerLike = Callable[[Sample], SubsamplerResult]


class Subsampler:
    """Base class for built-in subsamplers. Any callable ``sample -> sample | iterable | None`` works too:
    return None to drop the sample, a list to split it, and raise to mark it ``failed_to_subsample``."""

    def __call__(self, sample: Sample) -> SubsamplerResult:
        raise NotImplementedError

    def config(self) -> Dict[str, Any]:
        """The settings that change the output; part of the cache fingerprint."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def describe(subsampler: SubsamplerLike) -> str:
    """A stable text for cache fingerprints that changes whenever the subsampler's behaviour can: a built-in's
    config, a partial's function and arguments, a function's code, defaults and closure, an object's fields."""
    if isinstance(subsampler, functools.partial):
        return f"partial({describe(subsampler.func)}, {_stable(subsampler.args)}, {_stable(subsampler.keywords)})"
    if isinstance(subsampler, Subsampler):
        return f"{_name(subsampler)}:{_stable(subsampler.config())}"
    if inspect.isfunction(subsampler) or inspect.ismethod(subsampler):
        function = getattr(subsampler, "__func__", subsampler)
        closure = [cell.cell_contents for cell in function.__closure__ or ()]
        body = _stable([_code_digest(function.__code__), function.__defaults__, closure])
        return f"{_name(function)}#{hashlib.sha256(body.encode()).hexdigest()[:16]}"
    return f"{_name(subsampler)}:{_stable(getattr(subsampler, '__dict__', {}))}"


def _name(obj: Any) -> str:
    kind = obj if inspect.isfunction(obj) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def _code_digest(code: types.CodeType) -> str:
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else c for c in code.co_consts]
    return hashlib.sha256(code.co_code + _stable([consts, code.co_names]).encode()).hexdigest()[:16]


def _stable(value: Any) -> str:
    """JSON of ``value``; what JSON cannot hold is described without memory addresses, so the text is the same
    in every process."""
    def plain(obj: Any) -> str:
        if isinstance(obj, types.CodeType):
            return _code_digest(obj)
        if callable(obj):
            return describe(obj)
        return re.sub(r" at 0x[0-9a-fA-F]+", "", repr(obj))
    return json.dumps(value, sort_keys=True, default=plain)


def split_for_cache(subsamplers: Sequence[SubsamplerLike]) -> "tuple[List[SubsamplerLike], List[SubsamplerLike]]":
    """``(cached, after)``: the chain cut before the first subsampler whose output cannot be stored in a shard
    (``cacheable = False``, e.g. ``Frames``' tensors); the cache keeps what comes before it."""
    subsamplers = list(subsamplers)
    for i, subsampler in enumerate(subsamplers):
        if getattr(subsampler, "cacheable", True) is False:
            return subsamplers[:i], subsamplers[i:]
    return subsamplers, []


def run_chain(sample: Sample, chain: Sequence[SubsamplerLike]) -> List[Sample]:
    """Apply ``chain`` in order; failure records pass through untouched, exceptions become records."""
    samples = [sample]
    for subsampler in chain:
        produced: List[Sample] = []
        for current in samples:
            if not is_success(current):
                produced.append(current)
                continue
            try:
                produced.extend(_as_list(subsampler(current)))
            except Exception as exc:  # bad bytes, a user's bug: one failed sample, never a dead epoch
                produced.append(mark_failed(current, FAILED_TO_SUBSAMPLE, exc))
        samples = produced
    return samples


def _as_list(result: SubsamplerResult) -> Iterator[Sample]:
    if result is None:
        return iter(())
    if isinstance(result, dict):
        return iter((result,))
    return iter(list(result))
