"""Training recipes behind ``ffd train teacher`` / ``ffd train student``: data -> task -> :func:`train.trainer.fit`.

Data arguments are dataset paths in any layout :func:`train.data.load_samples` reads; prefix
``real:`` or ``fake:`` for a plain folder of images of one class (``real:../shared/data/
london_faces/neutral``), and ``NAME=`` to name it. Every argument is a *source*
(:mod:`train.sources`): split group-wise on its own (``val``/``test`` fractions, hash of ``seed``
and group, or its official held-out people), drawn with class balance per source, validated per
source (selection on the mean of the per-source AUCs) and reported per source on its test part
at the end of the run (``eval_sources.json``, and in ``best.pt``'s card). The test parts are
never trained on, so ``ffd eval CKPT DATA --split test --seed S`` evaluates on data the run never
saw. With ``sbi=True`` every real training face also yields a self-blended pseudo-fake
(Shiohara & Yamasaki, CVPR 2022), so real-only data can train a detector. Training crops get
the archive augmentations of :mod:`train.data.augment` (JPEG, H.264-like, resize, blur, noise,
colour), both classes alike.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge.errors import ConfigError, DatasetError
from edge.spec import PreprocessSpec

from .data.augment import ArchiveAugment
from .data.spec import spec_for_data

# share of the training pseudo-fakes that are cross-identity blends (train.sbi; measured in the README)
CROSS_BLEND = 0.0
# ArchiveAugment.geometric (small rotation/zoom/shift) per role, off for both (docs/training.md, stop 26): it
# lifted the students' self-blend AUC (+0.02..0.05) but cut the transfer to face swaps never trained on
# (student trained without DeepfakeTIMIT, same seed and machine: TIMIT AUC 0.840 without it, 0.704 with it)
# and nudged ciplab down in 5 of 7 runs; it weakened the short demo teacher too.
GEOMETRIC_TEACHER = 0.0
GEOMETRIC_STUDENT = 0.0


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


@dataclass
class TrainData:
    """What :func:`build_datasets` returns: the training set and its per-item draw weights, one
    validation set per source (:mod:`train.sources`), the sources and a JSON summary."""

    train: Any
    weights: np.ndarray
    val: dict[str, Any]
    sources: list
    summary: dict[str, Any]

    def __iter__(self):  # (train, val, summary), as before sources existed
        return iter((self.train, self.val, self.summary))


def build_datasets(data, spec: PreprocessSpec, *, sbi: bool = True, seed: int = 0, val: float = 0.1,
                   test: float = 0.2, max_per_class: int | None = None, augment: bool | ArchiveAugment = True,
                   cache: bool = True, cross_blend: float = 0.0, geometric: float = 0.0) -> TrainData:
    """Sources of ``data`` -> training set (every real face of every source also self-blended when
    ``sbi``; a ``cross_blend`` share of those blends takes its source from another person, see
    :mod:`train.sbi`), per-item weights balanced per source, and one validation set per source
    (its ``sbi`` set pure self-blends).
    Raises DatasetError when there is nothing to train on or nothing to validate on."""
    from .data import FaceDataset
    from .sbi import SBIConfig
    from .sources import balance_weights, check_trainable, eval_sets, load_sources, mask_sources, warn_one_class

    sources = load_sources(data, val=val, test=test, seed=seed, max_per_class=max_per_class)
    check_trainable(sources, sbi)
    warn_one_class(sources)
    masks = mask_sources(sources) if sbi else {}
    cfg = SBIConfig(cross_p=float(cross_blend)) if sbi else None
    train_samples, source_of = [], []
    for k, src in enumerate(sources):
        train_samples += src.parts["train"]
        source_of += [k] * len(src.parts["train"])
    aug = ArchiveAugment(geometric=float(geometric)) if augment is True else augment
    train_ds = FaceDataset(train_samples, spec, sbi=cfg, seed=seed, augment=aug, cache=cache)
    n = len(train_samples)
    items_source = source_of + [source_of[j] for j in train_ds._reals]
    is_sbi = [False] * n + [True] * (len(train_ds) - n)
    weights = balance_weights(items_source, train_ds.labels, is_sbi, len(sources))
    val_sets = {name: FaceDataset(items, spec, sbi=SBIConfig() if name == "sbi" else None, seed=seed + 1, cache=cache)
                for name, items in eval_sets(sources, "val", sbi=sbi).items()}
    if not val_sets:
        raise DatasetError("the val split is empty or holds one class in every source "
                           f"({sum(len(s.parts['val']) for s in sources)} faces)",
                           fix="add data or raise --val (model selection needs real and fake faces)")
    summary = {"sources": {s.name: s.counts() for s in sources}, "sbi": bool(sbi), "cross_blend": float(cross_blend),
               "train_items": len(train_ds), "val_sets": {k: len(v) for k, v in val_sets.items()},
               "sbi_masks": masks}
    return TrainData(train_ds, weights, val_sets, sources, summary)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except ValueError:
        return None


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fit(task, data, out, spec: PreprocessSpec, *, epochs: int, batch_size: int, lr: float, sbi: bool, seed: int,
         resume: bool, device: str, val: float, test: float, max_per_class: int | None, workers: int,
         config: dict, card_extra: dict, progress: bool, max_steps_per_epoch: int | None = None,
         samples_per_epoch: int | None = None, augment: bool | ArchiveAugment = True,
         warmup_steps: int = 0, cross_blend: float = 0.0, geometric: float = 0.0) -> dict[str, Any]:
    from .sources import eval_sets
    from .trainer import FitConfig, WeightedEpochSampler, fit, make_loader

    td = build_datasets(data, spec, sbi=sbi, seed=seed, val=val, test=test, max_per_class=max_per_class,
                        augment=augment, cross_blend=cross_blend, geometric=geometric)
    _log(f"data: {json.dumps(td.summary)}")
    n_epoch = int(samples_per_epoch or len(td.train))
    config = {**config, "data": [str(d) for d in data], "epochs": epochs, "batch_size": batch_size, "lr": lr,
              "sbi": sbi, "cross_blend": cross_blend, "seed": seed, "val": val, "test": test,
              "max_per_class": max_per_class,
              "samples_per_epoch": n_epoch, "augment": repr(td.train.augment), "splits": td.summary}
    cfg = FitConfig(epochs=epochs, lr=lr, seed=seed, device=device, resume=resume, spec=spec, config=config,
                    card_extra=card_extra, progress=progress, log=_log, max_steps_per_epoch=max_steps_per_epoch,
                    warmup_steps=warmup_steps)
    cfg.card_extra = {**card_extra, "sbi_masks": td.summary["sbi_masks"],
                      "data": {s.name: s.counts() for s in td.sources}}
    sampler = WeightedEpochSampler(td.weights, n_epoch, seed)
    val_loaders = {k: make_loader(v, 128, False, seed, workers) for k, v in td.val.items()}
    result = fit(task, make_loader(td.train, batch_size, True, seed, workers, sampler=sampler), val_loaders, cfg, out)
    Path(out, "history.json").write_text(json.dumps(result["history"], indent=1))
    # the figures that matter: per source on the held-out test parts, never pooled
    tests = eval_sets(td.sources, "test", sbi=True)
    best, done = Path(result["best"]), Path(out, "eval_sources.json")
    if tests and best.is_file():
        from .evaluate import evaluate_sets, format_table, record_in_checkpoint

        report = _read_json(done) if done.is_file() and done.stat().st_mtime >= best.stat().st_mtime else None
        if report is None:  # not yet, or older than best.pt: score it (a finished run re-run keeps its report)
            report = evaluate_sets(best, tests, device=device)
            record_in_checkpoint(best, report)
            tmp = done.with_name(done.name + ".tmp")  # whole or not at all: a kill never leaves half a report
            tmp.write_text(json.dumps(report, indent=1, default=float))
            os.replace(tmp, done)  # after the checkpoint rewrite, so the report is the newer file
        _log(f"held-out test, per source ({result['best']}):\n{format_table(report)}")
        result["test"] = report
    return result


def build_model(name: str, model_kwargs: dict | None = None, pretrained: bool | str | os.PathLike | None = "auto"):
    """Create a registered model, ImageNet-initialised where it can be.

    ``pretrained``: ``"auto"`` (default) loads the model's pretrained weights when it has a
    pretrained config (:mod:`train.pretrained`: ``FFD_WEIGHTS`` folder, the cache, or the official
    URL) and initialises the others randomly; ``"none"``/``False``: random init; ``True``:
    pretrained, an error for a model without weights; a path: that weight file, or a folder of
    weight files (what ``FFD_WEIGHTS`` names). ``model_kwargs`` (JSON, stored in checkpoints) never
    hold ``pretrained``: a checkpoint's weights replace the initialisation anyway.
    -> (model, init description for the card).
    """
    from .registry import create_model, has_pretrained

    kw = dict(model_kwargs or {})
    if "pretrained" in kw:
        raise ConfigError("pass pretrained= to build_model, not in model_kwargs", fix="use --pretrained")
    if pretrained in (None, False, "none", "no", "false", ""):
        return create_model(name, **kw), "random"
    can = has_pretrained(name)
    if pretrained == "auto":
        if not can:
            return create_model(name, **kw), "random"
        pretrained = True
    if not can:
        raise ConfigError(f"model {name!r} has no pretrained weights", fix="drop --pretrained or pick a pretrained "
                          "model (mobilenetv2_100, efficientnet_lite0/2, teacher_dual_lite2)")
    if pretrained is True:
        return create_model(name, pretrained=True, **kw), "imagenet"
    p = Path(pretrained)  # a weight file or a folder of them: train.pretrained.resolve_weights takes both
    return create_model(name, pretrained=str(p), **kw), f"imagenet ({p if p.is_dir() else p.name})"


def _spec_from_model(net, spec: PreprocessSpec) -> PreprocessSpec:
    """The model's pretrained normalisation (mean/std) in the spec, when it has one."""
    cfg = getattr(net, "pretrained_cfg", None)
    mean, std = getattr(cfg, "mean", None), getattr(cfg, "std", None)
    return spec.replace(mean=tuple(mean), std=tuple(std)) if mean and std else spec


