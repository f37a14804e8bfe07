"""Loader stages: small, stateful and composable — shard reader, fixed-length passes, shuffle buffer, batches,
the mix of several datasets — each able to report and restore its position."""
from .mix import MixedDataset, mix
from .nodes import Batcher, Endless, FixedLength, Node, Position, Segment, ShardReader, Shuffler
from .reshard import reshard_state

__all__ = ["Batcher", "Endless", "FixedLength", "MixedDataset", "Node", "Position", "Segment", "ShardReader",
           "Shuffler", "mix", "reshard_state"]
