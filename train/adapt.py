"""Adapting a deployed detector to a new forgery type without the source data (FReTAL).

Kim, Tariq & Woo, "FReTAL: Generalizing Deepfake Detection using Knowledge Distillation
and Representation Learning" (CVPR Workshops 2021). The current model becomes a frozen
teacher (deep copy, eval mode, ``requires_grad=False``); a copy of it, the student, is
trained on a small *target-domain* set only. The loss is

    L = (1 - alpha) * CE(s, y) + alpha * T^2 * KL(softmax(t / T) || softmax(s / T)) + beta * L_rep

with ``T = 20`` and ``alpha = 0.5`` as in the paper. ``L_rep`` is the feature representation
transfer: the samples of the batch that the *teacher* classifies correctly are grouped by
(class, teacher confidence bin), the bins being [0.5, 0.6), [0.6, 0.7), ..., [0.9, 1.0] of the
teacher's probability of the true class; per group the globally average-pooled last feature
maps (``forward_features``) are averaged, and the student's group means are pulled to the
teacher's with the squared error, ``L_rep = mean_groups mean_channels (f_s - f_t)^2`` over the
groups present in the batch. The baselines are ``finetune`` (CE only) and ``finetune_kd``
(CE + logit KD, no ``L_rep``).

The adapter reads no source-domain data: :func:`adapt` has no parameter for it and ``ffd
adapt`` takes only ``--target``. Source data may be used afterwards for evaluation only,
in :func:`forgetting_report` (before/after AUC on a source and a target evaluation set).
The adapted checkpoint is a normal checkpoint of the same registered model: the model card
keeps its preprocessing spec, gets the adaptation details in ``card.extra["adaptation"]``
and a threshold re-calibrated on a held-out target validation split
(:func:`train.threshold.apply_to_checkpoint`), so export, quantization and deployment are unchanged.
"""
from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.errors import ConfigError, DatasetError

from .kd import logit_kd
from .task import TrainTask

METHODS = ("fretal", "finetune", "finetune_kd")
NUM_BINS = 5  # teacher confidence bins over [0.5, 1.0] in steps of 0.1
VAL_SPLIT_SEED_OFFSET = 1_000_003  # target validation split seed = this + seed


# --- losses -------------------------------------------------------------------------------
def _gap(f: torch.Tensor) -> torch.Tensor:
    return f.mean(dim=(2, 3)) if f.dim() == 4 else f.flatten(1)