def train_teacher(data, out, *, model: str = "teacher_dual_lite2", epochs: int = 10, batch_size: int = 32,
                  lr: float = 1e-3, size: int = 128, sbi: bool = True, seed: int = 0, resume: bool = False,
                  device: str = "auto", val: float = 0.1, test: float = 0.2, max_per_class: int | None = None,
                  workers: int = 0, aux_weight: float = 0.5, model_kwargs: dict | None = None, progress: bool = True,
                  pretrained: bool | str | None = "auto", samples_per_epoch: int | None = None,
                  augment: bool | ArchiveAugment = True, max_steps_per_epoch: int | None = None,
                  cross_blend: float = CROSS_BLEND, geometric: float = GEOMETRIC_TEACHER) -> dict[str, Any]:
    """Train a (dual-branch) teacher with cross-entropy (+ per-branch auxiliary heads)."""
    from .task import ClassifierTask

    kw = dict(model_kwargs or {})
    net, init = build_model(model, kw, pretrained)
    spec = _spec_from_model(net, spec_for_data(data, size))
    _check_size(net, size)
    task = ClassifierTask(net, model, kw, aux_weight=aux_weight)
    return _fit(task, data, out, spec, epochs=epochs, batch_size=batch_size, lr=lr, sbi=sbi, seed=seed, resume=resume,
                device=device, val=val, test=test, max_per_class=max_per_class, workers=workers,
                config={"role": "teacher", "model": model, "init": init},
                card_extra={"role": "teacher", "init": init}, progress=progress,
                samples_per_epoch=samples_per_epoch, augment=augment, max_steps_per_epoch=max_steps_per_epoch,
                warmup_steps=_warmup(init), cross_blend=cross_blend, geometric=geometric)


