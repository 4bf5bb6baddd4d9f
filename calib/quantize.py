"""INT8 post-training quantization in two flavours, on a calibration set of real faces, with a report.

* ``trt``: NVIDIA Model Optimizer (``modelopt.onnx.quantization.quantize``, INT8 Q/DQ,
  ``high_precision_dtype="fp16"`` by default) — the explicit-quantization graph TensorRT
  wants. ONNX Runtime on CPU runs it *slower* than FP32 (it does not fuse this Q/DQ shape,
  and fp16 islands are emulated), so it is for ``ffd build-engine``, not for CPU serving.
* ``cpu``: ONNX Runtime's own ``quantize_static`` (U8 activations, S8 per-channel weights,
  QDQ by default or QOperator), which the CPU execution provider fuses into integer kernels.
  Importing ``modelopt.onnx.quantization`` patches ONNX Runtime's calibrators, so this
  flavour always runs in a separate process.

Both outputs keep the ModelCard (``extra.int8_flavour``, calibration method/count/checksum
added) so every runtime reads the spec and threshold. Calibration data come only from
:func:`calib.calibset.load_calibset` (which refuses empty, changed or other-spec sets):
there is no random fallback. The report compares FP32 and each INT8 model on an evaluation
set (AUC, accuracy at the card's threshold, label agreement, max/mean |diff|) and lists which
Conv/Gemm/MatMul nodes are quantized.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.errors import CalibrationError, ConfigError, ModelError, require
from edge.outputs import commit, temp_path
from edge.runtime.base import CPU_ONLY_TARGET
from edge.runtime.compare import compare_scores
from edge.spec import ModelCard
from edge.tools.check_onnx import QUANTIZABLE

TARGETS = ("trt", "cpu", "both")
TRT_METHODS = ("entropy", "max")  # modelopt INT8 calibrators
CPU_METHODS = {"entropy": "Entropy", "max": "MinMax", "minmax": "MinMax", "percentile": "Percentile"}
# each flavour's calibration when none is asked for. CPU: percentile, measured against entropy on the demo's
# MobileNetV2 student (same 512 calibration faces, per-source held-out faces, README "INT8"): largest per-source
# AUC drop 0.0095 vs 0.0150, FP32-label agreement 96.5-97.4 % vs 95.4-96.7 %. ONNX Runtime's "entropy" through
# quantize_static is MinMax in disguise: its EntropyCalibrater gets num_bins = num_quantized_bins = 128 there
# (quantize_static passes no bin counts), so the KL search has one candidate, the full range (measured: the
# same scales and scores as --method max)
DEFAULT_METHOD = {"trt": "entropy", "cpu": "percentile"}
INT_OPS = ("QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "QGemm", "QLinearAdd",
           "QLinearGlobalAveragePool", "QLinearMul", "QLinearSigmoid")


# --- graph inspection ----------------------------------------------------------------------
def quantized_nodes(model) -> dict:
    """Counts of Q/DQ and integer ops, and which compute nodes (Conv/Gemm/MatMul) run in INT8."""
    import onnx

    from edge.onnx_model import load_onnx

    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model)
    nodes = model.graph.node
    produced_by_dq = {o for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    quantized, fp = [], []
    for n in nodes:
        if n.op_type in INT_OPS:
            quantized.append(f"{n.op_type}:{n.name}")
        elif n.op_type in QUANTIZABLE:
            (quantized if len(n.input) > 1 and n.input[1] in produced_by_dq and n.input[0] in produced_by_dq
             else fp).append(f"{n.op_type}:{n.name}")
    return {"quantize_linear": counts.get("QuantizeLinear", 0), "dequantize_linear": counts.get("DequantizeLinear", 0),
            "integer_ops": {k: v for k, v in counts.items() if k in INT_OPS},
            "quantized_compute": quantized, "float_compute": fp, "op_counts": counts}


def is_quantized(model) -> bool:
    q = quantized_nodes(model)
    return bool(q["quantize_linear"] or q["dequantize_linear"] or q["integer_ops"])


@contextlib.contextmanager
def _artefact(out: Path):
    """A free temporary path beside ``out`` for a quantizer to write; it replaces ``out`` only when the block
    ends cleanly, and is removed otherwise, so a failed or killed run never leaves a half-written artefact
    nor loses the one a previous run wrote there."""
    tmp = temp_path(out)
    tmp.unlink()  # the quantizers create the file themselves: its existence then means they wrote it
    try:
        yield tmp
        commit(tmp, out)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _reattach_card(path: Path, card: ModelCard, extra: dict) -> ModelCard:
    import onnx

    from .export import set_metadata

    m = onnx.load(str(path))
    new = card.replace(extra={**card.extra, **extra})
    set_metadata(m, new)
    onnx.save(m, str(path))
    return new


# --- the two flavours ----------------------------------------------------------------------
def quantize_trt(onnx_path: Path, x: np.ndarray, out: Path, *, method: str = "entropy",
                 exclude_op: Sequence[str] = (), exclude_node: Sequence[str] = (), high_precision: str = "fp16",
                 calibration_eps: Sequence[str] | None = None) -> Path:
    """Model Optimizer INT8 Q/DQ (TensorRT explicit quantization)."""
    if method not in TRT_METHODS:
        raise ConfigError(f"Model Optimizer INT8 calibrates with {TRT_METHODS}, not {method!r}",
                          fix="use --method entropy or max for --target trt (percentile: --target cpu)")
    require("modelopt.onnx.quantization", "calib", "INT8 quantization with Model Optimizer")
    from modelopt.onnx.quantization import quantize as mo_quantize

    eps = list(calibration_eps) if calibration_eps else _default_eps()
    bs = int(min(32, x.shape[0]))
    s = x.shape[-1]
    mo_quantize(str(onnx_path), quantize_mode="int8", calibration_data={"input": x}, calibration_method=method,
                calibration_shapes=f"input:{bs}x3x{s}x{s}", calibration_eps=eps,
                op_types_to_exclude=list(exclude_op) or None, nodes_to_exclude=list(exclude_node) or None,
                high_precision_dtype=high_precision, output_path=str(out), log_level="WARNING")
    if not out.is_file():
        raise ModelError("Model Optimizer did not write its output", path=out, fix="run with --debug")
    return out


def _default_eps() -> list[str]:
    import onnxruntime as ort

    return ["cuda:0", "cpu"] if "CUDAExecutionProvider" in ort.get_available_providers() else ["cpu"]


def _ort_static_worker(onnx_path: str, calib_dir: str, spec_json: str, out: str, method: str, fmt: str,
                       exclude_op: list, exclude_node: list, per_channel: bool) -> str:
    """Runs in a child process (no modelopt there): ONNX Runtime quantize_static, U8S8."""
    import tempfile
    import warnings

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quant_pre_process, quantize_static)

    from edge.spec import PreprocessSpec

    from .calibset import load_calibset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        x, _ = load_calibset(calib_dir, PreprocessSpec.from_json(spec_json))

    # equal batch sizes: ORT's percentile/distribution collectors stack per-batch arrays
    bs = max(d for d in range(1, 17) if x.shape[0] % d == 0)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([x[i:i + bs] for i in range(0, x.shape[0], bs)])

        def get_next(self):
            b = next(self._it, None)
            return None if b is None else {"input": b}

    op_types = [o for o in ("Conv", "Gemm", "MatMul", "Add", "Mul", "GlobalAveragePool", "ReduceMean",
                            "Relu", "Clip", "MaxPool", "AveragePool", "Concat", "Sigmoid") if o not in exclude_op]
    with tempfile.TemporaryDirectory() as td:
        pre = os.path.join(td, "pre.onnx")
        quant_pre_process(onnx_path, pre, skip_symbolic_shape=True)
        quantize_static(pre, out, Reader(), quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        op_types_to_quantize=op_types, nodes_to_exclude=list(exclude_node) or None,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, CPU_METHODS[method]),
                        extra_options={"CalibMovingAverage": False})
    return out


def quantize_cpu(onnx_path: Path, calib_dir: Path, spec, out: Path, *, method: str = "entropy", fmt: str = "qdq",
                 exclude_op: Sequence[str] = (), exclude_node: Sequence[str] = (), per_channel: bool = True) -> Path:
    """ONNX Runtime static INT8 (U8S8) in a child process, isolated from modelopt's patches."""
    import subprocess
    import sys

    if method not in CPU_METHODS:
        raise ConfigError(f"ONNX Runtime calibrates with {sorted(CPU_METHODS)}, not {method!r}")
    if fmt not in ("qdq", "qoperator"):
        raise ConfigError(f"--cpu-format must be qdq or qoperator, got {fmt!r}")
    args = {"onnx_path": str(onnx_path), "calib_dir": str(calib_dir), "spec_json": spec.to_json(), "out": str(out),
            "method": method, "fmt": fmt, "exclude_op": list(exclude_op), "exclude_node": list(exclude_node),
            "per_channel": per_channel}
    code = "import json, sys; from calib.quantize import _ort_static_worker as w; w(**json.loads(sys.argv[1]))"
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    p = subprocess.run([sys.executable, "-c", code, json.dumps(args)], env=env, capture_output=True, text=True)
    if p.returncode != 0 or not out.is_file():
        raise _worker_error(p.returncode, p.stderr, onnx_path, calib_dir, spec.size)
    return out


