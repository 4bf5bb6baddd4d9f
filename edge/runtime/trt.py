"""TensorRT: build an engine from a Q/DQ ONNX, and run it through pycuda (the ``trt`` backend).

All code that touches the ``tensorrt`` module lives in this file, and ``tensorrt`` is imported
lazily inside functions (``_trt()``), so ``import edge.runtime.trt`` and every ``--help`` work
where TensorRT is absent. ``tests/test_trt_api.py`` reads this file's AST and checks every
TensorRT name it uses against the binding string tables of TensorRT 10.3 (JetPack 6) and
11.4 (desktop). Names that exist in one major version only may appear only under
``if _trt_major() >= 11:`` / ``if _trt_major() < 11:`` (a bare version test, nothing else in
the condition), which the test evaluates per version. Enums are named, never integers.

Build (:func:`build_engine`): ONNX parser -> **strongly typed** network (Q/DQ nodes carry the
precision; TensorRT 11 removed the FP16/INT8 builder flags and 10.x does not need them for
Q/DQ models) -> one optimisation profile for the dynamic batch -> workspace limit (small by
default, for 8 GB Jetsons) -> builder optimisation level -> a persisted timing cache shared
under a file lock -> ``build_serialized_network``. FP16 for a non-quantized model:
TensorRT 10.x builds a weakly typed network with the FP16 builder flag; TensorRT 11.x (no
such flag) casts the ONNX to FP16 first with Model Optimizer's AutoCast (I/O kept FP32) and
builds it strongly typed. The engine cache (key, sidecar, checks) is
:mod:`edge.runtime.engine_cache`.

Run (:class:`TrtRunner`): every CUDA and TensorRT runtime call happens on a
:class:`~edge.runtime.cuda.CudaOwner` thread holding the primary context, so any caller
thread is safe. Two buffer sets (execution context + stream + pinned/device buffers each)
double-buffer: while set A's H2D/compute/D2H run asynchronously, the caller fills set B's
pinned input. Batches larger than the profile's max are split. ``cuda_graph=True`` captures
H2D + ``execute_async_v3`` + D2H once per set for a fixed batch and replays it.
"""
from __future__ import annotations

import hashlib
import logging
import queue
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import (BackendUnavailableError, ConfigError, EngineMismatchError, MissingDependencyError, ModelError,
                      require)
from ..spec import ModelCard
from . import cuda as cu
from .base import Done, Runner, cpu_only
from .engine_cache import (DEFAULT_MAX_BATCH, DEFAULT_MIN_BATCH, DEFAULT_OPT_BATCH, DEFAULT_OPT_LEVEL,
                           DEFAULT_WORKSPACE_MB, BatchProfile, BuildOptions, EngineEnv, atomic_write, cache_key,
                           check_engine_bytes, check_sidecar, default_engine_path, describe_onnx, file_lock,
                           fp16_onnx_bytes, is_cache_hit, key_inputs, make_sidecar, mismatches, read_sidecar,
                           serves_onnx, sha256_file, sidecar_path, write_sidecar)

log = logging.getLogger(__name__)

_OOM_HINTS = ("out of memory", "could not be allocated", "memoryallocation", "insufficient memory",
              "not enough free memory", "outofmemory")


# --------------------------------------------------------------------------------------
# the tensorrt module, its version, a logger
# --------------------------------------------------------------------------------------
def _trt():
    """``import tensorrt`` or a one-line error naming how to install it."""
    try:
        return require("tensorrt", "gpu", "building and running TensorRT engines")
    except MissingDependencyError as e:
        e.fix = ("pip install 'ffd-edge[gpu]' on a desktop GPU; on a Jetson use JetPack 6's TensorRT "
                 "(apt install python3-libnvinfer) and pip install pycuda")
        raise


def _trt_major() -> int:
    return int(str(_trt().__version__).split(".")[0])


