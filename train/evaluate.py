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
    return {"params": count_params(model), "flops": flops, "gflops": flops / 1e9, "macs": flops // 2,
            "input_size": size}


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
    """The ``split`` part of one dataset, exactly as a training run splits that source
    (:func:`train.sources.split_source`: official held-out people are its test part)."""
    if split in (None, "", "all"):
        return samples
    from .sources import split_source

    if split not in ("train", "val", "test"):
        raise ConfigError(f"split must be all, train, val or test, got {split!r}")
    part = split_source(samples, val=val, test=test, seed=seed)[split]
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
    from .sources import _default_name, parse_source_arg, video_key

    # each dataset split on its own, exactly as training splits its sources (train.sources)
    samples, names = [], []
    for p in paths:
        name, arg = parse_source_arg(p)
        part = select_split(load_pooled([arg], max_per_class, seed), split, seed=seed, val=val, test=test)
        samples += part
        names += [name or _default_name(arg)] * len(part)
    labels = np.array([s.label for s in samples], np.int64)
    if not (np.any(labels == 0) and np.any(labels == 1)):
        have = "real" if np.any(labels == 0) else "fake"
        raise DatasetError(f"evaluation data holds only {have} faces ({len(labels)}); AUC/EER need both classes",
                           path=paths[0], fix="add the other class, e.g. a real:/fake: folder or a real/ fake/ dataset")
    dev = resolve_device(device)
    loader = make_loader(FaceDataset(samples, card.spec), batch_size, train=False)
    scores, _ = predict_scores(model.to(dev), loader, dev)
    videos = [video_key(s) for s in samples]
    report = metrics_report(scores, labels, [s.method for s in samples], videos, card.threshold)
    # per dataset, never only pooled: the pooled figures above hide a source at chance
    src = np.array(names, dtype=object)
    sets = {n: (scores[src == n], labels[src == n], [s for s, k in zip(samples, src == n) if k])
            for n in dict.fromkeys(names)}
    report["per_source"] = report_sets({n: v for n, v in sets.items() if len(set(v[1].tolist())) == 2}, card.threshold)
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


# --- per-source evaluation (never pooled) ------------------------------------------------------
def score_sets(model, spec, sets: dict[str, list], *, device: str = "cpu", batch_size: int = 128,
               sbi_seed: int = 10_007) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """name -> (scores, labels, samples); the ``sbi`` set's real faces also yield their fixed
    self-blended fakes (seed ``sbi_seed``), as in training's validation."""
    from .data import FaceDataset
    from .sbi import SBIConfig
    from .sources import SBI_SET
    from .trainer import make_loader, predict_scores, resolve_device

    dev = resolve_device(device)
    model = model.to(dev).eval()
    out = {}
    for name, items in sets.items():
        ds = FaceDataset(items, spec, sbi=SBIConfig() if name == SBI_SET else None, seed=sbi_seed)
        s, y = predict_scores(model, make_loader(ds, batch_size, train=False), dev)
        out[name] = (s, y, [ds.sample(i) for i in range(len(ds))])
    return out


def report_sets(scored: dict[str, tuple[np.ndarray, np.ndarray, list]], threshold: float) -> dict[str, Any]:
    """Frame- and video-level metrics per set (:func:`train.sources.video_key` groups videos)."""
    from .sources import video_key

    rep: dict[str, Any] = {}
    for name, (s, y, samples) in scored.items():
        videos = [video_key(x) + ("#sbi" if x.method == "sbi" else "") for x in samples]
        r = metrics_report(s, y, [x.method for x in samples], videos, threshold)
        r["n_real"], r["n_fake"] = int((y == 0).sum()), int((y == 1).sum())
        r["n_videos"] = len(set(zip(videos, y.tolist())))
        rep[name] = r
    return rep


def evaluate_sets(ckpt: str | os.PathLike, sets: dict[str, list], *, device: str = "cpu",
                  batch_size: int = 128) -> dict[str, Any]:
    """A checkpoint on named sample sets -> ``{name: report}`` (see :func:`report_sets`)."""
    from .checkpoint import load_checkpoint

    model, card, _ = load_checkpoint(ckpt)
    return report_sets(score_sets(model, card.spec, sets, device=device, batch_size=batch_size), card.threshold)


def summary_figures(report: dict[str, Any]) -> dict[str, dict[str, float]]:
    """The short per-source figures a model card carries: frame/video AUC and counts."""
    return {k: {"frame_auc": round(float(v["frame"]["auc"]), 4), "video_auc": round(float(v["video"]["auc"]), 4),
                "n_real": v["n_real"], "n_fake": v["n_fake"]} for k, v in report.items()}


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table: one row per source, frame and video AUC / balanced ACC."""
    rows = [f"{'source':<14}{'faces':>7}{'videos':>7}{'frame AUC':>10}{'video AUC':>10}{'frame bACC':>11}"]
    for k, v in report.items():
        rows.append(f"{k:<14}{v['n_real'] + v['n_fake']:>7}{v['n_videos']:>7}{v['frame']['auc']:>10.4f}"
                    f"{v['video']['auc']:>10.4f}{v['frame'].get('balanced_acc', float('nan')):>11.4f}")
    return "\n".join(rows)


def record_in_checkpoint(ckpt: str | os.PathLike, report: dict[str, Any], key: str = "test") -> None:
    """Store the per-source figures in the checkpoint's card (``card.extra["eval"][key]``)."""
    from .checkpoint import update_card

    update_card(ckpt, lambda extra: {**extra, "eval": {**extra.get("eval", {}), key: summary_figures(report)}})
