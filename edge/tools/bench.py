"""Timing and memory helpers shared by every benchmark (``ffd bench``, ``scripts/bench_*``).

Benchmarks print medians and percentiles measured side by side in one run; nothing here
asserts a speed. ``peak_rss_mb`` reads the process high-water mark (``VmHWM``).
"""
from __future__ import annotations

import os
import resource
import sys
import time
from typing import Callable

import numpy as np


def percentiles(samples_ms, ps=(50, 90, 95, 99)) -> dict[str, float]:
    a = np.asarray(samples_ms, np.float64)
    if a.size == 0:
        return {"n": 0}
    out = {"n": int(a.size), "min": float(a.min()), "mean": float(a.mean()), "max": float(a.max())}
    out.update({f"p{p}": float(np.percentile(a, p)) for p in ps})
    out["median"] = out["p50"] if "p50" in out else float(np.median(a))
    return out


def time_calls(fn: Callable[[], object], iters: int = 50, warmup: int = 5, min_time_s: float = 0.0) -> list[float]:
    """Call ``fn`` ``warmup`` times untimed, then at least ``iters`` times (and ``min_time_s``); ms per call."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    t_start = time.perf_counter()
    while len(times) < iters or (time.perf_counter() - t_start) < min_time_s:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _status_kib(field: str) -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB.

    Linux: ``VmHWM`` from /proc (``ru_maxrss`` would carry a parent's peak across fork+exec, so
    every benchmark subprocess would report at least its launcher's peak).
    """
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024.0
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def current_rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc; falls back to the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return peak_rss_mb()
