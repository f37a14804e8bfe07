"""``VideoDataset``: the streaming ``IterableDataset`` that every other feature plugs into."""
from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import astuple, fields
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch.utils.data import IterableDataset

from .batching import Collate, collate_samples
from .cache import CacheStore
from .cache.evict import parse_size
from .distribute import World, consumer_pieces, consumer_shards, current_world, epoch_order, quota, top_up_pools
from .fetch import FetchConfig, merged
from .job import Job, positive_int
from .loader.nodes import Batcher, Endless, FixedLength, Node, ShardReader, Shuffler
from .shard import ShardJob
from .sources import Source
from .sources.table import TableOptions
from .subsamplers import SubsamplerLike, describe

#: Bumped when the layout of ``state_dict()`` changes.
STATE_VERSION = 1

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
        shuffle_initial: start drawing once the buffer holds this many samples, growing it to ``shuffle_buffer``
            as it goes (default: ``shuffle_buffer``, a full buffer first): a smaller value starts sooner.
        samples_per_rank: fixed-length mode for DDP — every rank yields exactly this many samples per epoch,
            topping up from its own shards; without it (default) every success is yielded exactly once.
        yield_failures: also yield failure records (``json["status"] != "success"``, no media).
        cache_dir: write every processed shard there as it streams (WebDataset tar, ``_stats.json``, metadata
            parquet), and read complete shards from it in later epochs without any network request. The cache
            lives in a namespace keyed by the source's content and the cached stages (see the README). It sits
            before the first stage whose output a shard cannot hold (``Frames``; a ``Clip`` right before it),
            which runs on what the cache returns: the samples are the same with and without a cache.
        cache_limit: bytes (or ``"2TB"``) the cache may hold; whole shards are evicted least recently used.
        cache_format: ``"tar"`` (default), ``"parquet"`` or ``"files"``; only with ``cache_dir``.
        batch_size, collate_fn: batch inside each worker (use ``DataLoader(batch_size=None)``); saves the
            per-sample IPC cost when samples are small tensors. Default collate stacks equal-shaped tensors;
            ``collate_fn`` only with ``batch_size``.
        rank, world_size: override the distributed world (default: torch.distributed, then RANK/WORLD_SIZE).
        resampled: never end: after an epoch, the next one (its own shard order and draws) — for step-based
            training.

    ``state_dict()`` / ``load_state_dict()`` resume mid-epoch by position, through ``StatefulDataLoader`` (any
    ``num_workers``) or a plain loop; ``sv.reshard_state`` converts a state for other worker or rank counts.
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
        shuffle_initial: Optional[int] = None,
        seed: int = 0,
        samples_per_rank: Optional[int] = None,
        yield_failures: bool = False,
        cache_dir: Optional[str] = None,
        cache_limit: Union[int, str, None] = None,
        cache_format: Optional[str] = None,
        batch_size: Optional[int] = None,
        collate_fn: Optional[Collate] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        resampled: bool = False,
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
        self.shuffle_initial = positive_int("shuffle_initial", shuffle_initial, allow_none=True)
        if self.shuffle_initial is not None and not self.shuffle_initial <= self.shuffle_buffer:
            raise ValueError(f"shuffle_initial: {shuffle_initial} must be at most shuffle_buffer "
                             f"({shuffle_buffer}); set shuffle_buffer too")
        self.samples_per_rank = positive_int("samples_per_rank", samples_per_rank, allow_none=True)
        self.batch_size = positive_int("batch_size", batch_size, allow_none=True)
        if collate_fn is not None and not callable(collate_fn):
            raise ValueError(f"collate_fn: {collate_fn!r} is not callable")
        if collate_fn is not None and batch_size is None:
            raise ValueError("collate_fn: given without batch_size; set batch_size too, or drop collate_fn")
        for name, value in (("cache_limit", cache_limit), ("cache_format", cache_format)):
            if cache_dir is None and value is not None:
                raise ValueError(f"{name}: given without cache_dir; set cache_dir too, or drop {name}")
        parse_size(cache_limit)
        if (rank is None) != (world_size is None):
            raise ValueError(f"rank and world_size go together; got rank={rank!r}, world_size={world_size!r}")
        if rank is not None:
            World(positive_int("rank", rank, minimum=0), positive_int("world_size", world_size))
        self.shard_job = ShardJob(self.job)
        self.source = self.shard_job.source
        self.cache = (CacheStore.for_job(cache_dir, self.shard_job, fmt=cache_format or "tar", limit=cache_limit)
                      if cache_dir else None)
        self.shuffle_shards = bool(shuffle_shards)
        self.seed = seed
        self.yield_failures = yield_failures
        self.collate_fn = collate_fn or collate_samples
        self.rank = rank
        self.world_size = world_size
        self.resampled = bool(resampled)
        # shared with DataLoader workers (persistent ones included), so set_epoch reaches them
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._resume_from: Optional[Dict[str, Any]] = None
        self._current: Optional[Tuple[World, int, Node]] = None
        self._identity: Optional[str] = None

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

    def shards_for(self, world: World, epoch: Optional[int] = None) -> List[int]:
        """The shard ids ``world``'s consumer reads in ``epoch`` (default: the current one), exactly-once mode."""
        return consumer_shards(self._order(epoch), world)

    def _order(self, epoch: Optional[int] = None) -> List[int]:
        epoch = self.epoch if epoch is None else epoch
        return epoch_order(self.num_shards, seed=self.seed, epoch=epoch, shuffle=self.shuffle_shards)

    # -- iteration and its state -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Any]:
        world, state = self.world(), self._resume_from
        self._resume_from = None
        epoch = self.epoch if state is None else self._check_state(state, world)
        loader = None if state is None else state["loader"]
        if self.resampled:
            stream: Node = Endless(lambda e, s: self.stream(world, e, s), epoch)
            if loader is not None:
                stream.reset(loader)
        else:
            stream = self.stream(world, epoch, loader)
        self._current = (world, epoch, stream)
        return stream

    def stream(self, world: World, epoch: int, state: Optional[Dict[str, Any]] = None) -> Node:
        """The loader stages of consumer ``world`` in ``epoch`` — shard reader (or fixed-length passes), shuffle
        buffer, batches — resumed at ``state`` (a ``get_state()`` of the same stages) when given."""
        def row_groups(shard: int, start_row: int, stop_row: Optional[int] = None):
            return self.shard_job.row_groups(shard, self.cache, epoch=epoch, start_row=start_row, stop_row=stop_row)

        def reader(segments) -> ShardReader:
            return ShardReader(row_groups, segments, self.yield_failures)

        if self.samples_per_rank is None:
            node: Node = reader(self._segments(world, epoch))
        else:
            node = FixedLength(reader, top_up_pools(self._order(epoch), world), quota(self.samples_per_rank, world))
        if self.shuffle_buffer > 1:
            node = Shuffler(node, self.shuffle_buffer, f"{self.seed}/{epoch}/{world}", self.shuffle_initial)
        if self.batch_size:
            node = Batcher(node, self.batch_size, self.collate_fn)
        if state is not None:
            node.reset(state)
        return node

    def _segments(self, world: World, epoch: int) -> List[List[int]]:
        """The consumer's work: its shards, or — without a cache (a cached shard is one unit of work), when there
        are more consumers than shards — its pieces of them, so no worker idles on a small table."""
        order = self._order(epoch)
        if self.cache is not None:
            return [[shard, 0, 0] for shard in consumer_shards(order, world)]
        rows = [shard.num_rows for shard in self.source.shards()]
        return [[shard, start, 0] + ([] if stop is None else [stop])
                for shard, start, stop in consumer_pieces(order, world, rows)]

    def state_dict(self) -> Dict[str, Any]:
        """Where this process's iteration stands — after the last item it yielded — as a small JSON-able dict
        (the job's identity, the consumer, the epoch, positions and the shuffle buffer's positions). Before any
        iteration: the start of the current epoch; after ``load_state_dict``, until ``iter``: the state loaded.
        ``StatefulDataLoader`` collects it from every worker."""
        if self._resume_from is not None:   # not resumed yet: that state is still where this dataset stands
            return copy.deepcopy(self._resume_from)
        if self._current is None:
            world, epoch = self.world(), self.epoch
            loader = self.stream(world, epoch).get_state()
            if self.resampled:
                loader = {"epoch": epoch, "stages": loader}
        else:
            world, epoch, stream = self._current
            loader = stream.get_state()
        return {"version": STATE_VERSION, "job": self.identity(), "world": list(astuple(world)), "epoch": epoch,
                "loader": loader}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Make the next ``iter`` resume at ``state``: the samples an uninterrupted run would still have
        yielded, none twice, none lost, skipped by position (nothing delivered is fetched or decoded again;
        the shuffle buffer's rows are). The epoch is the state's. Refuses a state of another job."""
        if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
            raise ValueError(f"not a streamv2d VideoDataset state (version {STATE_VERSION}): {str(state)[:80]}")
        if state["job"] != self.identity():
            raise ValueError("this state was saved by another job (source content, chain, seed or loader "
                             f"settings differ: {state['job']} != {self.identity()}); it cannot resume this one")
        self._epoch.fill_(positive_int("epoch", state["epoch"], minimum=0))
        self._resume_from = state

    def _check_state(self, state: Dict[str, Any], world: World) -> int:
        if list(state["world"]) != list(astuple(world)):
            raise ValueError(f"this state was saved by consumer {World(*state['world'])}, not {world}: to resume "
                             "with another number of ranks or workers, convert it with sv.reshard_state(...)")
        return int(state["epoch"])

    def identity(self) -> str:
        """A digest of what decides the sample stream: the source's content, the chain, the seed and the loader
        settings — so a state is never applied to another job. Computed once per process."""
        if self._identity is None:
            document = [self.source.fingerprint(), [describe(s) for s in self.job.chain.stages], self.seed,
                        self.shuffle_shards, self.shuffle_buffer, self.samples_per_rank, self.yield_failures,
                        self.batch_size, self.resampled]
            if self.shuffle_initial not in (None, self.shuffle_buffer):   # states saved before it stay valid
                document.append(self.shuffle_initial)
            self._identity = hashlib.sha256(json.dumps(document).encode()).hexdigest()[:16]
        return self._identity
