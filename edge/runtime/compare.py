"""Compare two runners on the same batch (after Polygraphy's comparator).

``compare_runners(a, b, batch)`` runs one preprocessed batch through both backends and
reports the largest absolute score difference and how often they agree on the label at
each runner's own threshold (e.g. TensorRT INT8 engine vs ONNX Runtime FP32 reference).
"""
from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import Runner


def compare_runners(a: Runner, b: Runner, batch: np.ndarray, atol: float | None = None) -> dict:
    """Scores of ``a`` and ``b`` on ``batch``: max/mean absolute difference and label agreement.

    ``ok`` is present when ``atol`` is given: ``max_abs_diff <= atol``.
    """
    sa = np.asarray(a.infer(batch), np.float32).reshape(-1)
    sb = np.asarray(b.infer(batch), np.float32).reshape(-1)
    if sa.shape != sb.shape:
        raise ConfigError(f"runners returned {sa.shape} and {sb.shape} scores for one batch")
    diff = np.abs(sa - sb)
    la = sa >= a.card.threshold
    lb = sb >= b.card.threshold
    out = {
        "runners": [a.name, b.name],
        "n": int(sa.size),
        "max_abs_diff": float(diff.max()) if diff.size else 0.0,
        "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
        "agreement": float((la == lb).mean()) if diff.size else 1.0,
        "disagree_idx": np.flatnonzero(la != lb).tolist(),
    }
    if atol is not None:
        out["ok"] = out["max_abs_diff"] <= atol
    return out
