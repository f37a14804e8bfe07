"""Caption: a generated caption per video from an image-to-text model (extra ``caption``)."""
from __future__ import annotations

import inspect
from typing import Any, Dict, List, Optional

from ...sample import Sample
from .base import ModelStage, pretrained_kwargs
from .media import video_frames


class Caption(ModelStage):
    """Adds a generated caption as ``json[field]`` (video2dataset's caption stage: ``vblip``) and, with
    ``to_txt``, as the sample's ``txt``. The model (a folder or hub name) is a transformers image-to-text
    model with ``generate`` — BLIP/BLIP-2 (given the ``prompt``), a ViT-GPT2 ``VisionEncoderDecoderModel``, … —
    with its image processor and tokenizer; it captions the middle of ``num_frames`` frames spread over the
    video (video models such as VideoBLIP need their own code and are not loaded). A batch of rows is one
    ``generate`` call."""

    extra = "caption"

    def __init__(self, model: str, prompt: Optional[str] = None, num_frames: int = 1, size: Optional[int] = 224,
                 max_new_tokens: int = 30, num_beams: int = 1, field: str = "generated_caption",
                 to_txt: bool = False, batch_size: int = 8, device: str = "auto", max_wait: float = 0.05,
                 cache_dir: Optional[str] = None) -> None:
        super().__init__(model, batch_size, device, max_wait, cache_dir)
        self.prompt, self.num_frames, self.size = prompt, num_frames, size
        self.max_new_tokens, self.num_beams, self.field, self.to_txt = max_new_tokens, num_beams, field, to_txt
        self.metadata_fields = {field: "string"}

    @property
    def metadata_members(self) -> tuple:
        """``txt`` when the caption is written there (kept in dedicated metadata shards)."""
        return ("txt",) if self.to_txt else ()

    def load(self, device: str) -> Dict[str, Any]:
        import transformers

        options = pretrained_kwargs(self.model, self.cache_dir)
        auto = getattr(transformers, "AutoModelForImageTextToText", None) or transformers.AutoModelForVision2Seq
        try:
            model = auto.from_pretrained(self.model, **options)
        except ValueError:   # not registered there (VisionEncoderDecoder in some versions)
            model = transformers.VisionEncoderDecoderModel.from_pretrained(self.model, **options)
        return {"model": model.to(device).eval(), "device": device,
                "images": transformers.AutoImageProcessor.from_pretrained(self.model, **options),
                "tokenizer": transformers.AutoTokenizer.from_pretrained(self.model, **options),
                "prompted": "input_ids" in inspect.signature(model.forward).parameters}

    def prepare(self, sample: Sample) -> Any:
        frames, _ = video_frames(sample, self.num_frames, self.size)
        return frames[len(frames) // 2]

    def forward(self, bundle: Dict[str, Any], inputs: List[Any]) -> List[str]:
        import torch

        pixels = bundle["images"](images=inputs, return_tensors="pt")["pixel_values"].to(bundle["device"])
        kwargs: Dict[str, Any] = {"pixel_values": pixels, "max_new_tokens": self.max_new_tokens,
                                  "num_beams": self.num_beams}
        if self.prompt and bundle["prompted"]:
            tokens = bundle["tokenizer"]([self.prompt] * len(inputs), return_tensors="pt", padding=True)
            kwargs.update({k: v.to(bundle["device"]) for k, v in tokens.items()})
        with torch.inference_mode():
            generated = bundle["model"].generate(**kwargs)
        texts = bundle["tokenizer"].batch_decode(generated, skip_special_tokens=True)
        if self.prompt and bundle["prompted"]:
            texts = [t[len(self.prompt):] if t.startswith(self.prompt) else t for t in texts]
        return [t.strip() for t in texts]

    def finish(self, sample: Sample, output: str) -> Sample:
        sample.setdefault("json", {})[self.field] = output
        if self.to_txt:
            sample["txt"] = output
        return sample