def _worker_error(returncode: int, stderr: str, onnx_path, calib_dir, size: int) -> ModelError:
    """The one-line error for a failed ONNX Runtime calibration child, by how it ended.

    ONNX Runtime's calibrators keep every calibration batch's activations in memory before they reduce
    them (512 faces of a 224-px MobileNetV2 outgrew 22 GB here), so a large calibration set at a large
    input size is killed by the kernel's OOM killer, with no output at all.
    """
    import signal

    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = " (most likely out of memory)" if -returncode == signal.SIGKILL else ""
        return ModelError(f"ONNX Runtime static quantization was killed by {name}{why} while calibrating on "
                          f"{calib_dir} at {size} px", path=onnx_path,
                          fix="use fewer calibration faces (ffd calib build --n, e.g. 256) or more memory")
    tail = (stderr.strip().splitlines() or ["(no output)"])[-1]
    return ModelError(f"ONNX Runtime static quantization failed: {tail}", path=onnx_path,
                      fix="exclude the failing op/node with --exclude-op/--exclude-node, or run with --debug")


# --- evaluation ----------------------------------------------------------------------------
def label_metrics(scores: np.ndarray, y: np.ndarray, card: ModelCard) -> dict:
    """AUC (None with one class only) and accuracy at the card's threshold (:mod:`train.metrics`)."""
    from train.metrics import accuracy, auc

    both = bool(np.any(y == 1) and np.any(y == 0))
    return {"auc": auc(scores, y) if both else None, "accuracy": accuracy(scores, y, card.threshold)}


