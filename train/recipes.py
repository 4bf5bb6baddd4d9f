"""Training recipes behind ``ffd train teacher`` / ``ffd train student``: data -> task -> :func:`train.trainer.fit`.

Data arguments are dataset paths in any layout :func:`train.data.load_samples` reads; prefix
``real:`` or ``fake:`` for a plain folder of images of one class (``real:../shared/data/
london_faces/neutral``). All datasets are pooled and split group-wise (``val``/``test``
fractions, :func:`train.data.split_samples`, hash of ``seed`` and group); the test part is
never used here, so ``ffd eval CKPT DATA --split test --seed S`` evaluates on data the run
never saw. With ``sbi=True`` every real training/validation face also yields a self-blended
pseudo-fake (Shiohara & Yamasaki, CVPR 2022), so real-only data can train a detector.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, DatasetError
from edge.spec import PreprocessSpec

from .data.spec import spec_for_data


def load_pooled(data, max_per_class: int | None = None, seed: int = 0) -> list:
    """Samples of ``data``, optionally capped to ``max_per_class`` per label (stable choice).

    ``data``: a dataset path or a list of them (``real:``/``fake:`` prefixes as ``--data`` takes
    them), and/or already loaded :class:`~train.data.Sample` objects (kept as they are).
    """
    from .data import Sample, group_fraction, load_samples, parse_data_arg

    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items:
        raise ConfigError("no dataset given", fix="pass --data PATH (repeatable)")
    samples = []
    for d in items:
        if isinstance(d, Sample):
            samples.append(d)
            continue
        path, label = parse_data_arg(d)
        samples += load_samples(path, label=label)
    if max_per_class:
        out = []
        for lab in sorted({s.label for s in samples}):
            cls = sorted((s for s in samples if s.label == lab), key=lambda s: group_fraction(s.path, seed + 7))
            out += cls[:max_per_class]
        samples = out
    return samples


def build_datasets(data, spec: PreprocessSpec, *, sbi: bool = True, seed: int = 0, val: float = 0.1,
                   test: float = 0.2, max_per_class: int | None = None):
    """-> (train FaceDataset, val FaceDataset, summary dict). Raises DatasetError on empty/one-class splits."""
    from .data import FaceDataset, split_samples, summarize
    from .sbi import SBIConfig

    samples = load_pooled(data, max_per_class, seed)
    parts = split_samples(samples, val=val, test=test, seed=seed)
    for name in ("train", "val"):
        part = parts[name]
        if not part:
            raise DatasetError(f"the {name} split is empty ({len(samples)} samples in {len({s.group for s in samples})} groups)",
                               fix="add data or change --val/--test")
        labels = {s.label for s in part}
        if not sbi and labels != {0, 1}:
            have = "real" if 0 in labels else "fake"
            raise DatasetError(f"the {name} split has only {have} samples and --no-sbi makes no pseudo-fakes",
                               fix="add the other class or use --sbi")
        if sbi and 0 not in labels:
            raise DatasetError(f"the {name} split has no real faces to self-blend and no real class",
                               fix="add real faces (e.g. real:../shared/data/london_faces/neutral)")
    cfg = SBIConfig() if sbi else None
    train_ds = FaceDataset(parts["train"], spec, sbi=cfg, seed=seed, augment=True)
    val_ds = FaceDataset(parts["val"], spec, sbi=cfg, seed=seed + 1, augment=False)
    summary = {k: summarize(v) for k, v in parts.items()}
    summary["sbi"] = bool(sbi)
    return train_ds, val_ds, summary


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fit(task, data, out, spec: PreprocessSpec, *, epochs: int, batch_size: int, lr: float, sbi: bool, seed: int,
         resume: bool, device: str, val: float, test: float, max_per_class: int | None, workers: int,
         config: dict, card_extra: dict, progress: bool, max_steps_per_epoch: int | None = None) -> dict[str, Any]:
    from .trainer import FitConfig, fit, make_loader

    train_ds, val_ds, summary = build_datasets(data, spec, sbi=sbi, seed=seed, val=val, test=test,
                                               max_per_class=max_per_class)
    _log(f"data: {json.dumps(summary)}")
    config = {**config, "data": [str(d) for d in data], "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "sbi": sbi, "seed": seed, "val": val, "test": test, "max_per_class": max_per_class, "splits": summary}
    cfg = FitConfig(epochs=epochs, lr=lr, seed=seed, device=device, resume=resume, spec=spec, config=config,
                    card_extra=card_extra, progress=progress, log=_log, max_steps_per_epoch=max_steps_per_epoch)
    result = fit(task, make_loader(train_ds, batch_size, True, seed, workers),
                 make_loader(val_ds, batch_size, False, seed, workers), cfg, out)
    Path(out, "history.json").write_text(json.dumps(result["history"], indent=1))
    return result


def train_teacher(data, out, *, model: str = "teacher_dual", epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
                  size: int = 128, sbi: bool = True, seed: int = 0, resume: bool = False, device: str = "auto",
                  val: float = 0.1, test: float = 0.2, max_per_class: int | None = None, workers: int = 0,
                  aux_weight: float = 0.5, model_kwargs: dict | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a (dual-branch) teacher with cross-entropy (+ per-branch auxiliary heads)."""
    from .registry import create_model
    from .task import ClassifierTask

    kw = dict(model_kwargs or {})
    net = create_model(model, **kw)
    spec = spec_for_data(data, size)
    _check_size(net, size)
    task = ClassifierTask(net, model, kw, aux_weight=aux_weight)
    return _fit(task, data, out, spec, epochs=epochs, batch_size=batch_size, lr=lr, sbi=sbi, seed=seed, resume=resume,
                device=device, val=val, test=test, max_per_class=max_per_class, workers=workers,
                config={"role": "teacher", "model": model}, card_extra={"role": "teacher"}, progress=progress)


