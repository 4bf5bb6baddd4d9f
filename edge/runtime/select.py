"""Which backend runs a model, and with which options: the policy behind :func:`open_runner`.

:mod:`edge.runtime.base` defines the runner interface and knows no backend (after Polygraphy's
``backend/base/runner.py``); this module chooses. ``open_runner(path, backend="auto")`` picks
the fastest backend that can run here (:func:`auto_backend`: a TensorRT engine when TensorRT,
pycuda and a GPU are usable, an ``.onnx`` built once into the engine cache beside it; else ONNX
Runtime) and is the one place that routes backend options (:func:`route_options`). TensorRT
and pycuda are imported only when a TensorRT runner is opened; the probe
(:func:`trt_unusable_reason`) runs in a child process.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ..errors import BackendUnavailableError, ConfigError, FfdError, ModelError
from ..spec import ModelCard
from .base import Runner, cpu_only

log = logging.getLogger(__name__)


BACKENDS = ("auto", "ort", "trt")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
#: The options each backend's runner takes (keyword arguments of ``OrtRunner`` / ``TrtRunner``) and what they set.
BACKEND_OPTIONS: dict[str, dict[str, str]] = {
    "ort": {"providers": "ONNX Runtime's execution providers", "intra_op_threads": "ONNX Runtime's intra-op threads "
            "(--threads)", "inter_op_threads": "ONNX Runtime's inter-op threads", "card": "the card of an ONNX without "
            "one", "max_batch": "ONNX Runtime's largest batch per run", "optimization": "ONNX Runtime's graph "
            "optimisation level", "session_options": "ONNX Runtime's SessionOptions"},
    "trt": {"device": "the CUDA device", "rebuild": "rebuilding an engine of another TensorRT/GPU",
            "cuda_graph": "TensorRT's CUDA graphs", "graph_batch": "TensorRT's CUDA graph batch",
            "owner": "the CUDA owner thread TensorRT runs on"},
}
_LONG = {"ort": "ONNX Runtime", "trt": "TensorRT"}


@dataclass(frozen=True)
class Default:
    """An option value a caller layer picks on the user's behalf (``providers=Default("auto")``).

    :func:`route_options` passes it to a backend that takes the option and drops it, silently,
    where the backend that runs does not; a plain value is what the user asked for. Picklable, so
    it survives the trip to worker processes.
    """

    value: Any


def route_options(backend: str, options: Mapping[str, Any], runs: str | None = None) -> dict[str, Any]:
    """The keyword arguments for the runner of ``runs`` (``"ort"`` | ``"trt"``), from ``options``.

    ``backend`` is what was asked for (``auto``, ``ort``, ``trt``); ``runs`` the backend that runs
    (default: ``backend``; required for ``auto``). The rule, in this order:

    * a name no backend takes is refused (:class:`ConfigError`), a typo is never dropped;
    * an option ``runs`` takes is passed, unwrapped from :class:`Default`;
    * a :class:`Default` that ``runs`` does not take is dropped (a caller layer's choice);
    * a plain value ``runs`` does not take is dropped under ``auto`` (it was meant for whichever
      backend would run) and refused when the user chose the backend: asked-for settings are
      never silently ignored.

    A pure function of its arguments: no TensorRT, CUDA or file is touched.
    """
    if runs is None:
        if backend == "auto":
            raise ValueError("route_options('auto', ...) needs runs= (the backend auto chose)")
        runs = backend
    if runs not in BACKEND_OPTIONS or backend not in (runs, "auto"):
        raise ValueError(f"cannot route options asked for {backend!r} to {runs!r}")
    taken = BACKEND_OPTIONS[runs]
    out: dict[str, Any] = {}
    for name, value in options.items():
        owners = [b for b, opts in BACKEND_OPTIONS.items() if name in opts]
        if not owners:
            known = ", ".join(sorted(n for opts in BACKEND_OPTIONS.values() for n in opts))
            raise ConfigError(f"no backend takes the option {name!r}", fix=f"the runner options are: {known}")
        if name in taken:
            out[name] = value.value if isinstance(value, Default) else value
        elif not isinstance(value, Default) and backend != "auto":
            owner = owners[0]
            raise ConfigError(f"{name}={value!r} sets {BACKEND_OPTIONS[owner][name]}, but the {runs} backend "
                              f"({_LONG[runs]}) runs this model and cannot take it",
                              fix=f"leave it out, or run with --backend {owner} (or auto)")
    return out


def option_value(options: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``options[name]`` unwrapped from :class:`Default` (``default`` when absent)."""
    v = options.get(name, default)
    return v.value if isinstance(v, Default) else v


_PROBE = ("import tensorrt, pycuda.driver as d; d.init(); n = d.Device.count(); "
          "print(n, tensorrt.__version__, d.Device(0).name() if n else '')")


@functools.lru_cache(maxsize=None)
def trt_unusable_reason() -> str | None:
    """``None`` when the ``trt`` backend can run here, else why not (one line).

    TensorRT and pycuda must import and the CUDA driver must see a device. The probe runs in
    a child process, once per process: ``cuInit`` in this process would break CUDA in children
    a user forks later, and a broken driver install crashes the child, not the caller.
    """
    for mod in ("tensorrt", "pycuda"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed (pip install 'ffd-edge[gpu]')"
    try:
        r = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the TensorRT/CUDA probe failed: {e}"
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]
        return f"TensorRT or CUDA does not load: {last[:200]}"
    fields = r.stdout.split(maxsplit=2)
    if not fields or fields[0] == "0":
        return "no CUDA device is visible"
    log.debug("trt backend usable: TensorRT %s on %s", fields[1], fields[2].strip() if len(fields) > 2 else "?")
    return None


def auto_backend(model_path: str | Path, trt_reason: str | None, card: ModelCard | None = None) -> tuple[str, str]:
    """``("trt" | "ort", why)``: what ``backend="auto"`` runs ``model_path`` with.

    ``trt_reason`` is :func:`trt_unusable_reason` (``None``: TensorRT and a GPU are usable);
    ``card`` the model's card, whose ``int8_target`` marks ONNX Runtime's CPU INT8 flavour.
    """
    p = Path(model_path)
    if p.suffix in ENGINE_SUFFIXES:
        return "trt", "a TensorRT engine"
    if trt_reason is not None:
        return "ort", f"TensorRT backend unavailable: {trt_reason}"
    if cpu_only(card):
        return "ort", "ONNX Runtime's CPU INT8 flavour; TensorRT builds the Q/DQ flavour (*.int8-trt.onnx)"
    return "trt", "TensorRT and a GPU are usable; the ONNX is built once into the engine cache"


def _check_model_backend(model_path: str | Path, backend: str) -> tuple[Path, bool]:
    """(path, is it an engine) once the file exists and ``backend`` can run it, else the one-line error."""
    p = Path(model_path)
    if not p.exists():
        raise ModelError("model file not found", path=p, fix="check the path, or run `ffd export` first")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    is_engine = p.suffix in ENGINE_SUFFIXES
    if backend == "ort" and is_engine:
        raise BackendUnavailableError("ONNX Runtime cannot run a TensorRT engine", path=p,
                                      fix="use --backend trt on a machine with TensorRT, or pass the .onnx")
    return p, is_engine


def model_card(model_path: str | Path, backend: str = "auto", **options) -> ModelCard:
    """The model card of ``model_path`` without opening a runner: what :func:`open_runner` would refuse
    before any work (a missing file, an unknown backend, ONNX Runtime asked for an engine, options the chosen
    backend cannot take, ``--backend trt`` without TensorRT) is refused the same way, but no session is
    created and no engine is built. ``.onnx``: the ``ffd.card`` metadata (or ``options["card"]``), with the
    graph's input/output types and input size checked against it; engines: the sidecar's card.

    For callers that need the card before their workers open the runner (``ffd screen``: the resume key)."""
    p, is_engine = _check_model_backend(model_path, backend)
    route_options(backend, options, "ort" if backend == "auto" else backend)
    if backend == "trt":
        from .trt import _trt

        _trt()  # a one-line error naming how to install TensorRT, before any worker starts
    if is_engine:
        from .engine_cache import read_sidecar

        return ModelCard.from_dict(read_sidecar(p)["card"], p)
    from ..onnx_model import card_from_props, check_graph_io, dims, graph_inputs, load_onnx, metadata

    model = load_onnx(p)
    check_graph_io(model, p)
    card = option_value(options, "card") or card_from_props(metadata(model), p)
    shape, s = dims(graph_inputs(model)[0]), card.spec.size
    if len(shape) != 4 or any(isinstance(d, int) and d and d != want for d, want in zip(shape[1:], (3, s, s))):
        raise ModelError(f"model input {graph_inputs(model)[0].name} has shape {shape} but its card's spec says "
                         f"(N,3,{s},{s})", path=p, fix="re-export the model with the spec it was trained with")
    return card


def open_runner(model_path: str | Path, backend: str = "auto", **options) -> Runner:
    """Open ``model_path`` (``.onnx`` or ``.engine``) with ``backend``; the one place backend options are routed.

    ``trt``: a TensorRT engine; an ``.onnx`` is first built (or found) in the engine cache
    beside it (:func:`edge.runtime.trt.ensure_engine`). ``ort``: ONNX Runtime. ``auto``: see
    :func:`auto_backend`; when building or loading the engine fails, it warns and falls back to
    ONNX Runtime. ``options`` go to the runner of the backend that runs, per
    :func:`route_options`: a caller layer's :class:`Default` is dropped where it does not apply,
    the user's own options are dropped under ``auto`` and refused (:class:`ConfigError`, before
    anything is built) when the chosen backend cannot take them.
    """
    p, is_engine = _check_model_backend(model_path, backend)
    if backend == "auto":
        route_options("auto", options, "ort")  # a name no backend takes: refused whichever runs
        reason = None if is_engine else trt_unusable_reason()
        card = option_value(options, "card")
        if card is None and reason is None and not is_engine:
            from ..onnx_model import read_card

            card = read_card(p)
        runs, why = auto_backend(p, reason, card)
        log.info("backend for %s: %s (%s)", p.name, runs, why)
    else:
        runs = backend
    kw = _routed(backend, options, runs, p)
    if runs == "trt":
        if backend == "trt" or is_engine:
            return _open_trt(p, kw)
        try:
            return _open_trt(p, kw)
        except FfdError as e:
            warnings.warn(f"TensorRT not used for {p.name}, running ONNX Runtime instead: {e}", stacklevel=2)
            kw = _routed(backend, options, "ort", p)
    from .ort import OrtRunner

    return OrtRunner(p, **kw)


def _routed(backend: str, options: Mapping[str, Any], runs: str, p: Path) -> dict[str, Any]:
    kw = route_options(backend, options, runs)
    dropped = sorted(set(options) - set(kw))
    if dropped:
        log.info("options %s do not apply to the %s backend running %s: dropped", dropped, runs, p.name)
    return kw


def _open_trt(p: Path, kw: dict) -> Runner:
    from .trt import TrtRunner, ensure_engine  # lazy: imports tensorrt + pycuda

    if p.suffix not in ENGINE_SUFFIXES:
        p = ensure_engine(p, device=kw.get("device", 0))
    return TrtRunner(p, **kw)
