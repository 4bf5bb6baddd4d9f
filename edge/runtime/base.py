"""The one runner interface every backend implements (after Polygraphy's ``backend/base/runner.py``).

A runner is context-managed, exposes the model's :class:`~edge.spec.ModelCard` (spec and
threshold) and input name/shape, and maps a preprocessed float32 NCHW batch to one fake
probability per face: ``infer(batch) -> scores`` with ``scores.shape == (N,)``. ``infer`` and
``infer_async`` are templates: the batch is checked here, once, then the backend's ``_infer``
(and ``_infer_async``, where it runs on another device) gets it. This module knows no backend:
the backends are :mod:`edge.runtime.ort` and :mod:`edge.runtime.trt`, and which one runs a model
is decided in :mod:`edge.runtime.select` (``open_runner``).
"""
from __future__ import annotations

import abc

import numpy as np

from ..errors import ConfigError
from ..spec import ModelCard


class Runner(abc.ABC):
    """``infer(batch) -> scores``; ``close()`` frees memory; usable as a context manager.

    A backend implements :meth:`_infer` (and may override :meth:`_infer_async`); both get a batch
    :meth:`check_batch` has accepted. Callers use :meth:`infer` / :meth:`infer_async`.
    """

    name: str = "runner"
    card: ModelCard
    input_name: str = "input"
    max_batch: int | None = None  # None: any batch size

    @property
    def input_shape(self) -> tuple:
        s = self.card.spec.size
        return ("N", 3, s, s)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N,3,H,W) -> float32 (N,) probabilities of 'fake' (an empty batch: no scores)."""
        batch = self.check_batch(batch)
        return self._infer(batch) if len(batch) else np.zeros((0,), np.float32)

    def infer_async(self, batch: np.ndarray) -> "Done":
        """Start ``infer(batch)``; ``.result()`` gives the scores.

        Backends that run on another device (TensorRT) return at once, so the caller can
        preprocess the next batch while this one runs; the default runs it now.
        """
        return self._infer_async(self.check_batch(batch))

    @abc.abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """A checked batch (float32, C-contiguous, (N,3,H,W), N >= 1) -> float32 (N,) scores."""

    def _infer_async(self, batch: np.ndarray) -> "Done":
        """A checked batch (N >= 0) -> its pending scores; the default runs it now."""
        return Done(self._infer(batch) if len(batch) else np.zeros((0,), np.float32))

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """``batch`` as float32 C-contiguous, or a ConfigError when it is not (N,3,size,size) for this card."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        s = self.card.spec.size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ConfigError(f"{self.name} runner expects a (N,3,{s},{s}) batch, got {tuple(batch.shape)}",
                              fix="preprocess crops with edge.spec.preprocess and the model's spec")
        return batch


class Done:
    """The result of a batch that already ran (what :meth:`Runner.infer_async` returns by default)."""

    def __init__(self, scores: np.ndarray):
        self._scores = scores

    def result(self) -> np.ndarray:
        return self._scores


CPU_ONLY_TARGET = "onnxruntime-cpu"  # card.extra["int8_target"] of ORT's U8S8 INT8: TensorRT cannot build it


def cpu_only(card: ModelCard | None) -> bool:
    """True for ONNX Runtime's U8S8 INT8 flavour (asymmetric: TensorRT cannot build it)."""
    return card is not None and card.extra.get("int8_target") == CPU_ONLY_TARGET