def _make_logger():
    """A TensorRT logger that forwards to :mod:`logging` and keeps the error messages."""
    trt = _trt()
    sev = trt.ILogger.Severity
    levels = {sev.INTERNAL_ERROR: logging.CRITICAL, sev.ERROR: logging.ERROR, sev.WARNING: logging.WARNING,
              sev.INFO: logging.INFO, sev.VERBOSE: logging.DEBUG}

    class _Logger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, msg):
            level = levels.get(severity, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(str(msg))
            log.log(level, "[TRT] %s", msg)

    return _Logger()


def current_env(device: int = 0) -> EngineEnv:
    """The TensorRT version and GPU of this machine (what an engine is bound to)."""
    trt = _trt()
    name, cc = cu.gpu_info(device)
    return EngineEnv(str(trt.__version__), name, cc)


# --------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BuildResult:
    engine_path: Path
    sidecar_path: Path
    key: str
    cache_hit: bool
    seconds: float
    env: EngineEnv


def build_engine(onnx_path: str | Path, out: str | Path | None = None, *, min_batch: int | None = None,
                 opt_batch: int | None = None, max_batch: int | None = None, workspace_mb: int | None = None,
                 opt_level: int | None = None, fp16: bool = False, timing_cache: str | Path | None = None,
                 rebuild: bool = False, device: int = 0, card: ModelCard | None = None) -> BuildResult:
    """Build ``onnx_path`` into ``out`` (default: beside it, ``.engine``) plus its JSON sidecar.

    When ``out`` already holds an engine whose sidecar key equals the key of these inputs on
    this TensorRT and GPU, it is reused (``cache_hit``) unless ``rebuild``.
    """
    info = describe_onnx(onnx_path)
    card = card or info.card
    if card is None:
        raise ModelError("the ONNX has no model card in its metadata (key 'ffd.card'), so the engine would not "
                         "know its preprocessing spec and threshold", path=onnx_path,
                         fix="export with `ffd export` (it writes the card), or check with `ffd check-onnx`")
    if cpu_only(card):
        raise ConfigError(f"this ONNX is ONNX Runtime's CPU INT8 ({card.extra.get('int8_flavour', 'u8s8')}); TensorRT "
                          "takes symmetric INT8 Q/DQ only", path=onnx_path,
                          fix="build the Model Optimizer flavour instead (`ffd quantize` writes *.int8-trt.onnx), "
                              "or the FP32 ONNX with --fp16")
    profile = BatchProfile(min_batch or DEFAULT_MIN_BATCH, opt_batch or DEFAULT_OPT_BATCH,
                           max_batch or DEFAULT_MAX_BATCH)
    shapes = profile.shapes(info.input_shape)
    options = BuildOptions(info.precision, bool(fp16), workspace_mb or DEFAULT_WORKSPACE_MB,
                           DEFAULT_OPT_LEVEL if opt_level is None else int(opt_level))
    out = Path(out) if out else default_engine_path(onnx_path)
    env = current_env(device)
    inputs = key_inputs(info.sha256, profile, options, env, info.input_name)
    key = cache_key(inputs)
    if not rebuild and is_cache_hit(out, key):
        log.info("engine cache hit: %s", out)
        return BuildResult(out, sidecar_path(out), key, True, 0.0, env)
    log.warning("building a TensorRT engine for %s on %s (minutes on a Jetson; cached as %s)", onnx_path,
                env.describe(), out)
    t0 = time.perf_counter()
    data = _build_serialized(Path(onnx_path), info.input_name, shapes, options,
                             None if timing_cache is None else Path(timing_cache))
    atomic_write(out, data)
    sc = write_sidecar(out, make_sidecar(inputs, card, hashlib.sha256(data).hexdigest(), onnx_path))
    return BuildResult(out, sc, key, False, time.perf_counter() - t0, env)


def ensure_engine(onnx_path: str | Path, *, device: int = 0) -> Path:
    """The engine beside ``onnx_path`` (``model.engine``), built first when missing or stale.

    What ``open_runner(model.onnx, "trt" | "auto")`` runs. An engine there that was built from
    these ONNX bytes on this TensorRT and GPU is used whatever its profile and options (one built
    by hand with ``ffd build-engine`` is kept); otherwise one is built with the defaults.
    """
    out = default_engine_path(onnx_path)
    if serves_onnx(out, sha256_file(onnx_path), current_env(device)):
        return out
    return build_engine(onnx_path, out, device=device).engine_path


def _describe_parser_error(err) -> str:
    return (f"node #{err.node()} '{err.node_name()}' ({err.node_operator()}): {err.desc()} "
            f"[{err.code()}]")


def _build_serialized(onnx_path: Path, input_name: str, shapes, options: BuildOptions,
                      timing_cache: Path | None) -> bytes:
    trt = _trt()
    logger = _make_logger()
    builder = trt.Builder(logger)
    data = onnx_path.read_bytes()
    weak_fp16 = False
    if options.fp16:
        if _trt_major() >= 11:
            data = fp16_onnx_bytes(onnx_path)  # no FP16 flag in 11.x: the graph itself is cast
        else:
            weak_fp16 = True
    if weak_fp16:
        # TensorRT 10.x, non-quantized model: weak typing (no creation flags) lets the builder choose FP16
        network = builder.create_network(0)
    else:
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data, str(onnx_path)):
        errs = [_describe_parser_error(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelError("TensorRT's ONNX parser rejected the model:\n  " + "\n  ".join(errs or logger.errors),
                         path=onnx_path, fix="run `ffd check-onnx` on it; re-export without the listed ops")
    config = builder.create_builder_config()
    if weak_fp16:
        if _trt_major() < 11:
            config.set_flag(trt.BuilderFlag.FP16)
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(options.workspace_mb) << 20)
    config.builder_optimization_level = int(options.opt_level)
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, *shapes)
    config.add_optimization_profile(profile)
    if timing_cache is not None:
        with file_lock(timing_cache):
            blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
        if not config.set_timing_cache(config.create_timing_cache(blob), False):
            log.warning("timing cache %s is from another TensorRT/GPU; starting an empty one", timing_cache)
            config.set_timing_cache(config.create_timing_cache(b""), False)
            logger.errors.clear()
    try:
        plan = builder.build_serialized_network(network, config)
    except Exception as e:  # noqa: BLE001 - pybind turns builder failures into RuntimeError / MemoryError
        logger.errors.append(f"{type(e).__name__}: {e}")
        plan = None
    if plan is None:
        text = "\n  ".join(logger.errors) or "no message from TensorRT"
        if any(h in text.lower() for h in _OOM_HINTS):
            raise BackendUnavailableError(
                "the GPU ran out of memory while building the engine:\n  " + text, path=onnx_path,
                fix="lower --workspace-mb, --max-batch or --opt-level, and close other GPU programs "
                    "(on a Jetson: stop the desktop, `sudo systemctl isolate multi-user.target`)")
        raise ModelError("TensorRT could not build the engine:\n  " + text, path=onnx_path,
                         fix="run `ffd check-onnx` on the model; run with --debug for TensorRT's log")
    if timing_cache is not None:
        with file_lock(timing_cache):
            merged = config.get_timing_cache()
            if timing_cache.is_file():  # another build may have written since we read it
                merged.combine(config.create_timing_cache(timing_cache.read_bytes()), True)
            atomic_write(timing_cache, bytes(memoryview(merged.serialize())))
    return bytes(memoryview(plan))


