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

from ..errors import ConfigError, ModelError
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
    features_name: str | None = None  # the optional last-feature-map output (heatmaps), when the model has one

    @property
    def input_shape(self) -> tuple:
        s = self.card.spec.size
        return ("N", 3, s, s)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """float32 (N,3,H,W) -> float32 (N,) probabilities of 'fake' (an empty batch: no scores).

        The scores are checked (:meth:`check_scores`): a model that answers NaN, values outside
        [0, 1] or the wrong number of scores raises :class:`ModelError` naming the model file.
        """
        batch = self.check_batch(batch)
        return self.check_scores(self._infer(batch), len(batch)) if len(batch) else np.zeros((0,), np.float32)

    def infer_async(self, batch: np.ndarray) -> "Checked":
        """Start ``infer(batch)``; ``.result()`` gives the scores (checked like :meth:`infer`'s).

        Backends that run on another device (TensorRT) return at once, so the caller can
        preprocess the next batch while this one runs; the default runs it now.
        """
        batch = self.check_batch(batch)
        return Checked(self, self._infer_async(batch), len(batch))

    @property
    def has_features(self) -> bool:
        """Whether the model has the optional ``features`` output (exported with ``ffd export --heatmap``)."""
        return self.features_name is not None

    def infer_with_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``(scores (N,), features (N,C,h,w) float32 or None)``: :meth:`infer` plus the last feature map, fetched
        only here (``infer`` never copies it). ``None`` when the model has no such output (:attr:`has_features`)."""
        if not self.has_features:
            return self.infer(batch), None
        batch = self.check_batch(batch)
        if not len(batch):
            return np.zeros((0,), np.float32), None
        scores, feats = self._infer_features(batch)
        feats = np.asarray(feats, np.float32)
        if feats.ndim != 4 or feats.shape[0] != len(batch):
            raise ModelError(f"the model's {self.features_name} output has shape {tuple(feats.shape)} for "
                             f"{len(batch)} faces, expected (N, C, h, w)", path=getattr(self, "path", None),
                             fix="re-export the model with `ffd export --heatmap`")
        return self.check_scores(scores, len(batch)), feats

    def _infer_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A checked batch -> (scores, features); backends with a ``features`` output implement it."""
        raise NotImplementedError(f"the {self.name} backend does not fetch the features output")

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

    def check_scores(self, scores, n: int) -> np.ndarray:
        """The model's output contract, per batch: ``n`` finite float scores in [0, 1], as float32 (N,).

        A model that breaks it (NaN/inf, logits instead of probabilities, a shape that is not one score per
        face) is refused with a :class:`ModelError` naming the model file; its scores are never used.
        """
        y = np.asarray(scores)
        where = getattr(self, "path", None)
        fix = "export the model with `ffd export` (its output is P(fake) per face, from a sigmoid/softmax)"
        if y.dtype.kind not in "fiu" or y.shape != (n,):
            raise ModelError(f"the model answered {y.dtype} scores of shape {tuple(y.shape)} for {n} faces, "
                             f"expected {n} float scores", path=where, fix=fix)
        y = y.astype(np.float32, copy=False)
        bad = ~np.isfinite(y)
        if bad.any():
            raise ModelError(f"the model answered non-finite scores ({int(bad.sum())} of {n}, e.g. {y[bad][0]}): "
                             "refused, none is recorded", path=where, fix=fix)
        lo, hi = float(y.min()), float(y.max())
        if lo < -SCORE_TOLERANCE or hi > 1.0 + SCORE_TOLERANCE:
            raise ModelError(f"the model answered scores outside [0, 1] (min {lo:.4g}, max {hi:.4g}): they are not "
                             "probabilities; refused, none is recorded", path=where, fix=fix)
        return np.clip(y, 0.0, 1.0) if lo < 0.0 or hi > 1.0 else y


SCORE_TOLERANCE = 1e-5  # float rounding of a sigmoid/softmax; anything further out of [0, 1] is not a probability


class Checked:
    """A pending batch whose ``result()`` is checked by :meth:`Runner.check_scores` (what ``infer_async`` returns)."""

    def __init__(self, runner: Runner, pending, n: int):
        self._runner, self._pending, self._n = runner, pending, n

    def result(self) -> np.ndarray:
        scores = self._pending.result()
        return self._runner.check_scores(scores, self._n) if self._n else np.zeros((0,), np.float32)


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