def train_student(data, out, *, kd: str = "two_in_one", teacher: str | os.PathLike | None = None,
                  model: str = "mobilenetv2_100", epochs: int = 10, batch_size: int = 32, lr: float = 1e-3,
                  size: int | None = None, sbi: bool = True, seed: int = 0, resume: bool = False, device: str = "auto",
                  val: float = 0.1, test: float = 0.2, max_per_class: int | None = None, workers: int = 0,
                  kd_weight: float = 1.0, model_kwargs: dict | None = None, progress: bool = True,
                  pretrained: bool | str | None = "auto", samples_per_epoch: int | None = None,
                  augment: bool | ArchiveAugment = True, max_steps_per_epoch: int | None = None,
                  cross_blend: float = CROSS_BLEND, geometric: float = GEOMETRIC_STUDENT) -> dict[str, Any]:
    """Train a student, distilled from ``teacher`` with ``kd`` (see :mod:`train.kd`).

    The student inherits the teacher's preprocessing spec (it must see the same crops);
    ``size`` may only restate it. Without a teacher (``kd="none"``) the spec is the default at
    ``size`` with the student's pretrained normalisation.
    """
    from .checkpoint import load_checkpoint
    from .kd import create_kd_task, normalize_kd_name

    kd = normalize_kd_name(kd)
    kw = dict(model_kwargs or {})
    t_model, extra = None, {"role": "student", "kd": kd}
    if kd != "none" and teacher is None:
        raise ConfigError(f"--kd {kd.replace('_', '-')} needs a teacher checkpoint", fix="pass --teacher CKPT")
    net, init = build_model(model, kw, pretrained)
    if kd == "none":
        spec = _spec_from_model(net, spec_for_data(data, size or 128))
    else:
        t_model, t_card, _ = load_checkpoint(teacher)
        if size and size != t_card.spec.size:
            raise ConfigError(f"--size {size} differs from the teacher's input size {t_card.spec.size}",
                              fix="drop --size: the student uses the teacher's preprocessing spec")
        spec = spec_for_data(data, t_card.spec.size, base=t_card.spec)
        extra["teacher"] = {"name": t_card.name, "path": str(teacher), "model_id": t_card.model_id()}
    extra["init"] = init
    _check_size(net, spec.size)
    task = create_kd_task(kd, net, t_model, model, kw, **({} if kd == "none" else {"kd_weight": kd_weight}))
    return _fit(task, data, out, spec, epochs=epochs, batch_size=batch_size, lr=lr, sbi=sbi, seed=seed, resume=resume,
                device=device, val=val, test=test, max_per_class=max_per_class, workers=workers,
                config={"role": "student", "model": model, "kd": kd, "kd_weight": kd_weight, "init": init,
                        "teacher": str(teacher) if teacher else None}, card_extra=extra, progress=progress,
                samples_per_epoch=samples_per_epoch, augment=augment, max_steps_per_epoch=max_steps_per_epoch,
                warmup_steps=_warmup(init), cross_blend=cross_blend, geometric=geometric)


def _warmup(init: str) -> int:
    """A short linear warm-up protects pretrained features from the first large steps of a new head."""
    return 0 if init == "random" else 50


def _check_size(net, size: int) -> None:
    r = getattr(net, "feature_reduction", 1)
    if size % r:
        raise ConfigError(f"input size {size} is not a multiple of {r} (the model's output stride)",
                          fix=f"use --size {max(r, size // r * r)}")
