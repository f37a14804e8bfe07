"""streamv2d: video URL tables and WebDataset shards → training-ready samples, on the fly."""
from .config import load_config
from .dataset import VideoDataset
from .errors import FetchError, SourceError, StreamV2DError
from .fetch import FetchConfig
from .job import Job
from .materialize import materialize
from .pipeline import RowResult
from .shard import ShardJob
from .sources import InputShard, Source, TableOptions, TableSource, TarSource
from .stats import ShardStats
from .v2d import video2dataset
from .subsamplers import (FPS, Audio, Clip, CutDetection, Encode, Frames, MediaError, OpticalFlow, Probe,
                          Resolution, Subsampler, from_config)

__version__ = "0.1.0"

__all__ = ["FPS", "Audio", "Clip", "CutDetection", "Encode", "FetchConfig", "FetchError", "Frames", "InputShard", "Job",
           "MediaError", "OpticalFlow", "Probe", "Resolution", "RowResult", "ShardJob", "ShardStats", "Source",
           "SourceError", "StreamV2DError", "Subsampler", "TableOptions", "TableSource", "TarSource", "VideoDataset",
           "__version__", "from_config", "load_config", "materialize", "video2dataset"]