def pooled_features(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (global-average-pooled last feature map (N, C), logits (N, 2)) in one pass.

    A multi-branch model (the dual teacher's ``forward_features`` returns a dict of maps) gives
    the concatenation of its pooled branch maps, in the model's own order.
    """
    feats = model.forward_features(x)
    logits = model.forward_head(feats)
    pooled = torch.cat([_gap(f) for f in feats.values()], dim=1) if isinstance(feats, dict) else _gap(feats)
    return pooled, logits


def confidence_bins(teacher_logits: torch.Tensor, labels: torch.Tensor, num_bins: int = NUM_BINS) -> torch.Tensor:
    """Teacher-confidence bin of each sample, -1 where the teacher is wrong.

    The confidence is the teacher's softmax probability of the true class; a correctly
    classified sample (argmax == label) has confidence in [0.5, 1.0], split into
    ``num_bins`` equal bins, the last one closed: [0.5, 0.6), ..., [0.9, 1.0].
    """
    prob = F.softmax(teacher_logits.detach().float(), dim=1)
    conf = prob.gather(1, labels.long().view(-1, 1)).squeeze(1)
    correct = prob.argmax(dim=1) == labels.long()
    width = 0.5 / num_bins
    # the tiny epsilon keeps exact boundaries (0.6, 0.7, ...) in the upper bin despite rounding
    b = torch.floor((conf - 0.5) / width + 1e-6).long().clamp(0, num_bins - 1)
    return torch.where(correct, b, torch.full_like(b, -1))


def representation_loss(student_feats: torch.Tensor, teacher_feats: torch.Tensor, teacher_logits: torch.Tensor,
                        labels: torch.Tensor, num_bins: int = NUM_BINS) -> torch.Tensor:
    """FReTAL feature representation transfer: squared error between per-(class, bin) feature means.

    ``student_feats`` / ``teacher_feats`` are pooled features (N, C). Only samples the teacher
    classifies correctly take part; groups are (label, confidence bin); the loss is the mean
    over the groups present of the channel-mean squared difference of the group means.
    Zero (with a gradient path) when no sample qualifies.
    """
    bins = confidence_bins(teacher_logits, labels, num_bins)
    keep = bins >= 0
    if not bool(keep.any()):
        return student_feats.sum() * 0.0
    group = labels.long()[keep] * num_bins + bins[keep]
    fs, ft = student_feats[keep], teacher_feats[keep].detach()
    uniq, inv, counts = torch.unique(group, return_inverse=True, return_counts=True)
    g = len(uniq)
    ms = torch.zeros(g, fs.shape[1], device=fs.device, dtype=fs.dtype).index_add_(0, inv, fs) / counts[:, None]
    mt = torch.zeros(g, ft.shape[1], device=ft.device, dtype=ft.dtype).index_add_(0, inv, ft) / counts[:, None]
    return ((ms - mt) ** 2).mean()


# --- the task -----------------------------------------------------------------------------
@dataclass(frozen=True)
class AdaptConfig:
    """One frozen config of an adaptation run (stored in the checkpoint's card and config)."""

    method: str = "fretal"
    shots: int | None = None  # target training samples per class; None = all
    epochs: int = 10
    lr: float = 1e-4
    batch_size: int = 32
    weight_decay: float = 1e-4
    temperature: float = 20.0
    alpha: float = 0.5  # weight of the logit KD term; CE gets 1 - alpha
    beta: float = 1.0  # weight of the representation transfer term
    num_bins: int = NUM_BINS
    val_fraction: float = 0.2  # held-out target validation split (threshold calibration)
    augment: bool = True  # FaceDataset augmentation (h-flip, JPEG, brightness) on target training crops
    keep: str = "best"  # "best": the epoch with the best target-validation AUC; "last": the final weights
    seed: int = 0

    def __post_init__(self):
        method = self.method.replace("-", "_")
        if method not in METHODS:
            raise ConfigError(f"unknown adaptation method {self.method!r}", fix=f"use one of {', '.join(METHODS)}")
        object.__setattr__(self, "method", method)
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.temperature <= 0 or self.beta < 0 or self.epochs < 1 or self.lr <= 0 or self.batch_size < 2:
            raise ConfigError("temperature > 0, beta >= 0, epochs >= 1, lr > 0 and batch_size >= 2 are required")
        if self.shots is not None and self.shots < 1:
            raise ConfigError(f"shots must be >= 1 (per class), got {self.shots}")
        if self.keep not in ("best", "last"):
            raise ConfigError(f"keep must be 'best' or 'last', got {self.keep!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


def frozen_teacher(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode with every parameter frozen."""
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


class AdaptTask(TrainTask):
    """FReTAL or a baseline as a training task: ``step(batch) -> dict`` of losses with ``"loss"``.

    ``self.model`` (the student) is what is trained and saved; the teacher is a frozen helper
    (eval mode, no gradients, outside the module tree, see :class:`train.task.TrainTask`).
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None, cfg: AdaptConfig, model_name: str = "",
                 model_kwargs: dict | None = None):
        super().__init__()
        self.model, self.model_name, self.model_kwargs = student, model_name, dict(model_kwargs or {})
        self.cfg = cfg
        if cfg.method != "finetune":
            if teacher is None:
                raise ConfigError(f"method {cfg.method!r} needs a teacher")
            self.set_frozen("teacher", teacher)

    def forward(self, batch) -> dict[str, torch.Tensor]:
        x, y = batch[0], batch[1].long()
        cfg = self.cfg
        if cfg.method == "finetune":
            ce = F.cross_entropy(self.model(x), y)
            return {"loss": ce, "ce": ce.detach()}
        fs, logits = pooled_features(self.model, x)
        with torch.no_grad():
            ft, t_logits = pooled_features(self.teacher, x)
        ce = F.cross_entropy(logits, y)
        kd = logit_kd(logits, t_logits, cfg.temperature)
        loss = (1.0 - cfg.alpha) * ce + cfg.alpha * kd
        out = {"ce": ce.detach(), "kd": kd.detach()}
        if cfg.method == "fretal":
            rep = representation_loss(fs, ft, t_logits, y, cfg.num_bins)
            loss = loss + cfg.beta * rep
            out["rep"] = rep.detach()
        out["loss"] = loss
        return out


# --- data ---------------------------------------------------------------------------------
def _as_samples(data, what: str) -> list:
    """A path (any layout :func:`train.data.load_samples` reads) or an already loaded list of samples."""
    from .recipes import load_pooled

    samples = load_pooled(data) if isinstance(data, (str, os.PathLike)) else list(data)
    if not samples:
        raise DatasetError(f"the {what} set is empty", fix="pass a folder or CSV with real and fake images")
    return samples


def _split_target(samples: list, cfg: AdaptConfig) -> tuple[list, list]:
    """Group-disjoint (train pool, validation) split, then ``shots`` per class from the pool."""
    labels = {s.label for s in samples if s.label in (0, 1)}
    if labels != {0, 1}:
        raise DatasetError(f"the target set needs real and fake samples, found labels {sorted(labels)}",
                           fix="adapt on a set with both classes (0 real, 1 fake)")
    if cfg.val_fraction > 0:
        from train.data import split_samples

        # an offset seed: the hash split is a pure function of (seed, group), so reusing the seed
        # that carved ``samples`` out of a bigger set would put no group in val
        parts = split_samples(samples, val=cfg.val_fraction, test=0.0, seed=VAL_SPLIT_SEED_OFFSET + cfg.seed)
        train_pool, val = parts["train"], parts["val"]
    else:
        train_pool, val = samples, []
    if cfg.shots is not None:
        rng = np.random.default_rng(cfg.seed)
        chosen = []
        for c in (0, 1):
            cls = [s for s in train_pool if s.label == c]
            idx = rng.permutation(len(cls))[: cfg.shots]
            chosen += [cls[i] for i in sorted(idx)]
        train_pool = chosen
    if len({s.label for s in train_pool}) < 2:
        raise DatasetError("the target training split lacks one class", fix="pass more target samples or lower --val")
    return train_pool, val


# --- the library entry point --------------------------------------------------------------
def adapt(ckpt: str | os.PathLike, target_data, out: str | os.PathLike, *, method: str = "fretal",
          shots: int | None = None, epochs: int = 10, lr: float = 1e-4, seed: int = 0, temperature: float = 20.0,
          alpha: float = 0.5, beta: float = 1.0, batch_size: int = 32, val_fraction: float = 0.2,
          weight_decay: float = 1e-4, augment: bool = True, keep: str = "best", device: str = "auto",
          progress: bool = False, log=None) -> Path:
    """Adapt the checkpoint ``ckpt`` to ``target_data`` (target domain only) and save it to ``out``.

    ``target_data`` is a path :func:`train.data.load_samples` reads or a list of samples; there
    is deliberately no parameter for source data. ``shots`` = training samples per class
    (None: the whole training split). ``keep="best"`` keeps the epoch with the best AUC on the
    held-out target validation split (:func:`train.trainer.fit`), ``"last"`` the final weights.
    Returns the adapted checkpoint's path.
    """
    import tempfile

    from train.checkpoint import load_checkpoint, save_checkpoint
    from train.data import FaceDataset
    from train.threshold import apply_to_checkpoint
    from train.trainer import FitConfig, fit, make_loader

    cfg = AdaptConfig(method=method, shots=shots, epochs=epochs, lr=lr, batch_size=batch_size,
                      weight_decay=weight_decay, temperature=temperature, alpha=alpha, beta=beta,
                      val_fraction=val_fraction, augment=augment, keep=keep, seed=seed)
    if cfg.val_fraction <= 0:
        raise ConfigError("adaptation needs a target validation split (epoch selection, threshold)",
                          fix="use --val 0.2 (default)")
    out = Path(out)
    model, card, blob = load_checkpoint(ckpt)
    samples = _as_samples(target_data, "target")
    train_s, val_s = _split_target(samples, cfg)
    if len({s.label for s in val_s}) < 2:
        raise DatasetError(f"the target validation split ({len(val_s)} samples) lacks a class",
                           fix="pass more target data or raise --val")

    teacher = frozen_teacher(model) if cfg.method != "finetune" else None
    for p in model.parameters():
        p.requires_grad_(True)
    task = AdaptTask(model, teacher, cfg, blob["model_name"], blob["model_kwargs"])
    train_loader = make_loader(FaceDataset(train_s, card.spec, seed=seed, augment=cfg.augment),
                               batch_size=min(cfg.batch_size, len(train_s)), train=True, seed=seed)
    val_loader = make_loader(FaceDataset(val_s, card.spec), batch_size=128, train=False, seed=seed)
    info: dict[str, Any] = {
        "method": cfg.method, "paper": "Kim, Tariq & Woo, FReTAL, CVPR-W 2021",
        "from_checkpoint": str(ckpt), "from_model_id": card.model_id(),
        "target": str(target_data) if isinstance(target_data, (str, os.PathLike)) else f"{len(samples)} samples",
        "n_train": {"real": sum(s.label == 0 for s in train_s), "fake": sum(s.label == 1 for s in train_s)},
        "n_val": len(val_s), "config": asdict(cfg), "source_data_used": False,
    }
    fcfg = FitConfig(epochs=cfg.epochs, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=seed, device=device,
                     spec=card.spec, threshold=card.threshold, card_version=card.version, progress=progress,
                     config={"adapt": asdict(cfg)}, log=log)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=".adapt-", dir=out.parent) as work:
        res = fit(task, train_loader, val_loader, fcfg, work)
        best, _, best_blob = load_checkpoint(res[cfg.keep])
    kept = res["best_epoch"] if cfg.keep == "best" else len(res["history"])
    info.update(seconds=round(time.time() - t0, 1), best_epoch=res["best_epoch"], kept_epoch=kept,
                target_val_auc=best_blob.get("metrics", {}).get("val_auc"),
                history=[{k: v for k, v in h.items() if isinstance(v, (int, float))} for h in res["history"]])
    extra = dict(card.extra)
    extra["adaptation"] = info
    new_card = card.replace(extra=extra, version=f"{card.version}+{cfg.method}")
    config = {"adapt": asdict(cfg), "parent_config": blob.get("config", {})}
    path = save_checkpoint(out, best, new_card, model_kwargs=blob["model_kwargs"], config=config,
                           metrics=best_blob.get("metrics", {}))
    apply_to_checkpoint(path, val_s, split=None, device=device)  # threshold re-calibrated on target val
    return path


# --- forgetting report --------------------------------------------------------------------
def forgetting_report(before_ckpt: str | os.PathLike, after_ckpt: str | os.PathLike, source_eval=None,
                      target_eval=None, *, device: str = "auto") -> dict[str, Any]:
    """Before/after AUC on a source and a target evaluation set (evaluation only, never training).

    ``source_eval`` / ``target_eval`` are paths or sample lists (either may be None). Returns
    ``{"before": {...}, "after": {...}, "delta": {...}, "n": {...}, ...}`` with
    ``<set>_auc`` and ``<set>_acc`` (accuracy at each card's own threshold).
    """
    from train.checkpoint import load_checkpoint
    from train.metrics import accuracy, auc
    from train.threshold import score_samples

    m0, c0, _ = load_checkpoint(before_ckpt)
    m1, c1, _ = load_checkpoint(after_ckpt)
    if c0.spec != c1.spec:
        raise ConfigError("the two checkpoints preprocess faces differently", path=after_ckpt,
                          fix="compare a checkpoint with its own adapted version")
    report: dict[str, Any] = {"before_ckpt": str(before_ckpt), "after_ckpt": str(after_ckpt),
                              "method": c1.extra.get("adaptation", {}).get("method"),
                              "threshold": {"before": c0.threshold, "after": c1.threshold},
                              "before": {}, "after": {}, "delta": {}, "n": {}}
    for name, data in (("source", source_eval), ("target", target_eval)):
        if data is None:
            continue
        samples = [s for s in _as_samples(data, f"{name} evaluation") if s.label in (0, 1)]
        y = np.array([s.label for s in samples], np.int64)
        if len(set(y.tolist())) < 2:
            raise DatasetError(f"the {name} evaluation set needs real and fake samples",
                               path=data if isinstance(data, (str, os.PathLike)) else None)
        report["n"][name] = {"real": int((y == 0).sum()), "fake": int((y == 1).sum())}
        for tag, m, c in (("before", m0, c0), ("after", m1, c1)):
            scores = score_samples(m, samples, c.spec, device=device)
            report[tag][f"{name}_auc"] = auc(scores, y)
            report[tag][f"{name}_acc"] = accuracy(scores, y, c.threshold)
        report["delta"][f"{name}_auc"] = report["after"][f"{name}_auc"] - report["before"][f"{name}_auc"]
    return report


def report_markdown(report: dict[str, Any]) -> str:
    rows = ["| set | AUC before | AUC after | change | acc before | acc after |", "|---|---|---|---|---|---|"]
    for name in ("source", "target"):
        if f"{name}_auc" not in report["before"]:
            continue
        b, a = report["before"], report["after"]
        rows.append(f"| {name} | {b[f'{name}_auc']:.4f} | {a[f'{name}_auc']:.4f} "
                    f"| {report['delta'][f'{name}_auc']:+.4f} "
                    f"| {b[f'{name}_acc']:.3f} | {a[f'{name}_acc']:.3f} |")
    head = f"Forgetting report ({report.get('method')}): `{report['before_ckpt']}` -> `{report['after_ckpt']}`"
    return head + "\n\n" + "\n".join(rows) + "\n"


def write_report(report: dict[str, Any], stem: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md``."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    js, md = stem.with_suffix(".json"), stem.with_suffix(".md")
    js.write_text(json.dumps(report, indent=2, sort_keys=True, default=float) + "\n")
    md.write_text(report_markdown(report))
    return js, md


def adapt_and_report(ckpt: str | os.PathLike, target_data, out: str | os.PathLike, *, source_eval=None,
                     target_eval=None, **kwargs) -> dict[str, Any]:
    """:func:`adapt`, then (only after the adapted checkpoint is written) the forgetting report.

    The source evaluation set is opened for the first time after training has finished.
    Returns ``{"checkpoint": path, "report": dict | None, "report_files": [...], "markdown": str}``.
    """
    path = adapt(ckpt, target_data, out, **kwargs)
    result: dict[str, Any] = {"checkpoint": path, "report": None, "report_files": [], "markdown": ""}
    if source_eval is not None or target_eval is not None:
        rep = forgetting_report(ckpt, path, source_eval, target_eval, device=kwargs.get("device", "auto"))
        result["report"] = rep
        result["markdown"] = report_markdown(rep)
        result["report_files"] = list(write_report(rep, Path(path).with_name(Path(path).stem + "_forgetting")))
    return result