def eval_set(eval_dirs: Sequence[str | os.PathLike], spec, n: int = 256, detector_model=None, seed: int = 0,
             crops: bool = False):
    """Labelled faces from folders with ``real/`` and ``fake/`` subfolders -> (x, y); n split over the classes.

    ``crops=False``: images, faces detected and cropped per ``spec``; ``True``: ready face crops (resized).
    """
    from edge.spec import preprocess

    from .calibset import collect_faces

    xs, labels = [], []
    for cls, lab in (("real", 0), ("fake", 1)):
        dirs = [Path(d) / c for d in eval_dirs for c in (cls, cls.upper(), cls.capitalize()) if (Path(d) / c).is_dir()]
        if not dirs:
            raise ConfigError(f"no '{cls}' subfolder in the evaluation data", path=", ".join(map(str, eval_dirs)),
                              fix="pass --eval/--eval-crops folders that hold real/ and fake/ subfolders")
        c, _ = collect_faces([] if crops else dirs, spec, n // 2, crops=dirs if crops else (),
                             detector_model=detector_model, seed=seed)
        xs += c
        labels += [lab] * len(c)
    return preprocess(xs, spec), np.asarray(labels, np.int64)


def compare(fp32_scores: np.ndarray, q_scores: np.ndarray, card: ModelCard, y: np.ndarray | None) -> dict:
    """An INT8 flavour against FP32 (:func:`edge.runtime.compare.compare_scores`), plus AUC/accuracy with labels."""
    r = compare_scores(fp32_scores, q_scores, card)
    if y is not None:
        r.update(label_metrics(q_scores, y, card))
    return r


