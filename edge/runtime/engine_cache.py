"""TensorRT engine cache: build inputs -> key, engine file + JSON sidecar, checks before loading.

After jetson-inference's engine cache and Polygraphy's timing cache. Pure Python (hashlib,
json, fcntl): nothing here imports TensorRT or CUDA, so the key, the sidecar and the
"may this engine be loaded here?" decision are tested on any machine. The caller passes
the current environment (:class:`EngineEnv`: TensorRT version, GPU name, compute
capability); :func:`edge.runtime.trt.current_env` reads it from a real GPU.

An engine ``model.engine`` sits beside ``model.engine.json``::

    {"format": 1, "key": "<sha256>", "inputs": {onnx_sha256, profile, options, env...},
     "card": {...ModelCard...}, "engine_sha256": "...", "created": "2025-...Z", ...}

The key is the sha256 of every build input: ONNX bytes, the batch profile, precision and
builder options, TensorRT version, GPU name and compute capability. TensorRT engines are
tied to the exact TensorRT version and GPU, so :func:`check_sidecar` refuses another
version or GPU *before* TensorRT deserialises the bytes (which would fail obscurely or
crash), and says to rebuild.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConfigError, EngineMismatchError, ModelError, require
from ..settings import RANGES, check
from ..spec import ModelCard

SIDECAR_FORMAT = 1
SIDECAR_SUFFIX = ".json"  # model.engine -> model.engine.json

DEFAULT_MIN_BATCH = 1
DEFAULT_OPT_BATCH = 8
DEFAULT_MAX_BATCH = 32
DEFAULT_WORKSPACE_MB = 256  # small: an 8 GB Jetson shares its memory between CPU and GPU
DEFAULT_OPT_LEVEL = 3  # TensorRT's own default builder optimisation level (0..5)

PRECISIONS = ("int8-qdq", "fp16", "fp32")


# --------------------------------------------------------------------------------------
# build inputs
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile of the dynamic batch axis: ``min <= opt <= max``."""

    min: int = DEFAULT_MIN_BATCH
    opt: int = DEFAULT_OPT_BATCH
    max: int = DEFAULT_MAX_BATCH

    def __post_init__(self):
        for k in ("min", "opt", "max"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"batch profile {k} must be a positive integer, got {v!r}")
            check(f"batch profile {k}", v, *RANGES["engine_batch"])  # and not one that allocates 100 GB
        if not (self.min <= self.opt <= self.max):
            raise ConfigError(f"batch profile must satisfy min <= opt <= max, got {self.min}/{self.opt}/{self.max}",
                              fix="e.g. --min-batch 1 --opt-batch 8 --max-batch 32")

    @classmethod
    def parse(cls, text: str) -> "BatchProfile":
        """``"1:8:32"`` (min:opt:max) or ``"8"`` (all three equal)."""
        try:
            parts = [int(p) for p in str(text).split(":")]
        except ValueError:
            raise ConfigError(f"cannot parse batch profile {text!r}", fix="write MIN:OPT:MAX, e.g. 1:8:32") from None
        if len(parts) == 1:
            parts *= 3
        if len(parts) != 3:
            raise ConfigError(f"cannot parse batch profile {text!r}", fix="write MIN:OPT:MAX, e.g. 1:8:32")
        return cls(*parts)

    def __str__(self) -> str:
        return f"{self.min}:{self.opt}:{self.max}"

    def shapes(self, input_shape: tuple) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """Full min/opt/max shapes for an ONNX input whose first axis is the batch.

        ``input_shape`` holds ints for static axes and ``None``/str for dynamic ones. Only the
        batch axis may be dynamic; a static batch axis must equal min = opt = max.
        """
        if len(input_shape) < 1:
            raise ConfigError("the model input has no batch axis")
        rest = input_shape[1:]
        if any(not isinstance(d, int) or d <= 0 for d in rest):
            raise ConfigError(f"only the batch axis may be dynamic; input shape is {tuple(input_shape)}",
                              fix="export with static C/H/W (dynamic_axes only on axis 0)")
        b = input_shape[0]
        if isinstance(b, int) and b > 0 and not (self.min == self.opt == self.max == b):
            raise ConfigError(f"the model has a static batch of {b}; the profile {self} cannot vary it",
                              fix=f"re-export with a dynamic batch axis, or pass --min/--opt/--max-batch {b}")
        return tuple((n, *rest) for n in (self.min, self.opt, self.max))  # type: ignore[return-value]


