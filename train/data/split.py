"""Group-wise train/val/test splits that never leak a video or identity across splits.

Rule: a sample's split is decided by its ``group`` alone. ``u = int(sha256(f"{seed}:{group}")[:16]) / 2**64``
is a uniform number in [0, 1) per group; ``u < test`` -> test, ``u < test + val`` -> val, else train.
Because the decision depends on nothing but the seed and the group name, every frame of one
video (or every video of one identity, where the reader knows it) lands on the same side, and
adding or removing other files never moves an existing group. Official splits win: a sample
whose reader set ``Sample.split`` (FF++ JSONs, Celeb-DF's test list) goes there; when a dataset
has an official test set but no val set (Celeb-DF), the remaining groups are hashed into
train/val only.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

from edge.errors import ConfigError, DatasetError

from .samples import Sample

SPLITS = ("train", "val", "test")


def group_fraction(group: str, seed: int = 0) -> float:
    """The stable uniform number in [0, 1) that places ``group``."""
    h = hashlib.sha256(f"{seed}:{group}".encode()).hexdigest()
    return int(h[:16], 16) / float(1 << 64)


def split_samples(samples: list[Sample], val: float = 0.1, test: float = 0.2, seed: int = 0) -> dict[str, list[Sample]]:
    """-> ``{"train": [...], "val": [...], "test": [...]}`` by group (see the module docstring)."""
    if not (0 <= val and 0 <= test and val + test < 1):
        raise ConfigError(f"val and test fractions must be >= 0 with val + test < 1 (got {val}, {test})",
                          fix="e.g. --val 0.1 --test 0.2")
    official = {s.split for s in samples if s.split}
    bad = official - set(SPLITS)
    if bad:
        raise DatasetError(f"unknown official split names {sorted(bad)}", fix=f"use {SPLITS}")
    out: dict[str, list[Sample]] = {k: [] for k in SPLITS}
    # with an official test set the hash only chooses between train and val
    t = 0.0 if "test" in official else test
    v = 0.0 if "val" in official else (val / (1 - test) if "test" in official else val)
    cache: dict[str, str] = {}
    for s in samples:
        if s.split:
            out[s.split].append(s)
            continue
        name = cache.get(s.group)
        if name is None:
            u = group_fraction(s.group, seed)
            name = cache[s.group] = "test" if u < t else "val" if u < t + v else "train"
        out[name].append(s)
    return out


def overlapping_groups(splits: dict[str, list[Sample]]) -> dict[str, set[str]]:
    """Groups found in more than one split -> the names of those splits (empty when disjoint)."""
    where: dict[str, set[str]] = defaultdict(set)
    for name, items in splits.items():
        for s in items:
            where[s.group].add(name)
    return {g: names for g, names in where.items() if len(names) > 1}


def assert_disjoint(splits: dict[str, list[Sample]]) -> None:
    """Raise DatasetError if a group (video/identity) appears in two splits."""
    bad = overlapping_groups(splits)
    if bad:
        g, names = next(iter(sorted(bad.items())))
        raise DatasetError(f"{len(bad)} groups straddle splits, e.g. {g!r} in {sorted(names)}",
                           fix="split with train.data.split_samples (by group), or fix the official split files")
