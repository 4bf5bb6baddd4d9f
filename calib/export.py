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

Heatmaps (``heatmap=None``, the default: on for every model whose head is global-average-pool +
linear -- the MobileNetV2 / EfficientNet-Lite students and ``StudentNet``): a second output
``features`` = the last feature map before pooling (N, C, h, w), and the head's class weight
vector (``w_fake - w_real`` for two logits, the single logit's weight for one) and bias in
``card.extra["heatmap"]``. Since the head is linear after an average, the class-activation map
``CAM = sum_c w_c F_c`` satisfies ``mean_hw(CAM) + bias == logit(score)`` exactly
(:mod:`edge.heatmap`); :func:`cam_head` checks that identity on the model before exporting.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.errors import ConfigError, ModelError
from edge.heatmap import HEATMAP_KEY  # card.extra key of the CAM head (output name, class weights, bias)
from edge.spec import META_KEY, ModelCard

PRODUCER_KEY = "ffd.producer"
DEFAULT_ATOL = 1e-4
FEATURES_OUTPUT = "features"  # the optional second output: the last feature map before pooling


def prob_fake(y):
    """Logits (N,2) or (N,1) -> P(fake) (N,): two logits -> ``sigmoid(l1 - l0)`` = softmax[:, 1], one -> sigmoid."""
    import torch

    if y.shape[-1] == 2:
        return torch.sigmoid(y[:, 1] - y[:, 0])  # = softmax(y)[:, 1], two ops fewer
    if y.shape[-1] == 1:
        return torch.sigmoid(y[:, 0])
    raise ModelError(f"model outputs {y.shape[-1]} logits; expected 2 (real, fake) or 1 (fake)",
                     fix="export a binary real/fake classifier")


def prob_fake_module(model):
    """Wrap a classifier (logits (N,2) or (N,1)) so it outputs P(fake) with shape (N,)."""
    import torch

    class ProbFake(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, x):
            return prob_fake(self.model(x))

    return ProbFake(model).eval()


def cam_head(model, size: int = 64):
    """``(w, b)`` (float64 numpy: the fake-class weight vector over channels and bias) when ``model``'s head is
    global-average-pool + linear, else ``None``.

    The head is found by name (``head.fc`` of StudentNet, ``classifier[-1]`` of MobileNetV2, ``_fc`` of
    EfficientNet-Lite) and then *checked*: on a random batch, ``forward`` must equal the linear layer applied to
    the spatial mean of ``forward_features`` (a head with anything else between the two gets no heatmap).
    """
    import torch

    if not (hasattr(model, "forward_features") and hasattr(model, "forward_head")):
        return None
    fc = None
    head = getattr(model, "head", None)
    for cand in (getattr(head, "fc", None), getattr(model, "_fc", None),
                 getattr(model, "classifier", None)[-1] if isinstance(getattr(model, "classifier", None),
                                                                      torch.nn.Sequential) else None):
        if isinstance(cand, torch.nn.Linear):
            fc = cand
            break
    if fc is None or fc.out_features not in (1, 2):
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = torch.randn(2, getattr(model, "in_chans", 3), size, size, generator=torch.Generator().manual_seed(0))
            f = model.forward_features(x)
            if not isinstance(f, torch.Tensor) or f.ndim != 4 or f.shape[1] != fc.in_features:
                return None
            y, ref = model(x), fc(f.mean(dim=(2, 3)))
            if y.shape != ref.shape or not torch.allclose(y, ref, rtol=1e-4, atol=1e-4):
                return None
    finally:
        model.train(was_training)
    w = fc.weight.detach().double().numpy()
    b = fc.bias.detach().double().numpy() if fc.bias is not None else np.zeros(fc.out_features)
    if fc.out_features == 2:
        return w[1] - w[0], float(b[1] - b[0])
    return w[0], float(b[0])


def prob_fake_features_module(model):
    """:func:`prob_fake_module` that also outputs the last feature map: ``(score (N,), features (N,C,h,w))``."""
    import torch

    class ProbFakeFeatures(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.model = m

        def forward(self, x):
            f = self.model.forward_features(x)
            return prob_fake(self.model.forward_head(f)), f

    return ProbFakeFeatures(model).eval()


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
                parity_n: int = 32, atol: float = DEFAULT_ATOL, detector_model=None, verbose: bool = True,
                heatmap: bool | None = None) -> dict:
    """Export; returns ``{"path", "card", "parity": {...}, "heatmap": bool}``. Raises ModelError if ONNX and
    PyTorch disagree.

    ``heatmap``: ``None`` (default) adds the ``features`` output and the CAM head to the card when the model's
    head is global-average-pool + linear (:func:`cam_head`), ``True`` requires it (ConfigError otherwise),
    ``False`` exports the score output only.
    """
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
    head = cam_head(model, s) if heatmap is not False else None
    if heatmap and head is None:
        raise ConfigError(f"{blob['model_name']} has no global-average-pool + linear head, so its class-activation "
                          "map is not exact", path=ckpt, fix="export it without --heatmap")
    outputs = ["score"] + ([FEATURES_OUTPUT] if head is not None else [])
    if head is None and HEATMAP_KEY in card.extra:  # a card never names an output its graph lacks
        card = card.replace(extra={k: v for k, v in card.extra.items() if k != HEATMAP_KEY})
    if head is not None:
        with torch.no_grad():
            grid = model.forward_features(torch.zeros(1, 3, s, s)).shape
        card = card.replace(extra={**card.extra, HEATMAP_KEY: {
            "output": FEATURES_OUTPUT, "kind": "cam-gap-linear", "channels": int(grid[1]),
            "grid": [int(grid[2]), int(grid[3])], "weights": [float(v) for v in head[0]], "bias": float(head[1])}})
    wrapped = prob_fake_module(model)
    exported = prob_fake_features_module(model) if head is not None else wrapped
    x0 = torch.zeros(batch or 2, 3, s, s)
    tmp = out.with_name(out.name + ".raw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(exported, (x0,), str(tmp), input_names=["input"], output_names=outputs,
                          opset_version=opset, do_constant_folding=True, dynamo=False,
                          dynamic_axes=None if batch else {"input": {0: "batch"}, **{o: {0: "batch"} for o in outputs}})
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
        if head is not None:
            print(f"heatmap: output '{FEATURES_OUTPUT}' {tuple(card.extra[HEATMAP_KEY]['grid'])} x "
                  f"{card.extra[HEATMAP_KEY]['channels']} channels, CAM head in the card (edge.heatmap)")
    if not parity["ok"]:
        raise ModelError(f"ONNX and PyTorch disagree: max |diff| {parity['max_abs_diff']:.2e} > atol {atol:.0e}",
                         path=out, fix="check for export-unfriendly ops in the model, or raise --atol knowingly")
    return {"path": str(out), "card": card, "parity": parity, "heatmap": head is not None}


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