def _scores(path: Path, x: np.ndarray) -> np.ndarray:
    from edge.runtime.ort import OrtRunner

    with OrtRunner(path) as r:
        return np.concatenate([r.infer(x[i:i + 64]) for i in range(0, len(x), 64)])


# --- the public entry point ----------------------------------------------------------------
def quantize_onnx(onnx_path: str | os.PathLike, calib_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                  *, target: str = "both", method: str | None = None, exclude_op: Sequence[str] = (),
                  exclude_node: Sequence[str] = (), high_precision: str = "fp16", cpu_format: str = "qdq",
                  per_channel: bool = True, calibration_eps: Sequence[str] | None = None,
                  eval_data: Sequence[str | os.PathLike] = (), eval_crops: Sequence[str | os.PathLike] = (),
                  eval_n: int = 256, detector_model=None,
                  verbose: bool = True) -> dict:
    """FP32 ONNX (from ``ffd export``) + calibration dir -> INT8 artefact(s) and a report dict (also JSON on disk).

    ``method``: the calibration of both flavours; ``None``: each flavour's own (:data:`DEFAULT_METHOD`)."""
    from edge.onnx_model import card_from_props, load_onnx, metadata

    from .calibset import load_calibset

    if target not in TARGETS:
        raise ConfigError(f"--target must be one of {TARGETS}, got {target!r}")
    if high_precision not in ("fp16", "fp32"):
        raise ConfigError(f"--high-precision must be fp16 or fp32, got {high_precision!r}")
    src = Path(onnx_path)
    model = load_onnx(src, fix="quantize the FP32 ONNX from `ffd export`")  # read once: card and graph
    card = card_from_props(metadata(model), src)
    if is_quantized(model):
        raise ModelError("the model is already quantized", path=src, fix="quantize the FP32 ONNX from `ffd export`")
    if not calib_dir:
        raise CalibrationError("no calibration set given (random calibration is never used)",
                               fix="build one with `ffd calib build` and pass --calib DIR")
    x, manifest = load_calibset(calib_dir, card.spec)
    out_dir = Path(out_dir) if out_dir else src.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    calib_info = {"count": int(x.shape[0]), "sha256": manifest["sha256"][:16], "fingerprint": manifest["fingerprint"]}
    artefacts: dict[str, dict] = {}
    t0 = time.time()
    if target in ("trt", "both"):
        out = out_dir / f"{src.stem}.int8-trt.onnx"
        m = method or DEFAULT_METHOD["trt"]
        flavour = f"modelopt-qdq-int8-{high_precision}"
        with _artefact(out) as tmp:
            quantize_trt(src, x, tmp, method=m, exclude_op=exclude_op, exclude_node=exclude_node,
                         high_precision=high_precision, calibration_eps=calibration_eps)
            _reattach_card(tmp, card, {"int8_flavour": flavour, "int8_target": "tensorrt",
                                       "calibration": {"method": m, **calib_info}})
        artefacts["trt"] = {"path": str(out), "flavour": flavour, "method": m, "seconds": round(time.time() - t0, 1)}
    if target in ("cpu", "both"):
        t1 = time.time()
        out = out_dir / f"{src.stem}.int8-cpu.onnx"
        m = method or DEFAULT_METHOD["cpu"]
        flavour = f"ort-static-{cpu_format}-u8s8{'-per-channel' if per_channel else ''}"
        with _artefact(out) as tmp:
            quantize_cpu(src, Path(calib_dir), card.spec, tmp, method=m, fmt=cpu_format, exclude_op=exclude_op,
                         exclude_node=exclude_node, per_channel=per_channel)
            _reattach_card(tmp, card, {"int8_flavour": flavour, "int8_target": CPU_ONLY_TARGET,
                                       "calibration": {"method": m, **calib_info}})
        artefacts["cpu"] = {"path": str(out), "flavour": flavour, "method": m, "seconds": round(time.time() - t1, 1)}

    # evaluation: labelled faces when given, else agreement on the calibration faces
    if eval_data or eval_crops:
        parts = [eval_set(d, card.spec, eval_n, detector_model, crops=c) for d, c in ((eval_data, False),
                                                                                     (eval_crops, True)) if d]
        xe, ye = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        where = f"{len(ye)} labelled faces from {', '.join(map(str, [*eval_data, *eval_crops]))}"
    else:
        xe, ye = x[:eval_n], None
        where = f"{min(eval_n, len(x))} calibration faces (no labels: pass --eval for AUC)"
    s32 = _scores(src, xe)
    fp32 = {"path": str(src), "flavour": "fp32"}
    if ye is not None:
        fp32.update(label_metrics(s32, ye, card))
    for a in artefacts.values():
        a.update(compare(s32, _scores(Path(a["path"]), xe), card, ye))
        a["nodes"] = quantized_nodes(a["path"])
        if ye is not None and a.get("auc") is not None and fp32.get("auc") is not None:
            a["auc_drop"] = fp32["auc"] - a["auc"]
    report = {"model": card.model_id(), "fp32": fp32, "int8": artefacts, "evaluation": where,
              "calibration": {**calib_info, "dir": str(calib_dir), "sources": manifest.get("sources")}}
    rpath = out_dir / f"{src.stem}.int8-report.json"
    rpath.write_text(json.dumps(report, indent=1, default=str))
    report["report_path"] = str(rpath)
    if verbose:
        print(format_report(report))
    return report


