"""``VideoDataset``: the streaming ``IterableDataset`` that every other feature plugs into."""
from __future__ import annotations

import logging
import random
from dataclasses import fields
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Union

import torch
from torch.utils.data import IterableDataset

from .batching import Collate, batched, collate_samples
from .cache import CacheStore
from .cache.evict import parse_size
from .distribute import World, consumer_shards, current_world, epoch_order, quota, top_up_pools
from .fetch import FetchConfig, merged
from .job import Job, positive_int
from .sample import Sample, is_success
from .shard import ShardJob
from .sources import Source
from .sources.table import TableOptions
from .subsamplers import SubsamplerLike

log = logging.getLogger("streamv2d")


class VideoDataset(IterableDataset):
    """Streams video samples from a URL table or WebDataset shards, exactly once per epoch across
    distributed ranks and DataLoader workers.

    Args:
        source: a table path/URL/glob/list (csv, tsv, json, jsonl, parquet, txt), tar shard pattern
            (``"shards/{00000..00099}.tar"``), or a :class:`~streamv2d.sources.Source`.
        **table_options: how to read a URL table: the fields of :class:`~streamv2d.sources.table.TableOptions`
            (``url_col``, ``caption_col``, ``samples_per_shard``, …); tar shards use ``storage_options`` only.
        subsamplers: callables applied to every sample, in order (see :mod:`streamv2d.subsamplers`).
        fetch: a :class:`FetchConfig` or dict of its fields; ``fetch_threads`` overrides its ``threads``.
        shuffle_shards: visit shards in an order drawn from ``(seed, epoch)``.
        shuffle_buffer: size of a per-consumer sample shuffle buffer (0: keep order).
        samples_per_rank: fixed-length mode for DDP — every rank yields exactly this many samples per epoch,
            topping up from its own shards; without it (default) every success is yielded exactly once.
        yield_failures: also yield failure records (``json["status"] != "success"``, no media).
        cache_dir: write every processed shard there as it streams (WebDataset tar, ``_stats.json``, metadata
            parquet), and read complete shards from it in later epochs without any network request. The cache
            lives in a namespace keyed by the source's content and the cached stages (see the README). It sits
            before the first stage whose output a shard cannot hold (``Frames``; a ``Clip`` right before it),
            which runs on what the cache returns: the samples are the same with and without a cache.
        cache_limit: bytes (or ``"2TB"``) the cache may hold; whole shards are evicted least recently used.
        cache_format: ``"tar"`` (default), ``"parquet"`` or ``"files"``.
        batch_size, collate_fn: batch inside each worker (use ``DataLoader(batch_size=None)``); saves the
            per-sample IPC cost when samples are small tensors. Default collate stacks equal-shaped tensors.
        rank, world_size: override the distributed world (default: torch.distributed, then RANK/WORLD_SIZE).
    """

    def __init__(
        self,
        source: Union[str, Sequence[str], Source],
        *,
        subsamplers: Sequence[SubsamplerLike] = (),
        fetch: Union[FetchConfig, Mapping[str, Any], None] = None,
        fetch_threads: Optional[int] = None,
        shuffle_shards: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        samples_per_rank: Optional[int] = None,
        yield_failures: bool = False,
        cache_dir: Optional[str] = None,
        cache_limit: Union[int, str, None] = None,
        cache_format: str = "tar",
        batch_size: Optional[int] = None,
        collate_fn: Optional[Collate] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        **table_options: Any,
    ):
        super().__init__()
        unknown = sorted(set(table_options) - {f.name for f in fields(TableOptions)})
        if unknown:
            raise TypeError(f"VideoDataset() got unexpected keyword argument(s) {', '.join(unknown)}; table options "
                            f"are {', '.join(f.name for f in fields(TableOptions))}")
        fetch_config = FetchConfig.from_any(fetch)
        if fetch_threads is not None:
            fetch_config = merged(fetch_config, threads=positive_int("fetch_threads", fetch_threads))
        self.job = Job(source=source, subsamplers=subsamplers, table=TableOptions(**table_options), fetch=fetch_config)
        self.shuffle_buffer = positive_int("shuffle_buffer", shuffle_buffer, minimum=0)
        self.samples_per_rank = positive_int("samples_per_rank", samples_per_rank, allow_none=True)
        self.batch_size = positive_int("batch_size", batch_size, allow_none=True)
        if collate_fn is not None and not callable(collate_fn):
            raise ValueError(f"collate_fn: {collate_fn!r} is not callable")
        if cache_dir is None and cache_limit is not None:
            raise ValueError("cache_limit: given without cache_dir; set cache_dir too, or drop cache_limit")
        parse_size(cache_limit)
        if (rank is None) != (world_size is None):
            raise ValueError(f"rank and world_size go together; got rank={rank!r}, world_size={world_size!r}")
        if rank is not None:
            World(positive_int("rank", rank, minimum=0), positive_int("world_size", world_size))
        self.shard_job = ShardJob(self.job)
        self.source = self.shard_job.source
        self.cache = (CacheStore.for_job(cache_dir, self.shard_job, fmt=cache_format, limit=cache_limit)
                      if cache_dir else None)
        self.shuffle_shards = bool(shuffle_shards)
        self.seed = seed
        self.yield_failures = yield_failures
        self.collate_fn = collate_fn or collate_samples
        self.rank = rank
        self.world_size = world_size
        # shared with DataLoader workers (persistent ones included), so set_epoch reaches them
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    @classmethod
    def from_job(cls, job: Job, **options: Any) -> "VideoDataset":
        """The dataset of ``job`` (its source, table options, fetch policy and chain); ``options`` are the
        loader's own keywords (``cache_dir``, ``batch_size``, ``shuffle_buffer``, …)."""
        table = {f.name: getattr(job.table, f.name) for f in fields(TableOptions)}
        return cls(job.source, subsamplers=job.subsamplers, fetch=job.fetch, **table, **options)

    def __getstate__(self):
        """Pickled for a spawned DataLoader worker, which cannot see this process's torch.distributed group:
        carry the rank over so the worker does not take itself for rank 0 of 1."""
        state = self.__dict__.copy()
        if self.rank is None or self.world_size is None:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                world = current_world(self.rank, self.world_size)
                state["rank"], state["world_size"] = world.rank, world.world_size
        return state

    @property
    def num_shards(self) -> int:
        return len(self.source.shards())

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shard order, shuffle and random draws to use; call before iterating, as with
        ``DistributedSampler``. Workers read it when an epoch starts, persistent ones included."""
        self._epoch.fill_(positive_int("epoch", epoch, minimum=0))

    def world(self) -> World:
        return current_world(self.rank, self.world_size)

    def shards_for(self, world: World) -> List[int]:
        """The shard ids ``world``'s consumer reads this epoch in exactly-once mode."""
        return consumer_shards(self._order(), world)

    def _order(self) -> List[int]:
        return epoch_order(self.num_shards, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle_shards)

    def __iter__(self) -> Iterator[Any]:
        world, epoch = self.world(), self.epoch
        if self.samples_per_rank is None:
            samples = self._samples(self.shards_for(world), epoch)
        else:
            samples = self._fixed_length(world, quota(self.samples_per_rank, world), epoch)
        if self.shuffle_buffer > 1:
            samples = _shuffled(samples, self.shuffle_buffer, random.Random(f"{self.seed}/{epoch}/{world}"))
        if self.batch_size:
            return batched(samples, self.batch_size, self.collate_fn)
        return samples

    def _samples(self, shard_ids: Sequence[int], epoch: int) -> Iterator[Sample]:
        for shard_id in shard_ids:
            for sample in self.shard_job.samples(shard_id, self.cache, epoch=epoch):
                if self.yield_failures or is_success(sample):
                    yield sample

    def _fixed_length(self, world: World, target: int, epoch: int) -> Iterator[Sample]:
        """Yield exactly ``target`` items (failure records count when yielded), cycling over this consumer's
        shards as often as needed and widening to its rank's, then all shards when a pass yields no success."""
        if target <= 0:   # more workers than the rank's samples: this one has nothing to yield
            return
        pools = top_up_pools(self._order(), world)
        produced, level = 0, 0
        while produced < target and pools:
            succeeded = False
            for sample in self._samples(pools[level], epoch):
                succeeded = succeeded or is_success(sample)
                produced += 1
                yield sample
                if produced == target:
                    return
            if not succeeded:
                if level == len(pools) - 1:
                    break
                level += 1
            log.info("fixed-length mode: %s topping up (%d/%d) from shards %s", world, produced, target,
                     pools[level][:8])
        raise RuntimeError(f"fixed-length mode: no shard produced a sample; cannot fill {target} samples for {world}")


def _shuffled(samples: Iterator[Sample], size: int, rng: random.Random) -> Iterator[Sample]:
    """A reservoir-style shuffle buffer: bounded memory, deterministic for a given rng."""
    buffer: List[Sample] = []
    for sample in samples:
        if len(buffer) < size:
            buffer.append(sample)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = sample
    rng.shuffle(buffer)
    yield from buffer
