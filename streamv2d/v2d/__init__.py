"""video2dataset's entry points on streamv2d: ``sv.video2dataset(**its arguments)`` and
``streamv2d video2dataset --url_list=… --output_folder=…`` (its command line)."""
from .api import PACKAGED_CONFIGS, STAGES, video2dataset

__all__ = ["PACKAGED_CONFIGS", "STAGES", "video2dataset"]