def train_student(data, out, *, kd: str = "two_in_one", teacher: str | os.PathLike | None = None,
                  model: str = "student_small", epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
                  size: int | None = None, sbi: bool = True, seed: int = 0, resume: bool = False, device: str = "auto",
                  val: float = 0.1, test: float = 0.2, max_per_class: int | None = None, workers: int = 0,
                  kd_weight: float = 1.0, model_kwargs: dict | None = None, progress: bool = True) -> dict[str, Any]:
    """Train a student, distilled from ``teacher`` with ``kd`` (see :mod:`train.kd`).

    The student inherits the teacher's preprocessing spec (it must see the same crops);
    ``size`` may only restate it. Without a teacher (``kd="none"``) the spec is the default at ``size``.
    """
    from .checkpoint import load_checkpoint
    from .kd import create_kd_task, normalize_kd_name
    from .registry import create_model

    kd = normalize_kd_name(kd)
    t_model, extra = None, {"role": "student", "kd": kd}
    if kd == "none":
        spec = spec_for_data(data, size or 128)
    else:
        if teacher is None:
            raise ConfigError(f"--kd {kd.replace('_', '-')} needs a teacher checkpoint", fix="pass --teacher CKPT")
        t_model, t_card, _ = load_checkpoint(teacher)
        if size and size != t_card.spec.size:
            raise ConfigError(f"--size {size} differs from the teacher's input size {t_card.spec.size}",
                              fix="drop --size: the student uses the teacher's preprocessing spec")
        spec = spec_for_data(data, t_card.spec.size, base=t_card.spec)
        extra["teacher"] = {"name": t_card.name, "path": str(teacher), "model_id": t_card.model_id()}
    kw = dict(model_kwargs or {})
    net = create_model(model, **kw)
    _check_size(net, spec.size)
    task = create_kd_task(kd, net, t_model, model, kw, **({} if kd == "none" else {"kd_weight": kd_weight}))
    return _fit(task, data, out, spec, epochs=epochs, batch_size=batch_size, lr=lr, sbi=sbi, seed=seed, resume=resume,
                device=device, val=val, test=test, max_per_class=max_per_class, workers=workers,
                config={"role": "student", "model": model, "kd": kd, "kd_weight": kd_weight,
                        "teacher": str(teacher) if teacher else None}, card_extra=extra, progress=progress)


def _check_size(net, size: int) -> None:
    r = getattr(net, "feature_reduction", 1)
    if size % r:
        raise ConfigError(f"input size {size} is not a multiple of {r} (the model's output stride)",
                          fix=f"use --size {max(r, size // r * r)}")