@dataclass(frozen=True)
class BuildOptions:
    """Builder options that change the engine (and therefore the key)."""

    precision: str = "int8-qdq"  # what the ONNX carries: int8-qdq / fp16 (already cast) / fp32
    fp16: bool = False  # build a non-quantized model in FP16 (see edge.runtime.trt.build_engine)
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    opt_level: int = DEFAULT_OPT_LEVEL

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not (0 <= int(self.opt_level) <= 5):
            raise ConfigError(f"--opt-level must be 0..5 (TensorRT builder optimisation level), got {self.opt_level}")
        check("--workspace-mb", self.workspace_mb, *RANGES["workspace_mb"])
        if self.fp16 and self.precision == "int8-qdq":
            raise ConfigError("--fp16 applies to non-quantized models; a Q/DQ model carries its own precision",
                              fix="drop --fp16, or quantize with high_precision_dtype='fp16' so the non-INT8 "
                                  "layers are FP16 in the graph")


@dataclass(frozen=True)
class EngineEnv:
    """What an engine is bound to: the exact TensorRT version and the GPU."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7" (Jetson Orin), "8.9", "9.0", ...

    def describe(self) -> str:
        return f"TensorRT {self.trt_version} on {self.gpu_name} (sm {self.compute_capability})"


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def key_inputs(onnx_sha256: str, profile: BatchProfile, options: BuildOptions, env: EngineEnv,
               input_name: str) -> dict[str, Any]:
    """Everything that determines the engine bytes, as a JSON-able dict (stored in the sidecar)."""
    return {
        "onnx_sha256": onnx_sha256,
        "input_name": input_name,
        "profile": dataclasses.asdict(profile),
        "options": dataclasses.asdict(options),
        "env": dataclasses.asdict(env),
    }


def cache_key(inputs: dict[str, Any]) -> str:
    """sha256 over the canonical JSON of :func:`key_inputs`."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --------------------------------------------------------------------------------------
# the ONNX side (needs only `onnx`)
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnnxInfo:
    sha256: str
    input_name: str
    input_shape: tuple  # ints for static axes, the dim_param (str) or None for dynamic ones
    precision: str  # int8-qdq / fp16 / fp32
    card: ModelCard | None


def describe_onnx(path: str | Path) -> OnnxInfo:
    """Hash an ONNX file and read its input, its precision and the model card in its metadata."""
    from ..onnx_model import card_from_props, check_graph_io, dims, graph_inputs, load_onnx, metadata, onnx_precision

    p = Path(path)
    model = load_onnx(p)
    inputs = graph_inputs(model)
    if len(inputs) != 1:
        raise ModelError(f"the model must have exactly one input tensor, found {[i.name for i in inputs]}", path=p)
    check_graph_io(model, p)  # float32 in, float scores out (what an engine built from it is fed and read as)
    card = card_from_props(metadata(model), p, required=False)
    return OnnxInfo(sha256_file(p), inputs[0].name, dims(inputs[0]), onnx_precision(model), card)


