"""Batching inside workers: tensors stacked, the rest listed, and batches made in shared memory in a worker."""
import torch
from torch.utils.data import DataLoader, IterableDataset

from streamv2d.batching import batched, shared_empty, stack


def samples(n: int):
    return [{"__key__": str(i), "frames": torch.full((2, 3), i, dtype=torch.uint8), "json": {"i": i}}
            for i in range(n)]


def test_batched_stacks_tensors_and_lists_the_rest():
    batches = list(batched(iter(samples(5)), 2))
    assert [b["frames"].shape[0] for b in batches] == [2, 2, 1]
    assert batches[0]["json"] == [{"i": 0}, {"i": 1}] and batches[2]["__key__"] == ["4"]
    assert torch.equal(batches[1]["frames"][1], torch.full((2, 3), 3, dtype=torch.uint8))


class _SharedInWorker(IterableDataset):
    def __iter__(self):
        batch = stack([s["frames"] for s in samples(3)])
        yield {"shared": batch.is_shared(), "frames": batch}


def test_stack_goes_to_shared_memory_only_inside_a_worker():
    assert not stack([s["frames"] for s in samples(2)]).is_shared()
    [item] = list(DataLoader(_SharedInWorker(), batch_size=None, num_workers=1))
    assert item["shared"] and torch.equal(item["frames"], torch.stack([s["frames"] for s in samples(3)]))


def test_shared_empty_is_allocated_in_shared_memory_with_its_shape_and_dtype():
    for dtype in (torch.uint8, torch.float32, torch.int64):
        tensor = shared_empty((2, 3, 4), dtype)
        assert tensor.is_shared() and tensor.is_contiguous() and tensor.shape == (2, 3, 4) and tensor.dtype == dtype
        assert tensor.untyped_storage().nbytes() == 24 * dtype.itemsize


class _MixedInWorker(IterableDataset):
    def __iter__(self):
        yield stack([torch.zeros(2, dtype=torch.int64), torch.ones(2, dtype=torch.float32)])


def test_stack_in_a_worker_still_promotes_mixed_dtypes():
    [item] = list(DataLoader(_MixedInWorker(), batch_size=None, num_workers=1))
    assert item.dtype == torch.float32 and item.tolist() == [[0, 0], [1, 1]]
