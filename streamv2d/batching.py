"""Batching inside the worker: one IPC transfer per batch instead of per sample. torch is imported when a batch
is collated, so curation jobs (which batch nothing) start without it."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List

from .sample import Sample

if TYPE_CHECKING:
    import torch

Collate = Callable[[List[Sample]], Any]


def collate_samples(samples: List[Sample]) -> Dict[str, Any]:
    """Stack tensors of equal shape (``frames`` → ``[B, T, H, W, C]``); everything else becomes a list. Keys are
    the union over the batch, in first-seen order: a sample without one gets None in its list."""
    import torch

    batch: Dict[str, Any] = {}
    for key in dict.fromkeys(k for s in samples for k in s):
        values = [s.get(key) for s in samples]
        if all(isinstance(v, torch.Tensor) for v in values) and len({tuple(v.shape) for v in values}) == 1:
            batch[key] = stack(values)
        else:
            batch[key] = values
    return batch


def stack(tensors: List["torch.Tensor"]) -> "torch.Tensor":
    """``torch.stack``; inside a DataLoader worker, straight into shared memory, which the batch must reach
    anyway to cross to the main process — one copy of the batch instead of two."""
    import torch
    from torch.utils.data import get_worker_info

    first = tensors[0]
    plain = (get_worker_info() is None or first.device.type != "cpu"
             or any(t.dtype != first.dtype or t.requires_grad for t in tensors))
    if plain:   # out= cannot promote dtypes or record gradients; only CPU tensors go through shared memory
        return torch.stack(tensors)
    return torch.stack(tensors, out=shared_empty((len(tensors), *first.shape), first.dtype))


def shared_empty(shape: "tuple[int, ...]", dtype: "torch.dtype") -> "torch.Tensor":
    """An uninitialised CPU tensor allocated in shared memory, as ``default_collate`` makes its batches in a worker
    (``share_memory_()`` on a fresh tensor would allocate it twice and copy it: 10 % of stacking 8 clips of
    8×224²)."""
    import torch

    size = torch.Size(shape)
    storage = torch.UntypedStorage._new_shared(size.numel() * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage).view(size)


def batched(samples: Iterator[Sample], size: int, collate: Collate = collate_samples,
            drop_last: bool = False) -> Iterator[Any]:
    """Group ``samples`` into batches of ``size`` and collate each; the last may be smaller."""
    bucket: List[Sample] = []
    for sample in samples:
        bucket.append(sample)
        if len(bucket) == size:
            yield collate(bucket)
            bucket = []
    if bucket and not drop_last:
        yield collate(bucket)