def fp16_onnx_bytes(onnx_path: str | Path) -> bytes:
    """The ONNX cast to FP16 by Model Optimizer's AutoCast (I/O kept FP32), serialised.

    How TensorRT 11 builds FP16 (it has no FP16 builder flag): the precision is in the graph
    and the network is strongly typed. Needs ``ffd-edge[calib]`` (modelopt; it imports torch),
    so run it on the desktop, or cast once there and copy the FP16 ONNX.
    """
    autocast = require("modelopt.onnx.autocast", "calib", "FP16 engines on TensorRT 11 (AutoCast)")
    model = autocast.convert_to_mixed_precision(onnx_path=str(onnx_path), low_precision_type="fp16",
                                                keep_io_types=True)
    return model.SerializeToString()


# --------------------------------------------------------------------------------------
# sidecar
# --------------------------------------------------------------------------------------
def sidecar_path(engine_path: str | Path) -> Path:
    p = Path(engine_path)
    return p.with_name(p.name + SIDECAR_SUFFIX)


def make_sidecar(inputs: dict[str, Any], card: ModelCard, engine_sha256: str, onnx_path: str | Path | None) -> dict:
    from .. import __version__

    return {
        "format": SIDECAR_FORMAT,
        "key": cache_key(inputs),
        "inputs": inputs,
        "card": card.to_dict(),
        "engine_sha256": engine_sha256,
        "onnx_path": None if onnx_path is None else str(Path(onnx_path).resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ffd_edge": __version__,
    }


def write_sidecar(engine_path: str | Path, sidecar: dict) -> Path:
    sp = sidecar_path(engine_path)
    atomic_write(sp, (json.dumps(sidecar, indent=2, sort_keys=True) + "\n").encode())
    return sp


def read_sidecar(engine_path: str | Path) -> dict:
    sp = sidecar_path(engine_path)
    if not sp.is_file():
        raise ModelError("the engine has no sidecar, so its model card (spec, threshold) and build environment "
                         "are unknown", path=sp, fix="build engines with `ffd build-engine MODEL.onnx`; it writes "
                                                     "MODEL.engine and MODEL.engine.json side by side")
    from ..spec import CARD_MAX_BYTES, load_bounded_json, validate_card_dict

    limit = CARD_MAX_BYTES + (64 << 10)  # the card (bounded like any card) plus build inputs of a few KB
    try:
        if sp.stat().st_size > limit:
            raise ModelError(f"the engine sidecar is {sp.stat().st_size} bytes, more than the {limit} allowed",
                             path=sp, fix="rebuild with `ffd build-engine MODEL.onnx --rebuild`")
        d = load_bounded_json(sp.read_bytes(), "the engine sidecar", sp, max_bytes=limit)
    except OSError as e:
        raise ModelError(f"the engine sidecar cannot be read: {e}", path=sp,
                         fix="rebuild with `ffd build-engine MODEL.onnx --rebuild`") from e
    if not isinstance(d, dict):
        raise ModelError(f"the engine sidecar is a JSON {type(d).__name__}, not an object", path=sp,
                         fix="rebuild with `ffd build-engine MODEL.onnx --rebuild`")
    for k in ("format", "key", "inputs", "card"):
        if k not in d:
            raise ModelError(f"the engine sidecar lacks '{k}'", path=sp,
                             fix="rebuild with `ffd build-engine --rebuild`")
    validate_card_dict(d["card"], sp, what="the model card in the engine sidecar")  # the one card schema
    env = d["inputs"].get("env") if isinstance(d["inputs"], dict) else None
    if not isinstance(env, dict) or not all(isinstance(env.get(k), str) for k in
                                            ("trt_version", "gpu_name", "compute_capability")) \
            or not isinstance(d["inputs"].get("input_name"), str):
        raise ModelError("the engine sidecar's 'inputs' are not the build inputs ffd writes", path=sp,
                         fix="rebuild with `ffd build-engine MODEL.onnx --rebuild`")
    if d["format"] != SIDECAR_FORMAT:
        raise ModelError(f"the engine sidecar has format {d['format']}, this ffd-edge reads {SIDECAR_FORMAT}",
                         path=sp, fix="rebuild with `ffd build-engine --rebuild`")
    if cache_key(d["inputs"]) != d["key"]:
        raise ModelError("the engine sidecar was edited: its key does not match its inputs", path=sp,
                         fix="rebuild with `ffd build-engine --rebuild`")
    return d


def mismatches(sidecar: dict, env: EngineEnv) -> list[str]:
    """What differs between the environment that built the engine and ``env`` (empty: loadable)."""
    built = sidecar["inputs"]["env"]
    out = []
    if built["trt_version"] != env.trt_version:
        out.append(f"built with TensorRT {built['trt_version']}, this is TensorRT {env.trt_version}")
    if built["compute_capability"] != env.compute_capability:
        out.append(f"built for compute capability {built['compute_capability']}, this GPU is "
                   f"{env.compute_capability}")
    if built["gpu_name"] != env.gpu_name:
        out.append(f"built on '{built['gpu_name']}', this GPU is '{env.gpu_name}'")
    return out


def check_sidecar(engine_path: str | Path, sidecar: dict, env: EngineEnv) -> None:
    """Raise :class:`EngineMismatchError` when the engine was built by another TensorRT or GPU."""
    problems = mismatches(sidecar, env)
    if problems:
        onnx_path = sidecar.get("onnx_path")
        how = f"`ffd build-engine {onnx_path} --rebuild`" if onnx_path else "`ffd build-engine MODEL.onnx --rebuild`"
        raise EngineMismatchError("engine does not match this machine: " + "; ".join(problems), path=engine_path,
                                  fix=f"rebuild it here with {how} (or open it with rebuild=True)")


def check_engine_bytes(engine_path: str | Path, sidecar: dict, data: bytes) -> None:
    want = sidecar.get("engine_sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise EngineMismatchError("engine file does not match its sidecar (replaced or truncated)", path=engine_path,
                                  fix="rebuild with `ffd build-engine MODEL.onnx --rebuild`")


def _intact_sidecar(engine_path: str | Path) -> dict | None:
    """The sidecar of ``engine_path`` when both exist, the sidecar is valid and the engine bytes match it."""
    p = Path(engine_path)
    if not p.is_file() or not sidecar_path(p).is_file():
        return None
    try:
        sc = read_sidecar(p)
    except ModelError:
        return None
    return sc if sha256_file(p) == sc.get("engine_sha256") else None


def is_cache_hit(engine_path: str | Path, key: str) -> bool:
    """True when ``engine_path`` exists and its sidecar was written for exactly ``key``."""
    sc = _intact_sidecar(engine_path)
    return sc is not None and sc["key"] == key


def serves_onnx(engine_path: str | Path, onnx_sha256: str, env: EngineEnv) -> bool:
    """True when ``engine_path`` was built from these ONNX bytes on this TensorRT and GPU, with any
    profile and options (what a user built by hand with ``ffd build-engine --max-batch 16`` stays in use)."""
    sc = _intact_sidecar(engine_path)
    return sc is not None and sc["inputs"].get("onnx_sha256") == onnx_sha256 and not mismatches(sc, env)


def default_engine_path(onnx_path: str | Path) -> Path:
    return Path(onnx_path).with_suffix(".engine")


# --------------------------------------------------------------------------------------
# files: atomic writes and a lock (for the shared timing cache)
# --------------------------------------------------------------------------------------
def atomic_write(path: str | Path, data: bytes) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


@contextlib.contextmanager
def file_lock(path: str | Path, timeout_s: float = 600.0) -> Iterator[None]:
    """An exclusive advisory lock on ``<path>.lock`` (POSIX ``flock``), as Polygraphy guards its timing cache.

    Two builds sharing one timing cache (two terminals, a CI matrix) then merge instead of
    overwriting each other. Where ``fcntl`` does not exist the lock is a no-op.
    """
    lock_path = Path(str(path) + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+") as f:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"timed out waiting for the lock {lock_path}",
                                      fix="another build holds it; wait, or delete the .lock file if none runs")
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
