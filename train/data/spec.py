"""The preprocessing spec a training run must use, read from the data it trains on.

``ffd faces extract`` writes ``spec.json`` beside its crops: the detector, score threshold,
crop mode and margin that framed every face. A model trained on those crops must carry the
same framing in its card, or the runtime would crop faces differently from training. The
size may differ (``preprocess`` resizes a crop without changing what it frames), so a run
takes the framing from the data and its own input size. Folders of ready crops made by other
tools (no ``spec.json``) are accepted with a warning: their framing is the user's promise.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from edge.errors import ConfigError
from edge.spec import PreprocessSpec

from .samples import parse_data_arg

FRAMING = ("detector", "det_score_threshold", "crop_mode", "margin")


class UnknownFramingWarning(UserWarning):
    """Training data without a spec.json: the crops' framing cannot be checked."""


def _paths(data) -> list[Path]:
    """Dataset paths among ``data`` (a path, or a list of paths with ``real:``/``fake:`` prefixes, or samples)."""
    from ..sources import parse_source_arg

    items = data if isinstance(data, (list, tuple)) else [data]
    return [parse_data_arg(parse_source_arg(d)[1])[0] for d in items if isinstance(d, (str, os.PathLike))]


def spec_for_data(data, size: int, base: PreprocessSpec | None = None) -> PreprocessSpec:
    """``base`` (default spec) at ``size`` with the framing of the extraction folders in ``data``.

    ``data``: dataset path(s) as ``ffd train --data`` takes them; in-memory samples are skipped.

    Raises ConfigError when two folders were extracted with different framing, or when
    ``base`` (e.g. a teacher's spec) frames faces differently from the data.
    """
    framings: dict[tuple, list[str]] = {}
    unknown: list[str] = []
    for p in _paths(data):
        f = p / "spec.json" if p.is_dir() else p.parent / "spec.json"
        if f.is_file():
            s = PreprocessSpec.from_json(f.read_text())
            framings.setdefault(tuple(getattr(s, k) for k in FRAMING), []).append(str(p))
        else:
            unknown.append(str(p))
    if len(framings) > 1:
        detail = "; ".join(f"{dict(zip(FRAMING, k))}: {v}" for k, v in framings.items())
        raise ConfigError(f"the training folders were extracted with different face framing ({detail})",
                          fix="re-extract them with the same --detector/--crop/--margin")
    spec = (base or PreprocessSpec()).replace(size=size)
    if framings:
        framing = dict(zip(FRAMING, next(iter(framings))))
        if base is not None and any(getattr(base, k) != v for k, v in framing.items()):
            raise ConfigError(f"the data were framed with {framing} but the teacher's spec says "
                              f"{ {k: getattr(base, k) for k in FRAMING} }",
                              fix="distil on data extracted with the teacher's framing")
        spec = spec.replace(**framing)
    if unknown:
        warnings.warn(f"no spec.json in {unknown}: these crops were not made by `ffd faces extract`, so "
                      f"their framing cannot be checked against the model's ({spec.crop_mode}, margin "
                      f"{spec.margin})", UnknownFramingWarning, stacklevel=2)
    return spec
