"""Detection metrics in plain numpy (no torch, no sklearn).

Scores are P(fake) (class 1 = fake). AUC is the Mann-Whitney rank statistic with average
ranks for ties (equal to the trapezoidal ROC area); EER is the point where the false-positive
rate equals the miss rate, linearly interpolated on the ROC; AP is the step-wise average
precision (sum over positives of the precision at their rank, ties grouped), as in sklearn's
``average_precision_score``. Video-level metrics average the frame scores of a group.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from edge.errors import DatasetError


def _arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(np.int64)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length ({s.shape[0]} vs {y.shape[0]})")
    return s, y


def _need_both(y: np.ndarray, what: str) -> None:
    if not (np.any(y == 1) and np.any(y == 0)):
        raise DatasetError(f"{what} needs both real and fake samples (got {int((y == 0).sum())} real, "
                           f"{int((y == 1).sum())} fake)", fix="evaluate on data that holds both classes")


def rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based), ties share the mean rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    ranks = np.empty(len(x), np.float64)
    i = 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def auc(scores, labels) -> float:
    s, y = _arrays(scores, labels)
    _need_both(y, "AUC")
    r = rankdata(s)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    return float((r[y == 1].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_curve(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> (fpr, tpr, thresholds) with a leading (0, 0) point; thresholds decreasing."""
    s, y = _arrays(scores, labels)
    _need_both(y, "ROC")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y == 1)[distinct]
    fps = np.cumsum(y == 0)[distinct]
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    return fpr, tpr, np.r_[np.inf, s[distinct]]


def eer(scores, labels) -> float:
    fpr, tpr, _ = roc_curve(scores, labels)
    fnr = 1.0 - tpr
    diff = fpr - fnr  # increasing from -1 to 1
    i = int(np.searchsorted(diff, 0.0))
    if i == 0:
        return float(fpr[0])
    d0, d1 = diff[i - 1], diff[i]
    w = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(fpr[i - 1] + w * (fpr[i] - fpr[i - 1]))


def average_precision(scores, labels) -> float:
    s, y = _arrays(scores, labels)
    _need_both(y, "AP")
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps = np.cumsum(y == 1)[distinct].astype(np.float64)
    fps = np.cumsum(y == 0)[distinct].astype(np.float64)
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def accuracy(scores, labels, threshold: float = 0.5) -> float:
    s, y = _arrays(scores, labels)
    if len(y) == 0:
        return float("nan")
    return float(np.mean((s >= threshold).astype(np.int64) == y))


def binary_metrics(scores, labels, threshold: float = 0.5) -> dict[str, float]:
    """AUC, ACC (at ``threshold``), balanced ACC, EER, AP and counts."""
    s, y = _arrays(scores, labels)
    pred = s >= threshold
    out = {"n": int(len(y)), "n_real": int((y == 0).sum()), "n_fake": int((y == 1).sum()),
           "acc": accuracy(s, y, threshold)}
    if out["n_real"] and out["n_fake"]:
        out["balanced_acc"] = float((np.mean(pred[y == 1]) + np.mean(~pred[y == 0])) / 2)
        out.update(auc=auc(s, y), eer=eer(s, y), ap=average_precision(s, y))
    return out


def aggregate_by_group(scores, labels, groups: Sequence[str]) -> tuple[np.ndarray, np.ndarray, list[tuple[str, int]]]:
    """Video-level scores: mean of the frame scores per (group, label). Keying on the label too
    keeps a real video and the fakes made from it apart when a reader puts them in one group."""
    s, y = _arrays(scores, labels)
    g = list(groups)
    if len(g) != len(s):
        raise ValueError("groups and scores differ in length")
    index: dict[tuple[str, int], list[int]] = {}
    for i, (name, label) in enumerate(zip(g, y.tolist())):
        index.setdefault((str(name), int(label)), []).append(i)
    keys = sorted(index)
    out_s = np.array([s[index[k]].mean() for k in keys], np.float64)
    out_y = np.array([k[1] for k in keys], np.int64)
    return out_s, out_y, keys
