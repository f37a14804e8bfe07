"""Which input shards each consumer reads: a pure function of (shards, world, seed, epoch).

Policy (exactly once): the epoch's shard order — ``0..n-1``, or a permutation drawn from ``(seed, epoch)``
when shuffling — is dealt round-robin to ranks, then each rank's shards round-robin to its DataLoader
workers. Every shard goes to exactly one consumer; with more consumers than shards some get none, and an
uneven split (7 shards, 2 ranks × 3 workers) gives some consumers one shard more than others.
"""
from __future__ import annotations

import random
from typing import List, Optional, Tuple

from .world import World


def epoch_order(num_shards: int, *, seed: int = 0, epoch: int = 0, shuffle: bool = False) -> List[int]:
    """Shard ids in the order this epoch visits them; the same on every rank and machine."""
    order = list(range(num_shards))
    if shuffle:
        random.Random(f"{seed}/{epoch}").shuffle(order)
    return order


def rank_shards(order: List[int], world: World) -> List[int]:
    """The shards of ``world.rank`` (all its workers together)."""
    return order[world.rank::world.world_size]


def consumer_shards(order: List[int], world: World) -> List[int]:
    """The shards of one consumer ``(rank, worker)``: disjoint from every other consumer's."""
    return rank_shards(order, world)[world.worker::world.num_workers]


def quota(total: int, world: World) -> int:
    """This worker's share of a rank's fixed epoch length: ``total`` split as evenly as integers allow."""
    return total // world.num_workers + (1 if world.worker < total % world.num_workers else 0)


def top_up_pools(order: List[int], world: World) -> List[List[int]]:
    """Shard pools a consumer cycles through in fixed-length mode, narrowest first: its own shards, its rank's
    (rotated by worker), the whole epoch's (rotated by consumer). Empty pools are left out; a consumer moves to
    the next pool when a whole pass over the current one yields nothing (no shards, or only failures)."""
    pools = []
    for pool, offset in ((consumer_shards(order, world), 0),
                         (rank_shards(order, world), world.worker),
                         (order, world.rank * world.num_workers + world.worker)):
        if pool:
            start = offset % len(pool)
            rotated = pool[start:] + pool[:start]
            if rotated not in pools:
                pools.append(rotated)
    return pools


def consumer_pieces(order: List[int], world: World, num_rows: List[int]) -> List[Tuple[int, int, Optional[int]]]:
    """Like :func:`consumer_shards`, as ``(shard, start_row, stop_row)`` pieces (``stop_row`` None: to the end);
    when the world has more consumers than the epoch has shards, each shard is first cut into as many contiguous
    row ranges as it takes for every consumer to get one (``num_rows[shard]`` split evenly) — still a partition
    of every row, so a small table keeps every worker busy and every sample is yielded exactly once. Shards
    whose row count is unknown (0: tar shards) stay whole."""
    consumers = world.world_size * world.num_workers
    if not order or len(order) >= consumers:
        return [(shard, 0, None) for shard in consumer_shards(order, world)]
    cuts = -(-consumers // len(order))
    pieces: List[Tuple[int, int, Optional[int]]] = []
    for shard in order:
        rows = num_rows[shard]
        parts = min(cuts, rows) if rows else 1
        bounds = [rows * i // parts for i in range(parts + 1)] if rows else [0, None]
        pieces += [(shard, bounds[i], bounds[i + 1]) for i in range(parts)]
    return pieces[world.rank::world.world_size][world.worker::world.num_workers]
