"""The one comparator of two score vectors (after Polygraphy's comparator): backend parity
(TensorRT vs ONNX Runtime), export parity (ONNX Runtime vs PyTorch, ``ffd export``) and INT8
agreement (each INT8 flavour vs FP32, ``ffd quantize``) all report through :func:`compare_scores`.

Its keys, the same everywhere: ``n``, ``max_abs_diff``, ``mean_abs_diff``, ``label_agreement``
(the share of faces given the same label, each side labelled by its card's
:meth:`~edge.spec.ModelCard.label`: threshold and uncertain band), ``disagree_idx`` (the faces
labelled differently) and, when a tolerance is given, ``atol`` and ``ok`` (``max_abs_diff <= atol``).
:func:`compare_runners` runs one preprocessed batch through two runners and adds ``runners``.
Numpy only: calibration (``calib/``) imports it without pulling in anything heavier.
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..spec import ModelCard
from .base import Runner


def compare_scores(ref, got, card: ModelCard, *, card_got: ModelCard | None = None,
                   atol: float | None = None) -> dict:
    """``got`` against the reference ``ref`` (one P(fake) per face); ``card_got`` labels ``got`` (default ``card``)."""
    a = np.asarray(ref, np.float32).reshape(-1)
    b = np.asarray(got, np.float32).reshape(-1)
    if a.shape != b.shape:
        raise ConfigError(f"the two sides gave {a.size} and {b.size} scores for the same faces")
    diff = np.abs(a - b)
    la = np.asarray([card.label(float(s)) for s in a])
    lb = np.asarray([(card_got or card).label(float(s)) for s in b])
    out = {
        "n": int(a.size),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "label_agreement": float((la == lb).mean()) if diff.size else 1.0,
        "disagree_idx": np.flatnonzero(la != lb).tolist(),
    }
    if atol is not None:
        out.update(atol=atol, ok=bool(out["max_abs_diff"] <= atol))
    return out


def compare_runners(a: Runner, b: Runner, batch: np.ndarray, atol: float | None = None) -> dict:
    """:func:`compare_scores` of ``b`` against ``a`` on one preprocessed ``batch`` (each labelled by its own card)."""
    out = compare_scores(a.infer(batch), b.infer(batch), a.card, card_got=b.card, atol=atol)
    return {"runners": [a.name, b.name], **out}
