"""The model-stage interface: weights loaded once per process, samples batched across rows, accelerator when
present.

A stage splits its work in three: :meth:`ModelStage.prepare` (one sample → model inputs: decoding, on the
row's own thread), :meth:`ModelStage.forward` (a list of inputs → a list of outputs: one batched call of the
model) and :meth:`ModelStage.finish` (writes an output into its sample). Rows run concurrently on the fetch
threads, so a :class:`MicroBatcher` gathers the prepared inputs of up to ``batch_size`` rows (waiting at most
``max_wait`` seconds for more) and runs them in one forward pass; :meth:`ModelStage.process_batch` takes many
samples at once directly.
"""
from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from ...sample import Sample
from ..base import Subsampler

_MODELS: Dict[Hashable, Any] = {}
_MODELS_LOCK = threading.Lock()


def require(package: str, extra: str) -> Any:
    """Import ``package`` or fail with the extra that installs it."""
    try:
        return __import__(package)
    except ImportError as exc:
        raise ImportError(f"this model stage needs {package}: pip install 'streamv2d[{extra}]'") from exc


def pick_device(device: str = "auto") -> str:
    """``auto``: the first CUDA device when there is one, else the CPU; any other value as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_once(key: Hashable, load: Callable[[], Any]) -> Any:
    """``load()`` the first time ``key`` is asked for in this process, the same object afterwards (a forked
    worker loads its own: CUDA contexts and thread pools do not survive a fork)."""
    full_key = (os.getpid(), key)
    with _MODELS_LOCK:
        if full_key not in _MODELS:
            _MODELS[full_key] = load()
        return _MODELS[full_key]


def pretrained_kwargs(model: str, cache_dir: Optional[str] = None) -> Dict[str, Any]:
    """``from_pretrained`` options: a local folder is read offline; a hub name downloads into ``cache_dir``."""
    options: Dict[str, Any] = {"local_files_only": os.path.isdir(model)}
    if cache_dir:
        options["cache_dir"] = cache_dir
    return options


class _Slot:
    """One submitted input and, once its batch has run, its output or error."""

    __slots__ = ("item", "done", "taken", "output", "error")

    def __init__(self, item: Any) -> None:
        self.item, self.done, self.taken, self.output, self.error = item, False, False, None, None


class MicroBatcher:
    """Coalesces concurrent :meth:`submit` calls into calls of ``run(items) -> outputs`` of at most
    ``batch_size`` items: a full batch runs at once on the thread that filled it; otherwise the oldest waiter
    runs what is pending after ``max_wait`` seconds. A lone thread therefore waits ``max_wait`` per item
    (use :meth:`ModelStage.process_batch` to hand over many at once)."""

    def __init__(self, run: Callable[[List[Any]], Sequence[Any]], batch_size: int, max_wait: float) -> None:
        self.run, self.batch_size, self.max_wait = run, batch_size, max_wait
        self._cond = threading.Condition()
        self._pending: List[_Slot] = []

    def submit(self, item: Any) -> Any:
        slot = _Slot(item)
        with self._cond:
            self._pending.append(slot)
            batch = self._take() if len(self._pending) >= self.batch_size else None
            deadline = time.monotonic() + self.max_wait
            while batch is None and not slot.done:
                left = deadline - time.monotonic()
                if not slot.taken and left <= 0:
                    batch = self._take()
                    break
                self._cond.wait(timeout=max(left, 0.001) if not slot.taken else None)
        if batch is not None:
            self._run(batch)
        if slot.error is not None:
            raise slot.error
        return slot.output

    def _take(self) -> List[_Slot]:
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
        for slot in batch:
            slot.taken = True
        return batch

    def _run(self, batch: List[_Slot]) -> None:
        try:
            outputs = list(self.run([slot.item for slot in batch]))
            if len(outputs) != len(batch):
                raise RuntimeError(f"model stage returned {len(outputs)} outputs for {len(batch)} inputs")
            for slot, output in zip(batch, outputs):
                slot.output = output
        except Exception as exc:  # noqa: BLE001 - every sample of the batch fails with the cause
            for slot in batch:
                slot.error = exc
        with self._cond:
            for slot in batch:
                slot.done = True
            self._cond.notify_all()


class ModelStage(Subsampler):
    """Base of the model stages. Subclasses set ``extra`` (the pip extra) and implement :meth:`load` (returns
    the model bundle for a device), :meth:`prepare`, :meth:`forward` and :meth:`finish`. ``model`` is a local
    folder or a hub name; ``device`` ``auto`` picks CUDA when present. Picklable: the loaded model is never an
    attribute, it lives in the process's :func:`load_once` table."""

    extra = "models"

    def __init__(self, model: str, batch_size: int = 8, device: str = "auto", max_wait: float = 0.05,
                 cache_dir: Optional[str] = None) -> None:
        if not model:
            raise ValueError(f"{type(self).__name__}: model must name a local folder or a hub model")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be an integer >= 1, got {batch_size!r}")
        self.model, self.batch_size, self.device = model, batch_size, device
        self.max_wait, self.cache_dir = max_wait, cache_dir
        self._batchers: Dict[int, MicroBatcher] = {}

    def config(self) -> Dict[str, Any]:
        """Settings that change the output (batching and device do not)."""
        return {k: v for k, v in vars(self).items()
                if not k.startswith("_") and k not in ("batch_size", "device", "max_wait")}

    def __getstate__(self) -> Dict[str, Any]:
        return {**self.__dict__, "_batchers": {}}

    # -- what a stage implements ------------------------------------------------------------------------------
    def load(self, device: str) -> Any:
        raise NotImplementedError

    def prepare(self, sample: Sample) -> Any:
        raise NotImplementedError

    def forward(self, bundle: Any, inputs: List[Any]) -> List[Any]:
        raise NotImplementedError

    def finish(self, sample: Sample, output: Any) -> Sample:
        raise NotImplementedError

    # -- running ----------------------------------------------------------------------------------------------
    def bundle(self) -> Any:
        """The loaded model of this process (loaded on first use)."""
        require("transformers", self.extra)
        device = pick_device(self.device)
        return load_once((type(self).__name__, self.model, device, self.cache_dir), lambda: self.load(device))

    def run_batch(self, inputs: List[Any]) -> List[Any]:
        """One forward pass over ``inputs`` (at most ``batch_size`` of them)."""
        return self.forward(self.bundle(), inputs)

    def _batcher(self) -> MicroBatcher:
        pid = os.getpid()
        if pid not in self._batchers:   # setdefault: two threads racing here still share one batcher
            self._batchers.setdefault(pid, MicroBatcher(self.run_batch, self.batch_size, self.max_wait))
        return self._batchers[pid]

    def __call__(self, sample: Sample) -> Sample:
        return self.finish(sample, self._batcher().submit(self.prepare(sample)))

    def process_batch(self, samples: Sequence[Sample]) -> List[Sample]:
        """Many samples at once: prepared one by one, run ``batch_size`` at a time, finished in order."""
        inputs = [self.prepare(sample) for sample in samples]
        outputs: List[Any] = []
        for start in range(0, len(inputs), self.batch_size):
            outputs += self.run_batch(inputs[start:start + self.batch_size])
        return [self.finish(sample, output) for sample, output in zip(samples, outputs)]
