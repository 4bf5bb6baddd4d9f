"""Numeric settings: one range check for every numeric option and environment variable (torch-free).

A setting that is NaN, infinite, of the wrong type or outside its range is a :class:`ConfigError`
with one line naming the setting and the allowed range -- never a hang (``--threads 2000``), a
segfault (``--threads 100000``), a budget that never expires (``FFD_DECODE_TIMEOUT_S=inf``) or a
sampler that never advances (``--every-s nan``). The library functions call :func:`check` with
their parameter names, the CLI attaches :func:`option` callbacks with its option names, and
environment variables are read through :func:`env_number`; all three share :data:`RANGES`.

    >>> check("every_s", 0.5)                          # 0.5
    >>> check("--threads", 100000, *RANGES["threads"])  # ConfigError: --threads must be an integer in 1..16 ...
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ConfigError


def cpu_count() -> int:
    """CPUs this process may use (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Range:
    """Closed interval ``[lo, hi]``; ``integer``: only whole numbers (no bools, no 2.5)."""

    lo: float
    hi: float
    integer: bool = False

    def __iter__(self):  # check(name, value, *RANGES[k]) spreads lo, hi, integer
        return iter((self.lo, self.hi, self.integer))

    def text(self) -> str:
        return f"an integer in {int(self.lo)}..{int(self.hi)}" if self.integer else \
            f"a finite number in [{self.lo:g}, {self.hi:g}]"


_CPUS = cpu_count()
# The ranges of every numeric setting; "threads"/"workers" scale with the machine but stay where
# ONNX Runtime and process pools still behave (2000 intra-op threads hang ONNX Runtime's pool).
RANGES: dict[str, Range] = {
    "threads": Range(1, min(256, max(16, 4 * _CPUS)), True),      # ONNX Runtime intra/inter-op threads
    "workers": Range(0, min(128, max(8, 4 * _CPUS)), True),       # worker processes (-j); 0 = in-process
    "batch_size": Range(1, 4096, True),                           # faces per inference / training batch
    "frames": Range(1, 100_000, True),                            # frames sampled per video
    "every": Range(1, 100_000, True),                             # every k-th frame
    "max_frames": Range(1, 10**12, True),                         # stop after N frames
    "every_s": Range(1e-3, 86_400.0),                             # one frame every K seconds
    "max_faces": Range(1, 1000, True),                            # faces kept per frame
    "det_max_side": Range(64, 8192, True),                        # detector input, longer side (px)
    "decode_timeout_s": Range(1e-6, 7 * 86_400.0),                # FFD_DECODE_TIMEOUT_S: per-file budget
    "decode_threads": Range(0, 64, True),                         # FFD_DECODE_THREADS: 0 = the decoder's own count
    "max_image_pixels": Range(1, 1 << 36, True),                  # FFD_MAX_IMAGE_PIXELS: decode budget (px)
    "timeout_s": Range(1e-3, 7 * 86_400.0),                       # other deadlines in seconds
    "connect_timeout_s": Range(0.1, 86_400.0),                    # --connect-timeout, FFD_CONNECT_TIMEOUT_S
    "probability": Range(0.0, 1.0),                               # thresholds, fractions, rates in [0, 1]
    "fraction": Range(0.0, 0.9),                                  # held-out fractions (val/test)
    "iters": Range(1, 10**7, True),                               # timed calls / steps / epochs
    "count": Range(1, 10**9, True),                               # a number of items (faces, samples, shots)
    "positive": Range(0.0, 1e6),                                  # learning rates, weights, temperatures
    "engine_batch": Range(1, 4096, True),                         # TensorRT profile batch sizes
    "workspace_mb": Range(16, 1 << 20, True),                     # TensorRT builder workspace (MiB)
    "device": Range(0, 64, True),                                 # CUDA device index
}


def check(name: str, value: Any, lo: float | None = None, hi: float | None = None, integer: bool = False, *,
          allow_none: bool = True, error: type[ConfigError] = ConfigError) -> Any:
    """``value`` when it is a finite number in ``[lo, hi]`` (an int when ``integer``), else ``error``
    naming ``name`` and the range. ``lo``/``hi`` default to :data:`RANGES[name]` (without dashes).

    Numeric strings (environment variables) are parsed; bools are refused (``True`` is not 1 thread).
    """
    if lo is None and hi is None:
        key = name.lstrip("-").replace("-", "_")
        if key not in RANGES:
            raise KeyError(f"no range named {key!r} in edge.settings.RANGES")
        lo, hi, integer = RANGES[key]
    rng = Range(-math.inf if lo is None else lo, math.inf if hi is None else hi, integer)
    if value is None:
        if allow_none:
            return None
        raise error(f"{name} is required: {rng.text()}")
    v = value
    if isinstance(v, str):
        try:
            v = float(v.strip()) if not integer else int(v.strip())
        except ValueError:
            raise error(f"{name} must be {rng.text()}, got {value!r}", fix=_fix(name, rng)) from None
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise error(f"{name} must be {rng.text()}, got {type(value).__name__} {value!r}",
                    fix=_fix(name, rng))
    fv = float(v)
    if not math.isfinite(fv) or (integer and not float(fv).is_integer()) or not (rng.lo <= fv <= rng.hi):
        raise error(f"{name} must be {rng.text()}, got {value!r}", fix=_fix(name, rng))
    return int(v) if integer else fv


def _fix(name: str, rng: Range) -> str:
    if name.startswith("-"):
        return f"pass {name} {_example(rng)}"
    if name.isupper():  # an environment variable
        return f"set {name} to a number {_example(rng)}, or unset it for the default"
    return f"pass {name}= {_example(rng)}"


def _example(rng: Range) -> str:
    """'within 1..16' / 'within [0.001, 86400]' / '>= 0' for the fix line."""
    if not math.isfinite(rng.hi):
        return f">= {rng.lo:g}" if math.isfinite(rng.lo) else "a finite number"
    return "within " + rng.text().split(" in ", 1)[1]


def check_all(name: str, values, lo: float | None = None, hi: float | None = None, integer: bool = False) -> list:
    """:func:`check` on each of ``values`` (a repeated option); ``None`` stays ``None``."""
    return None if values is None else [check(name, v, lo, hi, integer, allow_none=False) for v in values]


def env_number(var: str, default: float, range_name: str | None = None, *, lo: float | None = None,
               hi: float | None = None, integer: bool = False) -> float | int:
    """Environment variable ``var`` as a checked number (``default`` when unset or empty).

    ``FFD_DECODE_TIMEOUT_S=inf`` or ``=abc`` is a ConfigError naming the variable and its range."""
    raw = os.environ.get(var, "")
    if not raw.strip():
        return default
    if range_name is not None:
        lo, hi, integer = RANGES[range_name]
    return check(var, raw, lo, hi, integer, allow_none=False)


def option(name: str, range_name: str | None = None, *, lo: float | None = None, hi: float | None = None,
           integer: bool | None = None) -> Callable[[Any], Any]:
    """A typer/click option callback that checks the option's value(s) with :func:`check` (one line, exit 3).

    ``typer.Option("--threads", callback=option("--threads", "threads"))``; repeated options
    (lists) are checked item by item.
    """
    if range_name is not None:
        r = RANGES[range_name]
        lo = r.lo if lo is None else lo
        hi = r.hi if hi is None else hi
        integer = r.integer if integer is None else integer

    def callback(value):
        if isinstance(value, (list, tuple)):
            return type(value)(check(name, v, lo, hi, bool(integer), allow_none=False) for v in value)
        return check(name, value, lo, hi, bool(integer))

    return callback


DEFAULT_CONNECT_TIMEOUT_S = 15.0  # one overall deadline to reach a stream or a Ray cluster

# numeric environment variables ffd reads: name -> (range, default); checked by the CLI at start-up
ENV_NUMBERS: dict[str, tuple[str, float]] = {
    "FFD_DECODE_TIMEOUT_S": ("decode_timeout_s", 300.0),
    "FFD_MAX_IMAGE_PIXELS": ("max_image_pixels", float(1 << 27)),
    "FFD_CONNECT_TIMEOUT_S": ("connect_timeout_s", DEFAULT_CONNECT_TIMEOUT_S),
    "FFD_DECODE_THREADS": ("decode_threads", 0),
}


def connect_timeout_s(value: float | None = None, name: str = "connect_timeout_s") -> float:
    """The overall deadline (seconds) to reach a network stream or a Ray cluster: ``value`` when given
    (checked, named ``name``), else ``FFD_CONNECT_TIMEOUT_S``, else :data:`DEFAULT_CONNECT_TIMEOUT_S`.
    After it, the open fails with one clear error instead of retrying on."""
    if value is not None:
        return check(name, value, *RANGES["connect_timeout_s"], allow_none=False)
    return float(env_number("FFD_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S, "connect_timeout_s"))


# environment variables that name one of a few choices: name -> the choices (the first is the default)
ENV_CHOICES: dict[str, tuple[str, ...]] = {
    "FFD_DECODER": ("auto", "pyav", "opencv", "gstreamer", "nvdec"),  # edge.decoders.select_decoder
}


def env_choice(var: str) -> str:
    """Environment variable ``var`` of :data:`ENV_CHOICES` (lower-cased; its default when unset or empty);
    any other value is a ConfigError naming the variable and the choices."""
    choices = ENV_CHOICES[var]
    raw = os.environ.get(var, "").strip().lower()
    if not raw:
        return choices[0]
    if raw not in choices:
        raise ConfigError(f"{var} must be one of {', '.join(choices)}, got {os.environ[var]!r}",
                          fix=f"set {var} to one of {', '.join(choices)}, or unset it for {choices[0]}")
    return raw


def check_environment() -> None:
    """Every numeric environment variable of :data:`ENV_NUMBERS` and every choice of :data:`ENV_CHOICES`,
    checked once (ConfigError naming it)."""
    for var, (range_name, default) in ENV_NUMBERS.items():
        env_number(var, default, range_name)
    for var in ENV_CHOICES:
        env_choice(var)