# --------------------------------------------------------------------------------------
# run
# --------------------------------------------------------------------------------------
class _BufferSet:
    """One execution context with its stream, pinned/device buffers, a done event, an optional graph."""

    def __init__(self, engine, in_name: str, out_name: str, in_shape, in_dtype, out_shape, out_dtype,
                 feat: tuple | None = None):
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailableError("TensorRT could not create an execution context (out of GPU memory?)",
                                          fix="close other GPU programs, or build with a smaller --max-batch")
        self.stream = cu.new_stream()
        self.inp = cu.HostDeviceBuffer(in_shape, in_dtype)
        self.out = cu.HostDeviceBuffer(out_shape, out_dtype)
        self.context.set_tensor_address(in_name, self.inp.ptr)
        self.context.set_tensor_address(out_name, self.out.ptr)
        # the optional features output (heatmaps): TensorRT 10 writes every output, so it is always bound on
        # the device; it is copied to the host only for a batch that asks for it (:meth:`TrtRunner._record`)
        self.feat: cu.HostDeviceBuffer | None = None
        if feat is not None:
            feat_name, feat_shape, feat_dtype = feat
            self.feat = cu.HostDeviceBuffer(feat_shape, feat_dtype)
            self.context.set_tensor_address(feat_name, self.feat.ptr)
        self.timer = cu.EventTimer(("start", "h2d", "compute", "d2h"))
        self.graph: cu.CudaGraph | None = None
        self.shape_n: int | None = None

    def free(self) -> None:
        if self.graph is not None:
            self.graph.free()
            self.graph = None
        self.stream.synchronize()
        self.context = None
        self.inp.free()
        self.out.free()
        if self.feat is not None:
            self.feat.free()


