"""The subsampler contract: one sample in, zero, one or many samples out."""
from __future__ import annotations

import functools
import inspect
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from .. import profile
from ..distribute.slots import decode_slot
from ..sample import FAILED_TO_SUBSAMPLE, Sample, is_success, mark_failed

SubsamplerResult = Union[Sample, Iterable[Sample], None]
SubsamplerLike = Callable[[Sample], SubsamplerResult]


class Subsampler:
    """Base class for built-in subsamplers. Any callable ``sample -> sample | iterable | None`` works too:
    return None to drop the sample, a list to split it, and raise to mark it ``failed_to_subsample``."""

    def __call__(self, sample: Sample) -> SubsamplerResult:
        raise NotImplementedError

    #: False for a subsampler whose outputs a shard cannot hold (tensors): with a cache it runs after it.
    cacheable = True
    #: json fields the subsampler adds and their metadata-parquet type (``string``, ``int64``, ``float64``,
    #: ``bool``, or ``json`` for JSON text), so every shard of a job has the same metadata columns.
    metadata_fields: Dict[str, str] = {}

    def config(self) -> Dict[str, Any]:
        """The settings that change the output; part of the cache fingerprint."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


def run_chain(sample: Sample, chain: Sequence[SubsamplerLike]) -> List[Sample]:
    """Apply ``chain`` in order; failure records pass through untouched, exceptions become records."""
    samples = [sample]
    for subsampler in chain:
        name = type(subsampler).__name__.lower() if profile.ENABLED else ""
        produced: List[Sample] = []
        for current in samples:
            if not is_success(current):
                produced.append(current)
                continue
            try:
                with profile.stage(name):
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


_ROW: ContextVar[Optional[int]] = ContextVar("streamv2d_row", default=None)
_EPOCH: ContextVar[int] = ContextVar("streamv2d_epoch", default=0)


@contextmanager
def row_context(seq: int, epoch: int = 0) -> Iterator[None]:
    """Mark the work done inside the block as row ``seq`` of its shard in ``epoch`` (decodes queue in row order;
    random draws depend on the epoch). Context variables, so nothing reaches the samples."""
    tokens = _ROW.set(seq), _EPOCH.set(epoch)
    try:
        yield
    finally:
        _ROW.reset(tokens[0])
        _EPOCH.reset(tokens[1])


def current_row() -> Optional[int]:
    """The row of its shard the running subsampler works on, or None outside a pipeline."""
    return _ROW.get()


_DECODING: ContextVar[bool] = ContextVar("streamv2d_decoding", default=False)


def decoding(call: Callable[..., SubsamplerResult]) -> Callable[..., SubsamplerResult]:
    """A subsampler method that decodes (its ``__call__``, say), run holding one of its process's decode slots
    (earliest row first), so the rows a worker has in flight do not all decode at once and thrash its cores.

    It must return its samples, not yield them (the slot would be free before the work ran). A decoding stage
    called from inside one, on the same thread, runs in its caller's slot; one handed to another thread takes a
    slot of its own, so with one slot it waits for its caller: decode on the calling thread. Not for a model
    stage's methods: its rows would then reach the micro-batcher no more at once than there are slots."""
    if inspect.isgeneratorfunction(call):
        raise TypeError(f"@decoding on {call.__qualname__}: a generator would decode after its slot is released; "
                        "return a list instead")

    @functools.wraps(call)
    def held(self, *args: Any, **kwargs: Any) -> SubsamplerResult:
        if _DECODING.get():
            return call(self, *args, **kwargs)
        token = _DECODING.set(True)
        try:
            with decode_slot().hold(current_row()):
                return call(self, *args, **kwargs)
        finally:
            _DECODING.reset(token)
    return held


def current_epoch() -> int:
    """The epoch the running subsampler works for (0 outside a pipeline)."""
    return _EPOCH.get()
