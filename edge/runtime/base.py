"""The one runner interface every backend implements (after Polygraphy's runners).

A runner is context-managed, exposes the model's :class:`~edge.spec.ModelCard` (spec and
threshold) and input name/shape, and maps a preprocessed float32 NCHW batch to one fake
probability per face: ``infer(batch) -> scores`` with ``scores.shape == (N,)``.
Backends: ``ort`` (ONNX Runtime; CPU everywhere, CUDA/TensorRT providers when installed),
``trt`` (TensorRT engine through pycuda) and ``torch`` (reference, in ``train/``).
``open_runner(path, backend="auto")`` picks the fastest backend that can run here.
"""
from __future__ import annotations

import abc
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, ModelError
from ..spec import ModelCard


class Runner(abc.ABC):
    """``infer(batch) -> scores``; ``close()`` frees memory; usable as a context manager."""

    name: str = "runner"
    card: ModelCard
    input_name: str = "input"
    max_batch: int | None = None  # None: any batch size

    @property
    def input_shape(self) -> tuple:
        s = self.card.spec.size
        return ("N", 3, s, s)

    @abc.abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N,3,H,W) -> float32 (N,) probabilities of 'fake'."""

    def close(self) -> None:  # noqa: B027 - optional for backends that hold nothing
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        s = self.card.spec.size
        if batch.ndim != 4 or batch.shape[1:] != (3, s, s):
            raise ConfigError(f"{self.name} runner expects a (N,3,{s},{s}) batch, got {tuple(batch.shape)}",
                              fix="preprocess crops with edge.spec.preprocess and the model's spec")
        return batch


BACKENDS = ("auto", "ort", "trt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


def open_runner(model_path: str | Path, backend: str = "auto", **kw) -> Runner:
    """Open ``model_path`` (``.onnx`` or ``.engine``) with ``backend``.

    ``auto``: a ``.engine`` goes to TensorRT; an ``.onnx`` goes to ONNX Runtime with the best
    available provider (TensorRT/CUDA providers when installed, else CPU).
    """
    p = Path(model_path)
    if not p.exists():
        raise ModelError("model file not found", path=p, fix="check the path, or run `ffd export` first")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "trt" or (backend == "auto" and p.suffix in ENGINE_SUFFIXES):
        if p.suffix == ".onnx":
            raise ConfigError("the trt backend runs a TensorRT engine, not an ONNX file", path=p,
                              fix="build one with `ffd build-engine MODEL.onnx` and pass the .engine")
        from .trt import TrtRunner  # lazy: imports tensorrt + pycuda

        return TrtRunner(p, **kw)
    if p.suffix in ENGINE_SUFFIXES:
        raise BackendUnavailableError("ONNX Runtime cannot run a TensorRT engine", path=p,
                                      fix="use --backend trt on a machine with TensorRT, or pass the .onnx")
    from .ort import OrtRunner

    return OrtRunner(p, **kw)
