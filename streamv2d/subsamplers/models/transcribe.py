"""Transcribe: speech to text with a Whisper-style sequence-to-sequence model (extra ``whisper``)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from ...sample import Sample
from .base import ModelStage, pretrained_kwargs
from .media import mono_audio

#: video2dataset (whisperx) model names → hub names
WHISPER_NAMES = {name: f"openai/whisper-{name}" for name in
                 ("tiny", "base", "small", "medium", "large", "large-v2", "large-v3", "tiny.en", "base.en",
                  "small.en", "medium.en")}
DTYPES = {"float16": "float16", "float32": "float32", "bfloat16": "bfloat16", "int8": "float32"}


class Transcribe(ModelStage):
    """Adds ``json["whisper_transcript"] = {"text", "segments": [{"start", "end", "text"}], "language"}``
    (the shape of video2dataset's whisperx result) and, with ``to_txt``, the text as ``txt``. The audio (an
    audio member, else the video's track, cut to a clip's span) is cut into ``chunk`` second windows, each a
    segment; the windows of a batch of rows go through one ``generate`` call. ``model``: a folder or hub name
    (``large-v2`` means ``openai/whisper-large-v2``) of an ``AutoModelForSpeechSeq2Seq`` with its feature
    extractor and tokenizer; ``dtype`` float16 is used on CUDA only (CPUs run float32)."""

    extra = "whisper"
    metadata_fields = {"whisper_transcript": "json"}

    def __init__(self, model: str = "large-v2", language: Optional[str] = None, chunk: float = 30.0,
                 max_new_tokens: int = 128, dtype: str = "float16", to_txt: bool = False, batch_size: int = 16,
                 device: str = "auto", max_wait: float = 0.05, cache_dir: Optional[str] = None) -> None:
        super().__init__(WHISPER_NAMES.get(model, model), batch_size, device, max_wait, cache_dir)
        if dtype not in DTYPES:
            raise ValueError(f"Transcribe: dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        if chunk <= 0:
            raise ValueError(f"Transcribe: chunk must be positive seconds, got {chunk!r}")
        self.language, self.chunk, self.max_new_tokens = language, chunk, max_new_tokens
        self.dtype, self.to_txt = dtype, to_txt

    def load(self, device: str) -> Dict[str, Any]:
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForSpeechSeq2Seq, AutoTokenizer

        options = pretrained_kwargs(self.model, self.cache_dir)
        dtype = getattr(torch, DTYPES[self.dtype]) if device.startswith("cuda") else torch.float32
        model = AutoModelForSpeechSeq2Seq.from_pretrained(self.model, dtype=dtype, **options)
        features = AutoFeatureExtractor.from_pretrained(self.model, **options)
        return {"model": model.to(device).eval(), "features": features, "dtype": dtype, "device": device,
                "tokenizer": AutoTokenizer.from_pretrained(self.model, **options)}

    def prepare(self, sample: Sample) -> Dict[str, Any]:
        rate = self.bundle()["features"].sampling_rate
        audio = mono_audio(sample, rate)
        step = int(self.chunk * rate)
        windows = [audio[i:i + step] for i in range(0, max(len(audio), 1), step)] or [audio]
        return {"windows": windows, "rate": rate}

    def forward(self, bundle: Dict[str, Any], inputs: List[Dict[str, Any]]) -> List[List[Dict[str, Any]]]:
        import torch

        windows = [w if len(w) else np.zeros(1, np.float32) for item in inputs for w in item["windows"]]
        features = bundle["features"](windows, sampling_rate=inputs[0]["rate"], return_tensors="pt")
        kwargs: Dict[str, Any] = {"max_new_tokens": self.max_new_tokens}
        if self.language:
            kwargs["language"] = self.language
        with torch.inference_mode():
            generated = bundle["model"].generate(
                features["input_features"].to(bundle["device"], bundle["dtype"]), **kwargs)
        texts = [t.strip() for t in bundle["tokenizer"].batch_decode(generated, skip_special_tokens=True)]
        outputs, start = [], 0
        for item in inputs:
            segments, offset = [], 0.0
            for window, text in zip(item["windows"], texts[start:start + len(item["windows"])]):
                end = offset + len(window) / item["rate"]
                segments.append({"start": round(offset, 3), "end": round(end, 3), "text": text})
                offset = end
            outputs.append(segments)
            start += len(item["windows"])
        return outputs

    def run_batch(self, inputs: List[Any]) -> List[Any]:
        """Rows whose windows together exceed ``batch_size`` are run in several calls, whole rows each."""
        outputs: List[Any] = []
        group: List[Any] = []
        for item in inputs:
            if group and sum(len(g["windows"]) for g in group) + len(item["windows"]) > self.batch_size:
                outputs += self.forward(self.bundle(), group)
                group = []
            group.append(item)
        return outputs + (self.forward(self.bundle(), group) if group else [])

    def finish(self, sample: Sample, segments: List[Dict[str, Any]]) -> Sample:
        text = " ".join(s["text"] for s in segments if s["text"])
        sample.setdefault("json", {})["whisper_transcript"] = {"text": text, "segments": segments,
                                                               "language": self.language}
        if self.to_txt:
            sample["txt"] = text
        return sample
