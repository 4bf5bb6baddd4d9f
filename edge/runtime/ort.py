"""ONNX Runtime backend: the runner that runs everywhere (CPU by default, CUDA/TensorRT providers when installed).

The model's :class:`~edge.spec.ModelCard` (spec, threshold) is read from the ONNX
``metadata_props`` under :data:`edge.spec.META_KEY` through ONNX Runtime itself, so this
path needs neither torch nor the ``onnx`` package. ``providers``: ``None`` (CPU only),
``"auto"`` (TensorRT, then CUDA, then CPU, whichever this onnxruntime build offers) or an
explicit list; an explicitly requested provider that is not available is an error, never a
silent fallback. One session per runner; ``infer`` is safe to call from one thread at a time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BackendUnavailableError, ModelError
from ..settings import RANGES
from ..spec import ModelCard
from .base import Runner

AUTO_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def resolve_providers(providers: str | Sequence[str] | None) -> list[str]:
    """``None`` -> CPU; ``"auto"`` -> the best available; a list is checked against this build."""
    import onnxruntime as ort  # a core dependency, imported lazily to keep `import edge` light

    available = ort.get_available_providers()
    if providers is None or providers == "cpu":
        return ["CPUExecutionProvider"]
    if providers == "auto":
        return [p for p in AUTO_PROVIDERS if p in available] or ["CPUExecutionProvider"]
    wanted = [providers] if isinstance(providers, str) else list(providers)
    missing = [p for p in wanted if p not in available]
    if missing:
        raise BackendUnavailableError(
            f"ONNX Runtime provider(s) {missing} not available here (available: {available})",
            fix="install onnxruntime-gpu for CUDA/TensorRT providers, or use providers='auto'/None (CPU)")
    return wanted


def session_card(session, path: str | Path) -> ModelCard:
    """The ModelCard stored in an ONNX Runtime session's custom metadata, or ModelError naming the fix."""
    from ..onnx_model import card_from_props

    return card_from_props(session.get_modelmeta().custom_metadata_map, path)


class OrtRunner(Runner):
    """``OrtRunner(path, providers=None|"auto"|[...], intra_op_threads=None, card=None)``."""

    name = "ort"

    def __init__(self, path: str | os.PathLike, providers: str | Sequence[str] | None = None,
                 intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                 card: ModelCard | None = None, max_batch: int | None = None,
                 optimization: str = "all", session_options=None):
        import onnxruntime as ort

        from ..settings import check

        intra_op_threads = check("intra_op_threads", intra_op_threads, *RANGES["threads"])  # 2000: a hang
        inter_op_threads = check("inter_op_threads", inter_op_threads, *RANGES["threads"])
        max_batch = check("max_batch", max_batch, *RANGES["batch_size"])
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError("ONNX model not found", path=self.path, fix="check the path, or run `ffd export` first")
        so = session_options or ort.SessionOptions()
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        if inter_op_threads:
            so.inter_op_num_threads = int(inter_op_threads)
        so.graph_optimization_level = {
            "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[optimization]
        self.providers = resolve_providers(providers)
        try:
            self._sess = ort.InferenceSession(str(self.path), sess_options=so, providers=self.providers)
        except Exception as e:  # onnxruntime raises its own pybind exception types (InvalidProtobuf, Fail, ...)
            raise ModelError(f"ONNX Runtime could not load the model: {str(e).strip().splitlines()[0][:300]}",
                             path=self.path,
                             fix="the file is corrupt, truncated or not ONNX; re-run `ffd export`") from e
        self.card = card if card is not None else session_card(self._sess, self.path)
        inputs, outputs = self._sess.get_inputs(), self._sess.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ModelError(f"expected one input and a score output, got inputs {[i.name for i in inputs]}",
                             path=self.path, fix="export with `ffd export` (input 'input', output 'score')")
        from ..onnx_model import check_io_types

        check_io_types(inputs[0].type, outputs[0].type, self.path)  # float32 in, float scores out: else refused now
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        from ..heatmap import cam_head

        head = cam_head(self.card)  # the features output the card names, when the graph has it
        self.features_name = head.output if head is not None and head.output in [o.name for o in outputs[1:]] else None
        shape = inputs[0].shape
        s = self.card.spec.size
        if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape[1:], (3, s, s))):
            raise ModelError(f"model input {self.input_name} has shape {shape} but its card's spec says (N,3,{s},{s})",
                             path=self.path, fix="re-export the model with the spec it was trained with")
        static_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.max_batch = min((b for b in (max_batch, static_batch) if b), default=None)
        self._static_batch = static_batch
        self.active_providers = self._sess.get_providers()

    def _run(self, x: np.ndarray, features: bool = False):
        n = x.shape[0]
        if self._static_batch and n < self._static_batch:  # pad a fixed-batch model's last chunk
            x = np.concatenate([x, np.zeros((self._static_batch - n, *x.shape[1:]), np.float32)])
        names = [self.output_name] + ([self.features_name] if features else [])  # features only when asked
        got = self._sess.run(names, {self.input_name: x})
        y = np.asarray(got[0], np.float32)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.ndim != 1 or y.shape[0] < n:
            raise ModelError(f"model output {self.output_name} has shape {y.shape}, expected ({x.shape[0]},)",
                             path=self.path, fix="export with `ffd export` (output 'score' = P(fake) per face)")
        if features:
            return y[:n], np.asarray(got[1], np.float32)[:n]
        return y[:n]

    def _infer_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        step = self.max_batch or batch.shape[0]
        parts = [self._run(batch[i:i + step], features=True) for i in range(0, batch.shape[0], step)]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        step = self.max_batch or batch.shape[0]
        if step >= batch.shape[0]:
            return self._run(batch)
        return np.concatenate([self._run(batch[i:i + step]) for i in range(0, batch.shape[0], step)])

    def close(self) -> None:
        self._sess = None

    def __repr__(self) -> str:
        return (f"OrtRunner({self.path.name}, providers={self.active_providers}, "
                f"card={self.card.name}@{self.card.version})")
