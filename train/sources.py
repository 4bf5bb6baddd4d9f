"""Training data as named *sources*: split per source, balanced per source, evaluated per source.

A pooled validation set with easy pseudo-fakes once hid a model at chance on the hard sets: the
easy source dominated the pooled AUC. So every ``--data`` argument is a source of its own
(``NAME=PATH``, or ``PATH`` named after its folder), and:

* **splits** are made per source and by group (video / person), never across groups. A source
  whose reader gives an official split with held-out people but no test set (DeepfakeTIMIT's
  ``labels.csv``: 22 train people, 5 val people) keeps those people as its *test* part, the one
  reported; model selection uses a hash share (``val``) of its training people. Other sources are
  hash-split into train / val / test (:func:`train.data.split_samples`, the split
  ``ffd eval --split`` reproduces); an official test split (FF++, Celeb-DF) wins as it does there.
* **class balance per source** (:func:`balance_weights`): training draws from *units*, each with
  the same share of every epoch and half real, half fake inside: one unit per source that has
  genuine fakes (its reals against its fakes), and one self-blend unit (every real face of every
  source against its self-blended pseudo-fake). A large source cannot drown a small one, and no
  source's real/fake ratio can be learned as a shortcut.
* **evaluation per source** (:func:`eval_sets`): one validation (or test) set per source with
  both classes, plus ``sbi``: the held-out real faces of all sources against their
  self-blended fakes (fixed blends). Selection uses the mean AUC over these sets, so the easiest
  one cannot carry a model that is at chance on another.

Video-level figures average the frames of one video: a sample's video is its ``source`` when that
is a video file, the folder of numbered frames it was cut from (``real/fadg0/sa1/001.jpg`` ->
``real/fadg0/sa1``), else the face itself.
"""
from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge.errors import ConfigError, DatasetError

from .data.samples import FAKE, REAL, Sample

SBI_SET = "sbi"
_NAME = re.compile(r"^([A-Za-z][\w.-]*)=(.+)$")
_FRAME_STEM = re.compile(r"^\d+$")


@dataclass
class Source:
    """One dataset of a training run and its split."""

    name: str
    arg: str  # the --data argument it came from (without NAME=)
    parts: dict[str, list[Sample]] = field(default_factory=dict)  # train / val / test

    def counts(self) -> dict[str, dict[str, int]]:
        return {k: {"real": sum(s.label == REAL for s in v), "fake": sum(s.label == FAKE for s in v),
                    "groups": len({s.group for s in v})} for k, v in self.parts.items()}


def parse_source_arg(arg: str | os.PathLike) -> tuple[str | None, str]:
    """``NAME=PATH`` -> (NAME, PATH); anything else -> (None, arg). ``real:``/``fake:`` stay on PATH."""
    m = _NAME.match(str(arg))
    if m and not os.path.exists(str(arg)):
        return m.group(1), m.group(2)
    return None, str(arg)


def _default_name(data_arg: str) -> str:
    from .data import parse_data_arg

    p, _ = parse_data_arg(data_arg)
    p = Path(os.path.abspath(p))
    name = p.stem if p.is_file() else p.name
    return re.sub(r"[^\w.-]", "_", name) or "data"


def split_source(samples: list[Sample], *, val: float, test: float, seed: int) -> dict[str, list[Sample]]:
    """Per-source split (see the module docstring); official val people become the test part
    when the source has no official test split."""
    from .data import split_samples

    official = {s.split for s in samples if s.split}
    if "val" in official and "test" not in official:
        held = [s for s in samples if s.split == "val"]
        rest = [replace(s, split=None) for s in samples if s.split != "val"]
        parts = split_samples(rest, val=val, test=0.0, seed=seed)
        return {"train": parts["train"], "val": parts["val"], "test": held}
    return split_samples(samples, val=val, test=test, seed=seed)


def load_sources(data, *, val: float = 0.1, test: float = 0.2, seed: int = 0,
                 max_per_class: int | None = None) -> list[Source]:
    """``--data`` arguments (or ``(name, samples)`` pairs) -> sources, each split by group. Names must be unique."""
    from .recipes import load_pooled

    items = list(data) if isinstance(data, (list, tuple)) else [data]
    if not items:
        raise ConfigError("no dataset given", fix="pass --data PATH (repeatable)")
    sources: list[Source] = []
    for it in items:
        if isinstance(it, tuple):  # (name, [Sample, ...]): a source built in code (e.g. one class of a dataset)
            name, given = it
            arg = name
        else:
            name, arg = parse_source_arg(it)
            name, given = name or _default_name(arg), None
        if name == SBI_SET or any(s.name == name for s in sources):
            raise ConfigError(f"two datasets are named {name!r}" if name != SBI_SET else
                              f"{SBI_SET!r} names the self-blend set and cannot name a dataset",
                              fix="name them: --data NAME=PATH")
        samples = load_pooled(list(given) if given is not None else [arg], max_per_class, seed)
        sources.append(Source(name, arg, split_source(samples, val=val, test=test, seed=seed)))
    return sources