class Pending:
    """Scores of one asynchronously enqueued batch; ``result()`` waits and frees the buffer set."""

    def __init__(self, runner: "TrtRunner", bset: _BufferSet, n: int, n_run: int, features: bool = False):
        self._runner, self._set, self._n, self._n_run = runner, bset, n, n_run
        self._features = features
        self._scores: np.ndarray | None = None
        self.features: np.ndarray | None = None  # (n, C, h, w) after result() of a batch that asked for them

    def result(self) -> np.ndarray:
        if self._scores is None:
            try:
                got = self._runner._owner.call(self._runner._collect, self._set, self._n_run, None, self._features)
                if self._features:
                    got, feats = got
                    self.features = feats[: self._n]
                self._scores = got[: self._n]
            finally:
                self._runner._free.put(self._set)
        return self._scores


class TrtRunner(Runner):
    """Run a TensorRT engine built by :func:`build_engine` (its sidecar gives the card and checks).

    ``rebuild=True`` rebuilds an engine from another TensorRT/GPU when the sidecar's ONNX
    still exists; ``cuda_graph=True`` replays a captured CUDA graph for batches of
    ``graph_batch`` (default: the profile's opt batch; other batches are padded to it).
    """

    name = "trt"

    def __init__(self, path: str | Path, *, device: int = 0, rebuild: bool = False, cuda_graph: bool = False,
                 graph_batch: int | None = None, owner: cu.CudaOwner | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError("engine file not found", path=self.path, fix="build one with `ffd build-engine`")
        sidecar = read_sidecar(self.path)
        _trt()  # a clear error before a thread is started
        self._own_owner = owner is None
        self._owner = owner or cu.CudaOwner(device)
        self._sets: list[_BufferSet] = []
        self._closed = False
        try:
            info = self._owner.info
            env = EngineEnv(str(_trt().__version__), info["name"], info["compute_capability"])
            if mismatches(sidecar, env):
                onnx_path = sidecar.get("onnx_path")
                if rebuild and onnx_path and Path(onnx_path).is_file():
                    log.warning("rebuilding %s for %s", self.path, env.describe())
                    p, o = sidecar["inputs"]["profile"], sidecar["inputs"]["options"]
                    build_engine(onnx_path, self.path, min_batch=p["min"], opt_batch=p["opt"], max_batch=p["max"],
                                 workspace_mb=o["workspace_mb"], opt_level=o["opt_level"], fp16=o["fp16"],
                                 rebuild=True, device=info["device"])
                    sidecar = read_sidecar(self.path)
                check_sidecar(self.path, sidecar, env)
            data = self.path.read_bytes()
            check_engine_bytes(self.path, sidecar, data)
            self.card = ModelCard.from_dict(sidecar["card"])
            self.input_name = sidecar["inputs"]["input_name"]
            self.env = env
            self._owner.call(self._load, data)
            self._graph_batch = None
            self._graph_failed = False
            if cuda_graph:
                gb = int(graph_batch or self.opt_batch)
                if not (self.min_batch <= gb <= self.max_batch):
                    raise ConfigError(f"graph_batch {gb} is outside the engine's profile "
                                      f"{self.min_batch}..{self.max_batch}")
                self._graph_batch = gb
            self._free: queue.Queue = queue.Queue()
            for s in self._sets:
                self._free.put(s)
        except BaseException:
            self.close()
            raise

    # --- owner thread ---------------------------------------------------------------------
    def _load(self, data: bytes) -> None:
        trt = _trt()
        self._logger = _make_logger()
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise EngineMismatchError("TensorRT could not deserialise the engine: " + "; ".join(self._logger.errors),
                                      path=self.path, fix="rebuild with `ffd build-engine MODEL.onnx --rebuild`")
        eng = self._engine
        names = [eng.get_tensor_name(i) for i in range(eng.num_io_tensors)]
        ins = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outs = [n for n in names if eng.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        from ..heatmap import cam_head

        head = cam_head(self.card)
        feat_name = head.output if head is not None and head.output in outs else None
        score_outs = [n for n in outs if n != feat_name]
        if ins != [self.input_name] or len(score_outs) != 1:
            raise ModelError(f"engine I/O {ins} -> {outs} does not match the sidecar's input '{self.input_name}' "
                             "and one score output (plus the card's features output)", path=self.path,
                             fix="rebuild with `ffd build-engine --rebuild`")
        self.output_name = score_outs[0]
        self.features_name = feat_name
        pmin, popt, pmax = eng.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.opt_batch, self.max_batch = int(pmin[0]), int(popt[0]), int(pmax[0])
        self._in_rest = tuple(int(d) for d in tuple(pmax)[1:])
        out_rest = tuple(int(d) for d in eng.get_tensor_shape(self.output_name))[1:]
        if any(d < 0 for d in out_rest):
            raise ModelError(f"output '{self.output_name}' has dynamic non-batch axes {out_rest}", path=self.path)
        in_dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(self.input_name)))
        out_dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(self.output_name)))
        feat = None
        if feat_name is not None:
            feat_rest = tuple(int(d) for d in eng.get_tensor_shape(feat_name))[1:]
            if len(feat_rest) != 3 or any(d < 0 for d in feat_rest):
                raise ModelError(f"output '{feat_name}' has shape {feat_rest} after the batch, expected static "
                                 "(C, h, w)", path=self.path, fix="re-export with `ffd export --heatmap`")
            feat = (feat_name, (self.max_batch, *feat_rest), np.dtype(trt.nptype(eng.get_tensor_dtype(feat_name))))
        for _ in range(2):  # double buffering
            self._sets.append(_BufferSet(eng, self.input_name, self.output_name, (self.max_batch, *self._in_rest),
                                         in_dtype, (self.max_batch, *out_rest), out_dtype, feat))

    def _record(self, s: _BufferSet, n: int, stream, timed: bool = False, features: bool = False) -> None:
        if timed:
            s.timer.record("start", stream)
        s.inp.h2d(stream, n)
        if timed:
            s.timer.record("h2d", stream)
        if not s.context.execute_async_v3(stream.handle):
            raise ModelError("TensorRT could not enqueue the batch: " + "; ".join(self._logger.errors[-3:]),
                             path=self.path)
        if timed:
            s.timer.record("compute", stream)
        s.out.d2h(stream, n)
        if features and s.feat is not None:
            s.feat.d2h(stream, n)  # only for a batch that asked: scores alone stay one small copy
        if timed:
            s.timer.record("d2h", stream)

    def _enqueue(self, s: _BufferSet, n: int, timed: bool = False, features: bool = False) -> None:
        if s.shape_n != n:
            if not s.context.set_input_shape(self.input_name, (n, *self._in_rest)):
                raise ConfigError(f"batch {n} is outside the engine's profile {self.min_batch}..{self.max_batch}")
            s.shape_n = n
        if features:  # outside the captured graph (which copies the scores only)
            self._record(s, n, s.stream, timed, features=True)
            return
        if n == self._graph_batch and not timed and not self._graph_failed:
            if s.graph is None:
                self._record(s, n, s.stream)  # runs once un-captured: flushes TensorRT's deferred updates
                s.stream.synchronize()
                try:
                    s.graph = cu.CudaGraph(s.stream, lambda st: self._record(s, n, st))
                except cu.CudaGraphError as e:
                    self._graph_failed = True
                    warnings.warn(f"CUDA graph capture failed, running without graphs: {e}", stacklevel=2)
                    return  # this batch already ran un-captured
            s.graph.launch(s.stream)
            return
        self._record(s, n, s.stream, timed)

    def _collect(self, s: _BufferSet, n: int, timings: dict | None = None, features: bool = False):
        s.stream.synchronize()
        if timings is not None:
            timings["h2d"] = s.timer.elapsed("start", "h2d")
            timings["gpu_compute"] = s.timer.elapsed("h2d", "compute")
            timings["d2h"] = s.timer.elapsed("compute", "d2h")
            timings["gpu_total"] = s.timer.elapsed("start", "d2h")
        scores = np.array(s.out.rows(n), dtype=np.float32).reshape(n, -1)[:, 0]
        if features:
            return scores, np.array(s.feat.rows(n), dtype=np.float32)
        return scores

    def _teardown(self) -> None:
        for s in self._sets:
            s.free()
        self._sets = []
        self._engine = None
        self._runtime = None

    # --- any thread -------------------------------------------------------------------------
    def _infer_async(self, batch: np.ndarray) -> Pending | Done:
        """``infer_async``: enqueue one batch and return at once; ``.result()`` gives the scores.

        Preprocess the next batch while this one runs, then call ``result()``: the two buffer
        sets overlap host work with GPU work. At most two batches are in flight; a third call
        waits until a ``result()`` frees a set. A batch over ``max_batch`` runs now, split
        (:meth:`_infer`), and comes back already done.
        """
        if len(batch) > self.max_batch:
            return Done(self._infer(batch))
        return self._submit(batch)

    def _submit(self, batch: np.ndarray, features: bool = False) -> Pending:
        """Enqueue rows of a batch :meth:`check_batch` has already accepted (no second check per chunk)."""
        n = len(batch)
        if n == 0 or n > self.max_batch:
            raise ConfigError(f"infer_async takes 1..{self.max_batch} images, got {n}", fix="use infer(), it splits")
        n_run = max(n, self.min_batch)
        if self._graph_batch and n <= self._graph_batch:
            n_run = self._graph_batch
        s = self._free.get()
        try:
            host = s.inp.rows(n_run)
            np.copyto(host[:n], batch, casting="same_kind")
            if n_run > n:
                host[n:] = 0  # padding to the graph batch / the profile's min; sliced off the scores
            self._owner.call(self._enqueue, s, n_run, False, features)
        except BaseException:
            self._free.put(s)
            raise
        return Pending(self, s, n, n_run, features)

    def _infer_features(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scores and the features output of a checked batch (chunks of ``max_batch``, one at a time)."""
        scores, feats = [], []
        for i in range(0, len(batch), self.max_batch):
            p = self._submit(batch[i:i + self.max_batch], features=True)
            scores.append(p.result())
            feats.append(p.features)
        return np.concatenate(scores).astype(np.float32, copy=False), np.concatenate(feats)

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        step = self._graph_batch or self.max_batch
        pending: list[Pending] = []
        scores: list[np.ndarray] = []
        for i in range(0, len(batch), step):  # split batches larger than the profile allows
            if pending and self._free.empty():  # never wait for a set while holding one: a caller's own
                scores.append(pending.pop(0).result())  # pending batch (double buffering) may hold the other
            pending.append(self._submit(batch[i:i + step]))  # rows of a checked batch: checked already
        scores.extend(p.result() for p in pending)
        return np.concatenate(scores).astype(np.float32, copy=False)

    def infer_timed(self, batch: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """One synchronous batch (<= max_batch, no graph) with CUDA-event timings in ms."""
        batch = self.check_batch(batch)  # its own entry point (benchmarks), outside infer's template
        n = len(batch)
        if not (self.min_batch <= n <= self.max_batch):
            raise ConfigError(f"batch {n} is outside the engine's profile {self.min_batch}..{self.max_batch}")
        s = self._free.get()
        try:
            np.copyto(s.inp.rows(n), batch, casting="same_kind")
            timings: dict[str, float] = {}

            def run():
                self._enqueue(s, n, timed=True)
                return self._collect(s, n, timings)

            return self._owner.call(run), timings
        finally:
            self._free.put(s)

    def close(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        owner = getattr(self, "_owner", None)
        if owner is not None:
            try:
                owner.call(self._teardown)
            finally:
                if self._own_owner:
                    owner.close()


# --------------------------------------------------------------------------------------
# benchmark (`ffd bench --backend trt`)
# --------------------------------------------------------------------------------------
def bench_engine(engine_path: str | Path, batch_sizes=(1, 8, 32), iters: int = 100, warmup: int = 10, *,
                 device: int = 0, cuda_graph: bool = False) -> dict:
    """trtexec-like figures per batch size: throughput, and latency percentiles (ms) of host wall
    time and of H2D / GPU compute / D2H / their sum (``gpu_total``) from CUDA events. With
    ``cuda_graph=True`` the batch is one graph launch, so only host wall time is reported.

    Batch sizes outside the engine's profile are listed under ``skipped`` with the reason.
    """
    from ..tools.bench import percentiles, time_calls

    rng = np.random.default_rng(0)
    out: dict = {"backend": "trt", "engine": str(engine_path), "iters": int(iters), "warmup": int(warmup),
                 "cuda_graph": bool(cuda_graph), "results": [], "skipped": []}
    with TrtRunner(engine_path, device=device) as r:
        out.update(tensorrt_version=r.env.trt_version, gpu=r.env.gpu_name, compute_capability=r.env.compute_capability,
                   profile={"min": r.min_batch, "opt": r.opt_batch, "max": r.max_batch})
        s = r.card.spec.size
        for b in batch_sizes:
            b = int(b)
            if not (r.min_batch <= b <= r.max_batch):
                out["skipped"].append({"batch": b,
                                       "reason": f"outside the engine's profile {r.min_batch}..{r.max_batch}"
                                                 " (rebuild with --max-batch)"})
                continue
            x = rng.standard_normal((b, 3, s, s)).astype(np.float32)
            parts: dict[str, list[float]] = {"h2d": [], "gpu_compute": [], "d2h": [], "gpu_total": []}
            if cuda_graph:
                g = TrtRunner(engine_path, device=device, cuda_graph=True, graph_batch=b, owner=r._owner)

                def fn(g=g, x=x):
                    g.infer(x)  # one graph launch; the events cannot sit inside it, so host wall time only
            else:
                g = None

                def fn(x=x):
                    _, t = r.infer_timed(x)
                    for k, v in t.items():
                        parts[k].append(v)
            try:
                wall = time_calls(fn, iters=iters, warmup=warmup)
            finally:
                if g is not None:
                    g.close()
            n_keep = len(wall)
            lat = {"host_wall": percentiles(wall)}
            for k, v in parts.items():
                if v:
                    lat[k] = percentiles(v[-n_keep:])
            out["results"].append({"batch": b, "iters": n_keep, "throughput_per_s": b * n_keep / (sum(wall) / 1e3),
                                   "latency_ms": lat})
    return out
