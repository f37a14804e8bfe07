"""Distribute: split input shards over ranks × DataLoader workers."""
from .plan import consumer_pieces, consumer_shards, epoch_order, quota, rank_shards, top_up_pools
from .world import World, core_share, current_world

__all__ = ["World", "core_share", "consumer_pieces", "consumer_shards", "current_world", "epoch_order", "quota", "rank_shards", "top_up_pools"]
