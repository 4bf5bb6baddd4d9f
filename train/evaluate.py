"""``ffd eval``: frame- and video-level AUC / ACC / EER / AP, per manipulation method, with
params and FLOPs, written as JSON and an ROC plot.

* frame level: one score per face crop, ACC at the checkpoint card's threshold;
* video level: mean of the frame scores of each (video, label) -- the video is the sample's
  ``source`` if it has one, else its ``group``;
* per method: every fake method against all real faces (AUC etc. of "method m vs real").

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (conv, linear, matmul,
bmm, attention at the aten level, so a ViT's matmuls count too) for one input at the spec's
size; ``macs = flops / 2``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.errors import ConfigError, DatasetError

from .metrics import aggregate_by_group, binary_metrics, roc_curve


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def count_flops(model, size: int, in_chans: int = 3) -> int:
    """FLOPs (2 x multiply-accumulates) of one forward pass of a (1, in_chans, size, size) input."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    was = model.training
    model.eval()
    dev = next(model.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, in_chans, size, size, device=dev))
    model.train(was)
    return int(fc.get_total_flops())


def model_cost(model, size: int) -> dict[str, float]:
    flops = count_flops(model, size, getattr(model, "in_chans", 3))
    return {"params": count_params(model), "flops": flops, "gflops": flops / 1e9, "macs": flops // 2, "input_size": size}


def metrics_report(scores: np.ndarray, labels: np.ndarray, methods: Sequence[str], videos: Sequence[str],
                   threshold: float) -> dict[str, Any]:
    """Frame, video and per-method metrics from per-frame scores (numpy only)."""
    labels = np.asarray(labels, np.int64)
    methods = np.asarray(list(methods), dtype=object)
    rep: dict[str, Any] = {"frame": binary_metrics(scores, labels, threshold)}
    vs, vy, _ = aggregate_by_group(scores, labels, videos)
    rep["video"] = binary_metrics(vs, vy, threshold)
    per: dict[str, Any] = {}
    real = labels == 0
    for m in sorted(set(methods[labels == 1].tolist())):
        sel = real | ((labels == 1) & (methods == m))
        per[m or "fake"] = binary_metrics(scores[sel], labels[sel], threshold)
    rep["per_method"] = per
    return rep


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: str | os.PathLike, title: str = "") -> Path:
    """``curves``: label -> (fpr, tpr, auc). Writes a PNG with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5), dpi=120)
    for name, (fpr, tpr, a) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUC {a:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title=title)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def select_split(samples: list, split: str | None, *, seed: int = 0, val: float = 0.1, test: float = 0.2) -> list:
    if split in (None, "", "all"):
        return samples
    from .data import split_samples

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be all, train, val or test, got {split!r}")
    part = split_samples(samples, val=val, test=test, seed=seed)[split]
    if not part:
        raise DatasetError(f"the {split} split is empty", fix="evaluate on more data or with --split all")
    return part


def evaluate(ckpt: str | os.PathLike, data: Sequence[str | os.PathLike] | str | os.PathLike, *,
             out: str | os.PathLike | None = None, roc: str | os.PathLike | None = None, split: str | None = None,
             seed: int = 0, val: float = 0.1, test: float = 0.2, batch_size: int = 64, device: str = "cpu",
             max_per_class: int | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint on ``data`` (one path or several; ``real:``/``fake:`` prefixes as in
    :mod:`train.recipes`). ``split="test"`` with the training ``seed``/``val``/``test`` evaluates
    exactly the held-out part of a training run. Returns the report; writes JSON / PNG if asked."""
    from .checkpoint import load_checkpoint
    from .data import FaceDataset
    from .recipes import load_pooled
    from .trainer import make_loader, predict_scores, resolve_device

    model, card, blob = load_checkpoint(ckpt)
    paths = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    samples = select_split(load_pooled(paths, max_per_class, seed), split, seed=seed, val=val, test=test)
    labels = np.array([s.label for s in samples], np.int64)
    if not (np.any(labels == 0) and np.any(labels == 1)):
        have = "real" if np.any(labels == 0) else "fake"
        raise DatasetError(f"evaluation data holds only {have} faces ({len(labels)}); AUC/EER need both classes",
                           path=paths[0], fix="add the other class, e.g. a real:/fake: folder or a real/ fake/ dataset")
    dev = resolve_device(device)
    loader = make_loader(FaceDataset(samples, card.spec), batch_size, train=False)
    scores, _ = predict_scores(model.to(dev), loader, dev)
    videos = [s.source or s.group for s in samples]
    report = metrics_report(scores, labels, [s.method for s in samples], videos, card.threshold)
    model.cpu()
    report.update(checkpoint=str(ckpt), model=card.name, threshold=card.threshold, spec=card.spec.to_dict(),
                  data=[str(p) for p in paths], split=split or "all", cost=model_cost(model, card.spec.size),
                  train_metrics=blob.get("metrics", {}))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=1, default=float))
    if roc:
        fpr, tpr, _ = roc_curve(scores, labels)
        curves = {"frame": (fpr, tpr, report["frame"]["auc"])}
        vs, vy, _ = aggregate_by_group(scores, labels, videos)
        if len(vs) < len(scores):
            f2, t2, _ = roc_curve(vs, vy)
            curves["video"] = (f2, t2, report["video"]["auc"])
        plot_roc(curves, roc, title=card.name)
        report["roc_png"] = str(roc)
    return report