def format_report(r: dict) -> str:
    f = lambda v, p=4: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    lines = [f"evaluation on {r['evaluation']}",
             f"{'model':<10} {'flavour':<32} {'AUC':>7} {'acc':>7} {'agree':>7} {'max|d|':>8} {'Q/DQ':>9} "
             f"{'int8 conv/gemm':>15}",
             f"{'fp32':<10} {'fp32':<32} {f(r['fp32'].get('auc')):>7} {f(r['fp32'].get('accuracy')):>7} "
             f"{'-':>7} {'-':>8} {'-':>9} {'-':>15}"]
    for k, a in r["int8"].items():
        n = a["nodes"]
        q = len(n["quantized_compute"])
        lines.append(f"{'int8-' + k:<10} {a['flavour']:<32} {f(a.get('auc')):>7} {f(a.get('accuracy')):>7} "
                     f"{a['label_agreement']:>7.1%} {a['max_abs_diff']:>8.4f} "
                     f"{n['quantize_linear']:>4}/{n['dequantize_linear']:<4} {q:>6}/{q + len(n['float_compute']):<8}")
    for k, a in r["int8"].items():
        if a["nodes"]["float_compute"]:
            lines.append(f"int8-{k}: left in float: {', '.join(a['nodes']['float_compute'][:12])}")
        lines.append(f"int8-{k}: {a['path']}")
    lines.append(f"report: {r.get('report_path', '')}")
    return "\n".join(lines)
