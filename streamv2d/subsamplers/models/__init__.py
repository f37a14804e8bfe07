"""Model stages (plug-ins, each an extra): :class:`Caption` (``streamv2d[caption]``), :class:`Transcribe`
(``streamv2d[whisper]``), :class:`FrameEmbedding` (``streamv2d[embedding]``), on the :class:`ModelStage`
interface: loaded once per process, batched across rows, on CUDA when present."""
from .base import MicroBatcher, ModelStage, load_once, pick_device
from .caption import Caption
from .embedding import FrameEmbedding
from .transcribe import Transcribe

__all__ = ["Caption", "FrameEmbedding", "MicroBatcher", "ModelStage", "Transcribe", "load_once", "pick_device"]