def check_trainable(sources: list[Source], sbi: bool) -> None:
    """Both classes must be present for training: genuine fakes somewhere, or reals to self-blend."""
    train = [s for src in sources for s in src.parts["train"]]
    if not train:
        raise DatasetError("the training split is empty", fix="add data or lower --val/--test")
    labels = {s.label for s in train}
    if REAL not in labels:
        raise DatasetError("the training data hold no real faces", path=sources[0].arg,
                           fix="add real faces, e.g. real:../shared/data/london_faces/neutral")
    if FAKE not in labels and not sbi:
        raise DatasetError("the training data hold only real faces and --no-sbi makes no pseudo-fakes",
                           path=sources[0].arg, fix="add fakes or drop --no-sbi")


class OneClassSourceWarning(UserWarning):
    """A source with fakes but no reals of its own: its fakes cannot be balanced within the source."""


class EllipseMaskWarning(UserWarning):
    """Real faces without landmarks: their self-blend masks fall back to an ellipse."""


def warn_one_class(sources: list[Source]) -> None:
    for src in sources:
        labels = {s.label for s in src.parts.get("train", [])}
        if labels == {FAKE}:
            warnings.warn(f"source {src.name!r} ({src.arg}) has fakes but no real faces: its fakes are drawn against "
                          "no reals of the same source, so the source itself can become the signal; add its real "
                          "counterpart (same people, camera and codec)", OneClassSourceWarning, stacklevel=3)


def mask_sources(sources: list[Source]) -> dict[str, dict]:
    """Per source: where its self-blend masks come from (the extraction's ``landmarks.json``) and the
    share of its real training faces that carry dense landmarks (the rest use the ellipse); warns
    once per source whose reals have none."""
    from .data import parse_data_arg

    out = {}
    for src in sources:
        reals = [s for s in src.parts.get("train", []) if s.label == REAL]
        if not reals:
            continue
        with_lm = sum(1 for s in reals if s.dense_landmarks) / len(reals)
        rec_file = parse_data_arg(src.arg)[0] / "landmarks.json" if not isinstance(src.arg, tuple) else None
        record = None
        if rec_file is not None and rec_file.is_file():
            try:
                record = json.loads(rec_file.read_text())
            except ValueError:
                record = None
        points = {len(s.dense_landmarks) for s in reals if s.dense_landmarks}
        out[src.name] = {"landmark_model": (record or {}).get("model"), "points": sorted(points),
                         "with_landmarks": round(with_lm, 4)}
        if with_lm == 0:
            reason = (record or {}).get("reason") or "extracted without --landmarks"
            out[src.name]["fallback"] = "ellipse"
            warnings.warn(f"source {src.name!r}: no real face has landmarks ({reason}); its self-blend masks fall "
                          "back to the ellipse; fix: re-extract with --landmarks (the 66-point model)",
                          EllipseMaskWarning, stacklevel=3)
    return out


def balance_weights(source_of: list[int], labels: list[int], is_sbi: list[bool], n_sources: int) -> np.ndarray:
    """Per-item draw probabilities (sum 1) with the unit rule of the module docstring.

    ``source_of[i]``: source index of item i; ``labels[i]``; ``is_sbi[i]``: a self-blended item.
    """
    src = np.asarray(source_of)
    y = np.asarray(labels)
    sb = np.asarray(is_sbi, bool)
    units = []  # (real mask, fake mask)
    for k in range(n_sources):
        fake = (src == k) & (y == FAKE) & ~sb
        if fake.any():
            units.append(((src == k) & (y == REAL), fake))
    if sb.any():
        units.append((y == REAL, sb))
    units = [(r, f) for r, f in units if r.any() or f.any()]
    if not units:
        raise DatasetError("no training items to draw from")
    w = np.zeros(len(y), np.float64)
    share = 1.0 / len(units)
    for r, f in units:
        for m in (r, f):
            if m.any():
                w[m] += share / (2 if r.any() and f.any() else 1) / m.sum()
    return w / w.sum()


def video_key(s: Sample) -> str:
    """The video a face belongs to, for video-level metrics (module docstring)."""
    from edge.media import VIDEO_EXTS

    src = s.source or s.path
    p = Path(src)
    if p.suffix.lower() in VIDEO_EXTS:
        return src
    if _FRAME_STEM.match(p.stem):
        return str(p.parent)
    return src


def eval_sets(sources: list[Source], part: str, *, sbi: bool = True) -> dict[str, list[Sample]]:
    """Per-source evaluation samples of ``part`` (val/test): every source with both classes, and
    ``sbi`` = the part's real faces of every source (the dataset adds their self-blends)."""
    out: dict[str, list[Sample]] = {}
    for src in sources:
        items = src.parts.get(part, [])
        if {s.label for s in items} >= {REAL, FAKE}:
            out[src.name] = items
    reals = [s for src in sources for s in src.parts.get(part, []) if s.label == REAL]
    if sbi and reals:
        out[SBI_SET] = reals
    return out
