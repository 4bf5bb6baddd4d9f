"""Datasets: readers for common layouts, group-wise splits, and (torch) the face dataset.

``Sample``, ``load_samples`` and ``split_samples`` are pure Python; ``FaceDataset`` imports
torch on first use, so ``import train.data`` stays torch-free. Loaders: :func:`train.trainer.make_loader`.
"""
from __future__ import annotations

from .samples import (FAKE, REAL, UNLABELLED, Sample, check_samples, detect_layout, load_samples, parse_data_arg,
                      summarize)
from .split import assert_disjoint, group_fraction, overlapping_groups, split_samples

__all__ = ["FAKE", "REAL", "UNLABELLED", "FaceDataset", "Sample", "assert_disjoint", "check_samples",
           "detect_layout", "group_fraction", "load_samples", "overlapping_groups",
           "parse_data_arg", "split_samples", "summarize"]


def __getattr__(name: str):
    if name == "FaceDataset":
        from .dataset import FaceDataset

        return FaceDataset
    raise AttributeError(name)
