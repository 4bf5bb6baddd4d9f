"""Confidence-calibrated decision thresholds (numpy; torch only to score checkpoints).

FFDBackbone ("Rethinking Backbone Design for Face Forgery Detection", TPAMI 2026) argues that
the fixed 0.5 cut is unreliable for a detector trained on one forgery distribution and
deployed on another, and picks the decision threshold from the model's prediction
confidence on held-out data. Here the rule is explicit and reproducible:

**Threshold** (on ``score = P(fake)``; a face is "fake" when ``score >= threshold``):

* ``rule="balanced_accuracy"`` (default): maximise ``BA(t) = (TPR(t) + TNR(t)) / 2`` over all
  cut points between consecutive distinct validation scores; when several cut points tie,
  take the middle of the tied run (the widest-margin choice). Balanced accuracy is used
  instead of accuracy so the threshold does not drift with the class ratio of the split.
* ``rule="target_fpr"``: the smallest threshold whose false-positive rate on real faces
  (real faces called fake) is ``<= target_fpr``; i.e. just above the
  ``ceil((1 - target_fpr) * n_real)``-th smallest real score. Use when false alarms cost
  more than misses (screening many genuine faces).

**Uncertain band** (half-width ``w``; the card reports "uncertain" when
``|score - threshold| < w``, see :meth:`edge.spec.ModelCard.label`): selective
classification. ``w`` is the *smallest* half-width such that the decisions left outside the
band reach balanced accuracy ``>= min_confident_accuracy`` (default 0.9), searched over the
distances ``|score - threshold|`` of the validation faces, and capped so that at most
``max_uncertain_fraction`` (default 0.2) of the validation faces become uncertain. If the
decisions already reach the target at ``w = 0`` the band is 0 (no abstention); if the cap
binds, the band is the cap and ``metrics["band_capped"]`` is true. Passing
``uncertain_band=`` explicitly skips the rule.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import CalibrationError, ConfigError

RULES = ("balanced_accuracy", "target_fpr")


@dataclass(frozen=True)
class ThresholdResult:
    threshold: float
    uncertain_band: float
    metrics: dict[str, Any] = field(default_factory=dict)


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel()
    if s.shape != y.shape:
        raise CalibrationError(f"{s.size} scores but {y.size} labels")
    if not np.all(np.isfinite(s)):
        raise CalibrationError("scores contain NaN or inf", fix="check the model output")
    if not np.isin(y, (0, 1)).all():
        raise CalibrationError("labels must be 0 (real) or 1 (fake)")
    y = y.astype(np.int64)
    if (y == 0).sum() == 0 or (y == 1).sum() == 0:
        raise CalibrationError(f"threshold calibration needs both classes (got {(y == 0).sum()} real, "
                               f"{(y == 1).sum()} fake)", fix="use a validation split with real and fake faces")
    return s, y


def rates(scores, labels, threshold: float) -> dict[str, float]:
    """TPR, TNR, FPR, accuracy and balanced accuracy of ``score >= threshold`` -> fake."""
    s, y = _check(scores, labels)
    pred = s >= threshold
    tpr = float(pred[y == 1].mean())
    tnr = float((~pred[y == 0]).mean())
    return {"tpr": tpr, "tnr": tnr, "fpr": 1.0 - tnr, "accuracy": float((pred == (y == 1)).mean()),
            "balanced_accuracy": 0.5 * (tpr + tnr)}


def _candidates(s: np.ndarray) -> np.ndarray:
    """Cut points: below all, between consecutive distinct scores, above all."""
    u = np.unique(s)
    mids = (u[:-1] + u[1:]) / 2 if u.size > 1 else np.empty(0)
    return np.concatenate([[u[0] - 1e-6], mids, [u[-1] + 1e-6]])


def balanced_accuracy_curve(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    """-> (cut points, balanced accuracy at each), computed in O(n log n) by sorting."""
    s, y = _check(scores, labels)
    t = _candidates(s)
    s_real, s_fake = np.sort(s[y == 0]), np.sort(s[y == 1])
    tnr = np.searchsorted(s_real, t, side="left") / s_real.size  # real with score < t
    tpr = 1.0 - np.searchsorted(s_fake, t, side="left") / s_fake.size  # fake with score >= t
    return t, 0.5 * (tpr + tnr)


def _balanced_threshold(s, y) -> float:
    t, ba = balanced_accuracy_curve(s, y)
    best = np.flatnonzero(ba >= ba.max() - 1e-12)
    # ties: the middle of the longest contiguous run of optimal cut points
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    run = max(runs, key=len)
    return float((t[run[0]] + t[run[-1]]) / 2)


def _fpr_threshold(s, y, target_fpr: float) -> float:
    real = np.sort(s[y == 0])
    n = real.size
    allowed = math.floor(target_fpr * n + 1e-9)  # real faces that may score >= t
    if allowed >= n:
        return float(_candidates(s)[0])
    # the cut point right after the (n - allowed)-th smallest real score: at most `allowed` reals stay >= t
    k_score = real[n - allowed - 1]
    higher = s[s > k_score]
    return float((k_score + higher.min()) / 2) if higher.size else float(k_score + 1e-6)


def _band(s, y, threshold, min_acc, max_frac) -> tuple[float, bool]:
    d = np.abs(s - threshold)
    order = np.sort(np.unique(d))
    max_n = math.floor(max_frac * s.size + 1e-9)
    cap_w = 0.0
    for w in np.concatenate([[0.0], order]):
        keep = d >= w
        if (~keep).sum() > max_n:
            return float(cap_w), True
        cap_w = w
        yk, pk = y[keep], s[keep] >= threshold
        if (yk == 0).any() and (yk == 1).any():
            ba = 0.5 * (pk[yk == 1].mean() + (~pk[yk == 0]).mean())
        else:  # one class left: plain accuracy
            ba = float((pk == (yk == 1)).mean()) if yk.size else 1.0
        if ba >= min_acc - 1e-12:
            return float(w), False
    return float(cap_w), True


def _check_options(rule: str, target_fpr: float, uncertain_band: float | None, max_uncertain_fraction: float) -> None:
    if rule not in RULES:
        raise ConfigError(f"unknown threshold rule {rule!r}; known: {', '.join(RULES)}")
    if not 0.0 <= target_fpr < 1.0:
        raise ConfigError(f"target_fpr must be in [0, 1), got {target_fpr}")
    if not 0.0 <= max_uncertain_fraction < 1.0:
        raise ConfigError(f"max_uncertain_fraction must be in [0, 1), got {max_uncertain_fraction}")
    if uncertain_band is not None and uncertain_band < 0:
        raise ConfigError(f"uncertain_band must be >= 0, got {uncertain_band}")


def calibrate_threshold(scores: Sequence[float], labels: Sequence[int], rule: str = "balanced_accuracy",
                        target_fpr: float = 0.05, uncertain_band: float | None = None,
                        min_confident_accuracy: float = 0.9, max_uncertain_fraction: float = 0.2) -> ThresholdResult:
    """Pick the threshold (and the uncertain band) on validation scores; see the module docstring."""
    _check_options(rule, target_fpr, uncertain_band, max_uncertain_fraction)
    s, y = _check(scores, labels)
    t = _balanced_threshold(s, y) if rule == "balanced_accuracy" else _fpr_threshold(s, y, target_fpr)
    capped = False
    if uncertain_band is None:
        band, capped = _band(s, y, t, min_confident_accuracy, max_uncertain_fraction)
    else:
        band = float(uncertain_band)
    at_t, at_half = rates(s, y, t), rates(s, y, 0.5)
    unc = np.abs(s - t) < band
    metrics = {
        "rule": rule, "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
        **at_t,
        **{f"{k}_at_0.5": v for k, v in at_half.items()},
        "uncertain_fraction": float(unc.mean()), "band_capped": bool(capped),
        "min_confident_accuracy": min_confident_accuracy, "max_uncertain_fraction": max_uncertain_fraction,
    }
    if rule == "target_fpr":
        metrics["target_fpr"] = target_fpr
    if (~unc).any():
        yk, pk = y[~unc], s[~unc] >= t
        metrics["confident_accuracy"] = float((pk == (yk == 1)).mean())
    return ThresholdResult(float(t), band, metrics)


# --- checkpoints -----------------------------------------------------------------------------
def score_samples(model, samples, spec, *, batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """P(fake) for each labelled sample (``.path`` to a ready face crop), in order.

    Crops go through :class:`train.data.FaceDataset` (``edge.spec.preprocess``, no augmentation)
    and :func:`train.trainer.predict_scores`; ``device`` may be ``"auto"``.
    """
    from .data import FaceDataset
    from .trainer import make_loader, predict_scores, resolve_device

    dev = resolve_device(device)
    model.eval().to(dev)
    return predict_scores(model, make_loader(FaceDataset(samples, spec), batch_size, train=False), dev)[0]


def apply_to_checkpoint(ckpt_path: str | os.PathLike, data, *, rule: str = "balanced_accuracy",
                        target_fpr: float = 0.05, uncertain_band: float | None = None,
                        min_confident_accuracy: float = 0.9, max_uncertain_fraction: float = 0.2,
                        out: str | os.PathLike | None = None, split: str | None = "val", seed: int = 0,
                        batch_size: int = 64, device: str = "cpu") -> ThresholdResult:
    """Score a validation set with the checkpoint, calibrate, and write threshold + band into its card.

    ``data`` is a dataset path (any layout :func:`train.data.load_samples` reads) or a list of
    samples. With ``split="val"`` (default) a path is split with :func:`train.data.split_samples`
    (``seed``) and only its validation part is used, so the test part stays untouched; pass
    ``split=None`` when ``data`` already is a validation set. The card keeps the rule and the
    validation metrics in ``extra["threshold_calibration"]``; ``out`` defaults to overwriting
    ``ckpt_path`` (atomically).
    """
    from .checkpoint import load_checkpoint, save_checkpoint

    _check_options(rule, target_fpr, uncertain_band, max_uncertain_fraction)  # before the slow scoring
    model, card, blob = load_checkpoint(ckpt_path)
    samples = _validation_samples(data, split, seed)
    labelled = [s for s in samples if s.label in (0, 1)]
    if not labelled:
        raise CalibrationError("no labelled faces to calibrate on",
                               path=str(data) if not isinstance(data, list) else None,
                               fix="pass a validation set with real and fake faces")
    scores = score_samples(model, labelled, card.spec, batch_size=batch_size, device=device)
    res = calibrate_threshold(scores, [s.label for s in labelled], rule=rule, target_fpr=target_fpr,
                              uncertain_band=uncertain_band, min_confident_accuracy=min_confident_accuracy,
                              max_uncertain_fraction=max_uncertain_fraction)
    extra = dict(card.extra)
    extra["threshold_calibration"] = {**res.metrics, "threshold": res.threshold, "uncertain_band": res.uncertain_band,
                                      "data": str(data) if not isinstance(data, list) else f"{len(data)} samples",
                                      "split": split, "seed": seed}
    new_card = card.replace(threshold=res.threshold, uncertain_band=res.uncertain_band, extra=extra)
    save_checkpoint(Path(out) if out is not None else Path(ckpt_path), model, new_card,
                    model_kwargs=blob["model_kwargs"], config=blob["config"], metrics=blob["metrics"],
                    train_state=blob.get("train_state"))
    return res


def _validation_samples(data, split: str | None, seed: int) -> list:
    """Samples to calibrate on: given samples as they are; dataset path(s) split per source as a
    training run splits them (:mod:`train.sources`), the ``split`` part of each."""
    from .data import Sample

    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if items and all(isinstance(x, Sample) for x in items):
        return items
    from .recipes import load_pooled
    from .sources import load_sources

    if split is None:
        return load_pooled(items)
    return [s for src in load_sources(items, seed=seed) for s in src.parts[split]]
