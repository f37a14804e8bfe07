"""``VideoDataset``: the streaming ``IterableDataset`` that every other feature plugs into."""
from __future__ import annotations

import logging
import random
from dataclasses import fields
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Union

from torch.utils.data import IterableDataset

from .batching import Collate, batched, collate_samples
from .cache import CacheStore, write_through
from .distribute import World, consumer_shards, current_world, epoch_order, quota, top_up_pools
from .fetch import FetchConfig, merged
from .pipeline import ShardProcessor
from .sample import Sample, is_success
from .sources import Source, open_source
from .sources.table import TableOptions
from .subsamplers import SubsamplerLike, compile_chain, split_for_cache

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
            lives in a namespace keyed by the source and subsampler configuration (see the README).
        cache_limit: bytes (or ``"2TB"``) the cache may hold; whole shards are evicted least recently used.
        cache_format: ``"tar"`` (default), ``"parquet"`` or ``"files"``. Subsamplers from the first one that
            makes tensors (``Frames``, or any with ``cacheable = False``) on run after the cache, on its output.
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
        self.table_options = TableOptions(**table_options)   # checked for tars too
        fetch_config = merged(FetchConfig.from_any(fetch), threads=fetch_threads,
                              storage_options=table_options.get("storage_options"))
        if fetch_config.threads < 1:
            raise ValueError(f"fetch_threads must be at least 1, got {fetch_config.threads}")
        if samples_per_rank is not None and samples_per_rank < 0:
            raise ValueError(f"samples_per_rank must be non-negative, got {samples_per_rank}")
        self.source = open_source(source, **table_options)
        cached, after_cache = split_for_cache(subsamplers) if cache_dir else (list(subsamplers), [])
        self.processor = ShardProcessor(self.source, fetch_config, cached)
        self.after_cache = compile_chain(after_cache)   # tensor outputs (Frames) run on what the cache returns
        self.cache = (CacheStore.for_processor(cache_dir, self.processor, fmt=cache_format, limit=cache_limit)
                      if cache_dir else None)
        self.shuffle_shards = shuffle_shards
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.samples_per_rank = samples_per_rank
        self.yield_failures = yield_failures
        self.batch_size = batch_size
        self.collate_fn = collate_fn or collate_samples
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

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

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose shard order and shuffle to use; call before iterating, as with
        ``DistributedSampler`` (with ``persistent_workers=True``, workers keep the epoch they started with)."""
        self.epoch = epoch

    def world(self) -> World:
        return current_world(self.rank, self.world_size)

    def shards_for(self, world: World) -> List[int]:
        """The shard ids ``world``'s consumer reads this epoch in exactly-once mode."""
        return consumer_shards(self._order(), world)

    def _order(self) -> List[int]:
        return epoch_order(self.num_shards, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle_shards)

    def __iter__(self) -> Iterator[Any]:
        world = self.world()
        if self.samples_per_rank is None:
            samples = self._samples(self.shards_for(world))
        else:
            samples = self._fixed_length(world, quota(self.samples_per_rank, world))
        if self.shuffle_buffer > 1:
            samples = _shuffled(samples, self.shuffle_buffer, random.Random(f"{self.seed}/{self.epoch}/{world}"))
        if self.batch_size:
            return batched(samples, self.batch_size, self.collate_fn)
        return samples

    def _samples(self, shard_ids: Sequence[int]) -> Iterator[Sample]:
        shards = self.source.shards()
        for shard_id in shard_ids:
            shard = shards[shard_id]
            samples = write_through(self.processor, shard, self.cache) if self.cache else self.processor.process(shard)
            if self.after_cache:
                samples = self.processor.run_after(samples, self.after_cache)
            for sample in samples:
                if self.yield_failures or is_success(sample):
                    yield sample

    def _fixed_length(self, world: World, target: int) -> Iterator[Sample]:
        """Yield exactly ``target`` items (failure records count when yielded), cycling over this consumer's
        shards as often as needed and widening to its rank's, then all shards when a pass yields no success."""
        if target <= 0:   # more workers than the rank's samples: this one has nothing to yield
            return
        pools = top_up_pools(self._order(), world)
        produced, level = 0, 0
        while produced < target and pools:
            succeeded = False
            for sample in self._samples(pools[level]):
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
