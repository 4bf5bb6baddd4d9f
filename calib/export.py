"""Checkpoint -> ONNX that outputs P(fake) per face and carries its ModelCard (after timm's onnx_export).

``export_onnx(ckpt, out)``: loads the model with :func:`train.checkpoint.load_checkpoint`,
wraps it so the graph's only output is ``score`` = P(fake), shape (N,) (two logits ->
``sigmoid(l1 - l0)`` = softmax[:, 1]; one logit -> sigmoid), exports input ``input``
(N,3,S,S) float32 with a dynamic batch axis (or a fixed ``batch``) through the TorchScript
exporter, then cleans the graph with onnx-graphsurgeon (fold constants, cleanup, toposort)
**before** any quantization: folding after Q/DQ insertion would turn INT8 weights back
into FP32. The card JSON goes into ``metadata_props[META_KEY]`` with producer information,
and a parity check runs ONNX Runtime against PyTorch on real face crops (``parity_data``),
printing the max abs difference and label agreement and raising when ``atol`` is exceeded.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.errors import ConfigError, ModelError
from edge.spec import META_KEY, ModelCard

PRODUCER_KEY = "ffd.producer"
DEFAULT_ATOL = 1e-4


def prob_fake_module(model):
    """Wrap a classifier (logits (N,2) or (N,1)) so it outputs P(fake) with shape (N,)."""
    import torch

    class ProbFake(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, x):
            y = self.model(x)
            if y.shape[-1] == 2:
                return torch.sigmoid(y[:, 1] - y[:, 0])  # = softmax(y)[:, 1], two ops fewer
            if y.shape[-1] == 1:
                return torch.sigmoid(y[:, 0])
            raise ModelError(f"model outputs {y.shape[-1]} logits; expected 2 (real, fake) or 1 (fake)",
                             fix="export a binary real/fake classifier")

    return ProbFake(model).eval()


def cleanup_graph(model):
    """onnx-graphsurgeon: fold constants, drop dead nodes, sort topologically (metadata is re-attached later)."""
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup().toposort()
    return gs.export_onnx(graph)


def set_metadata(model, card: ModelCard, producer: dict | None = None):
    """Write the card (and producer info) into ``metadata_props``, replacing older values of those keys."""
    props = {kv.key: kv.value for kv in model.metadata_props}
    props[META_KEY] = card.to_json()
    if producer is not None:
        props[PRODUCER_KEY] = json.dumps(producer, sort_keys=True)
    del model.metadata_props[:]
    for k, v in props.items():
        e = model.metadata_props.add()
        e.key, e.value = k, v
    return model


def parity_inputs(card: ModelCard, parity_data: Sequence[str | os.PathLike] | None, n: int, detector_model=None):
    """Preprocessed real faces from ``parity_data``: a calibration dir (calib.npy) or image folders."""
    from edge.spec import preprocess

    from .calibset import CALIB_FILE, collect_faces, load_calibset

    if not parity_data:
        return None
    first = Path(parity_data[0])
    if (first / CALIB_FILE).is_file():
        return load_calibset(first, card.spec)[0][:n]
    crops, _ = collect_faces(parity_data, card.spec, n, detector_model=detector_model)
    if not crops:
        raise ConfigError("no face found in the parity data", path=", ".join(map(str, parity_data)),
                          fix="pass --parity-data with folders of face images")
    return preprocess(crops, card.spec)


def export_onnx(ckpt: str | os.PathLike, out: str | os.PathLike | None = None, *, opset: int = 17,
                batch: int | None = None, parity_data: Sequence[str | os.PathLike] | None = None,
                parity_n: int = 32, atol: float = DEFAULT_ATOL, detector_model=None, verbose: bool = True) -> dict:
    """Export; returns ``{"path", "card", "parity": {...}}``. Raises ModelError if ONNX and PyTorch disagree."""
    import warnings

    import onnx
    import torch

    from edge.runtime.engine_cache import sha256_file
    from train.checkpoint import load_checkpoint

    ckpt = Path(ckpt)
    model, card, blob = load_checkpoint(ckpt)
    out = Path(out) if out else ckpt.with_suffix(".onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    x_parity = parity_inputs(card, parity_data, parity_n, detector_model)  # fail before exporting, not after
    if x_parity is None:
        raise ConfigError("the parity check needs real face crops", fix="pass --parity-data FOLDER (face images) "
                          "or a calibration directory (env FFD_PARITY_DATA)")
    s = card.spec.size
    wrapped = prob_fake_module(model)
    x0 = torch.zeros(batch or 2, 3, s, s)
    tmp = out.with_name(out.name + ".raw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(wrapped, (x0,), str(tmp), input_names=["input"], output_names=["score"],
                          opset_version=opset, do_constant_folding=True, dynamo=False,
                          dynamic_axes=None if batch else {"input": {0: "batch"}, "score": {0: "batch"}})
    m = cleanup_graph(onnx.load(str(tmp)))
    tmp.unlink()
    m.producer_name, m.producer_version = "ffd-edge", _version()
    producer = {"ffd": _version(), "torch": torch.__version__, "onnx": onnx.__version__, "opset": opset,
                "checkpoint": ckpt.name, "checkpoint_sha256": sha256_file(ckpt)[:16], "model_name": blob["model_name"],
                "model_kwargs": blob["model_kwargs"], "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "batch": batch or "dynamic"}
    set_metadata(m, card, producer)
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    parity = check_parity(wrapped, out, card, x_parity, atol=atol, batch=batch)
    if verbose:
        print(f"exported {out} ({out.stat().st_size / 1e6:.2f} MB, opset {opset}, batch {batch or 'dynamic'})")
        print(format_parity(parity))
    if not parity["ok"]:
        raise ModelError(f"ONNX and PyTorch disagree: max |diff| {parity['max_abs_diff']:.2e} > atol {atol:.0e}",
                         path=out, fix="check for export-unfriendly ops in the model, or raise --atol knowingly")
    return {"path": str(out), "card": card, "parity": parity}


def check_parity(torch_model, onnx_path, card: ModelCard, x: np.ndarray, *, atol: float = DEFAULT_ATOL,
                 batch: int | None = None) -> dict:
    """ONNX Runtime's scores against PyTorch's on the same batch: :func:`edge.runtime.compare.compare_scores`."""
    import torch

    from edge.runtime.compare import compare_scores
    from edge.runtime.ort import OrtRunner

    with torch.no_grad():
        ref = torch_model(torch.from_numpy(x)).numpy().astype(np.float32)
    with OrtRunner(onnx_path, max_batch=batch) as r:
        got = r.infer(x)
    return compare_scores(ref, got, card, atol=atol)


def format_parity(p: dict) -> str:
    return (f"parity vs PyTorch on {p['n']} real faces: max |diff| {p['max_abs_diff']:.2e}, "
            f"mean {p['mean_abs_diff']:.2e}, "
            f"label agreement {p['label_agreement']:.1%} (atol {p['atol']:.0e}: {'ok' if p['ok'] else 'FAILED'})")


def _version() -> str:
    from edge import __version__

    return __version__
