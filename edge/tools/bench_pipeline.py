"""``ffd bench``: the classifier across backends × precisions × batch sizes, and the end-to-end pipeline.

*Classifier*: for each configuration (model file × backend × ONNX Runtime threads) and batch
size, latency percentiles of ``runner.infer`` on a fixed random batch (after warm-up),
throughput in faces/s and memory (current RSS after the run and the process peak). The
precision is read from the model (``int8`` when the ONNX graph has QuantizeLinear/QLinear/
Integer ops, ``fp16`` with half-precision weights, else ``fp32``; engines: their sidecar).
TensorRT engines go through :func:`edge.runtime.trt.bench_engine` (H2D/compute/D2H split).

*Pipeline*: :func:`edge.detect.run_detect` on a video with detection on every frame: ms per frame
of decode, detect, preprocess (crop + normalise), infer and output, the achieved fps and the
slowest stage.

Outputs: ``bench.json``, ``bench.md`` (markdown tables; with ``compare`` a side-by-side table,
one column per configuration) and ``bench.png`` (matplotlib when importable; otherwise the
plot is skipped with a note). Numbers are measured side by side in one run; nothing asserts a speed.
"""
from __future__ import annotations

import json
import os
import platform
import time
from itertools import product
from pathlib import Path
from typing import Sequence

import numpy as np

from .bench import current_rss_mb, peak_rss_mb, percentiles, time_calls
from ..errors import BackendUnavailableError, ConfigError, ModelError
from ..onnx_model import read_card
from ..runtime.base import cpu_only


def model_precision(path: str | os.PathLike) -> str:
    """``int8`` / ``fp16`` / ``fp32`` of an ONNX graph, or of an engine from its build sidecar (``engine``
    when the sidecar is missing or unreadable)."""
    p = Path(path)
    if p.suffix == ".onnx":
        from ..onnx_model import load_onnx, onnx_precision

        prec = onnx_precision(load_onnx(p))
    else:
        from ..runtime.engine_cache import read_sidecar

        try:
            opts = read_sidecar(p)["inputs"]["options"]
        except (ModelError, KeyError, TypeError):
            return "engine"
        prec = "fp16" if opts.get("fp16") else str(opts.get("precision", "engine"))
    return "int8" if prec.startswith("int8") else prec


def _config_name(model: Path, backend: str, threads: int | None) -> str:
    return f"{model.stem}/{backend}" + (f"/t{threads}" if threads else "")


def bench_classifier(model: str | os.PathLike, backend: str = "ort", batch_sizes: Sequence[int] = (1, 8, 32),
                     iters: int = 50, warmup: int = 5, threads: int | None = None,
                     cuda_graph: bool = False) -> list[dict]:
    """One row per batch size: latency percentiles (ms), faces/s, RSS (``cuda_graph``: TensorRT replays graphs)."""
    model = Path(model)
    prec = model_precision(model)
    base = {"config": _config_name(model, backend, threads), "model": str(model), "backend": backend,
            "precision": prec, "threads": threads}
    rows = []
    if backend == "trt":
        from ..runtime.trt import bench_engine, ensure_engine

        engine = ensure_engine(model) if model.suffix == ".onnx" else model  # built once, then cached
        res = bench_engine(engine, batch_sizes=batch_sizes, iters=iters, warmup=warmup, cuda_graph=cuda_graph)
        for r in res["results"]:
            lat = r["latency_ms"]["host_wall"]
            stages = {k: r["latency_ms"][k] for k in TRT_STAGES if k in r["latency_ms"]}
            rows.append({**base, "batch": r["batch"], "latency_ms": lat, "gpu_ms": r["latency_ms"].get("gpu_total"),
                         "stages_ms": stages, "throughput_per_s": r["throughput_per_s"], "rss_mb": current_rss_mb(),
                         "peak_rss_mb": peak_rss_mb(), "engine": {k: res.get(k) for k in TRT_ENV_KEYS}})
        rows += [{**base, "batch": s["batch"], "skipped": s["reason"]} for s in res.get("skipped", [])]
        return rows
    from ..runtime import open_runner

    kw = {"intra_op_threads": threads} if threads else {}
    rng = np.random.default_rng(0)
    with open_runner(model, backend, **kw) as r:
        s = r.card.spec.size
        for b in batch_sizes:
            x = rng.standard_normal((int(b), 3, s, s)).astype(np.float32)
            t = time_calls(lambda x=x: r.infer(x), iters=iters, warmup=warmup)
            rows.append({**base, "batch": int(b), "latency_ms": percentiles(t),
                         "throughput_per_s": b * len(t) / (sum(t) / 1e3), "rss_mb": current_rss_mb(),
                         "peak_rss_mb": peak_rss_mb()})
    return rows


def bench_e2e(video: str | os.PathLike, model: str | os.PathLike, backend: str = "auto", threads: int | None = None,
              max_frames: int | None = 300, batch_size: int = 16, detector_model=None,
              det_max_side: int | None = None) -> dict:
    """The pipelined detect loop on ``video`` (every frame detected, nothing written): stage ms and fps."""
    from ..detect import run_detect

    runner_kw = {"intra_op_threads": threads} if threads and backend == "ort" else {}
    st = run_detect(str(video), str(model), backend=backend, max_frames=max_frames, batch_size=batch_size,
                    detector_model=detector_model, runner_kw=runner_kw, rss_every=50, det_max_side=det_max_side)
    d = st.to_dict()
    d.update(config=_config_name(Path(model), backend, threads) + (f"/det{det_max_side}" if det_max_side else ""),
             video=str(video))
    return d


def _env() -> dict:
    import onnxruntime as ort

    return {"machine": platform.machine(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "onnxruntime": ort.__version__, "time": time.strftime("%Y-%m-%d %H:%M:%S")}


TRT_STAGES = ("h2d", "gpu_compute", "d2h", "gpu_total")
TRT_ENV_KEYS = ("tensorrt_version", "gpu", "compute_capability", "profile")


def to_markdown(res: dict) -> str:
    lines = []
    cls = [r for r in res["classifier"] if "skipped" not in r]
    if cls:
        lines += ["| config | precision | batch | p50 ms | p90 ms | p99 ms | faces/s | RSS MiB |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in cls:
            L = r["latency_ms"]
            lines.append(f"| {r['config']} | {r['precision']} | {r['batch']} | {L['p50']:.3f} | {L['p90']:.3f} | "
                         f"{L['p99']:.3f} | {r['throughput_per_s']:.0f} | {r['rss_mb']:.0f} |")
    trt = [r for r in cls if r.get("stages_ms")]
    if trt:  # what trtexec reports: host wall time, and H2D / GPU compute / D2H from CUDA events
        lines += ["", "TensorRT, ms as min / median / p90 / p95 / p99 (CUDA events; host = wall time per batch):", "",
                  "| config | batch | host | H2D | GPU compute | D2H | GPU total | engine |",
                  "|---|---:|---|---|---|---|---|---|"]

        def five(d: dict | None) -> str:
            if not (d and d.get("n")):
                return "-"
            return " / ".join(f"{d[k]:.3f}" for k in ("min", "median", "p90", "p95", "p99"))

        for r in trt:
            st, e = r["stages_ms"], r.get("engine") or {}
            lines.append(f"| {r['config']} | {r['batch']} | {five(r['latency_ms'])} | "
                         + " | ".join(five(st.get(k)) for k in TRT_STAGES)
                         + f" | TensorRT {e.get('tensorrt_version')}, {e.get('gpu')} "
                           f"(sm {e.get('compute_capability')}) |")
    if res.get("compare") and cls:
        configs = list(dict.fromkeys(r["config"] for r in cls))
        batches = sorted({r["batch"] for r in cls})
        cell = {(r["config"], r["batch"]): r for r in cls}
        lines += ["", "Side by side (p50 ms / faces/s):", "",
                  "| batch | " + " | ".join(configs) + " |", "|---:|" + "---:|" * len(configs)]
        for b in batches:
            cells = [f"{cell[c, b]['latency_ms']['p50']:.2f} / {cell[c, b]['throughput_per_s']:.0f}"
                     if (c, b) in cell else "-" for c in configs]
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
    if res.get("pipeline"):
        lines += ["", "| pipeline config | frames | fps | decode | detect | preprocess | infer | output | slowest |"
                      " peak RSS MiB |", "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for p in res["pipeline"]:
            ms = p["stage_ms"]
            stage = " | ".join(f"{ms[s].get('mean', 0):.1f}" for s in ("decode", "detect", "preprocess", "infer",
                                                                       "output"))
            lines.append(f"| {p['config']} | {p['frames_processed']} | {p['fps']:.1f} | {stage} | "
                         f"{p['limiting_stage']} | {p['peak_rss_mb']:.0f} |")
    skipped = [r for r in res["classifier"] if "skipped" in r]
    lines += [f"- skipped {r['config']} batch {r['batch']}: {r['skipped']}" for r in skipped]
    lines += [f"- {n}" for n in res.get("notes", [])]
    return "\n".join(lines) + "\n"


def plot(res: dict, path: Path) -> str | None:
    """Throughput vs batch per configuration (and pipeline stage ms); returns a note when skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'ffd-edge[train]')"
    cls = [r for r in res["classifier"] if "skipped" not in r]
    n = 1 + bool(res.get("pipeline"))
    fig, axes = plt.subplots(1, n, figsize=(6 * n, 4), squeeze=False)
    ax = axes[0][0]
    for c in dict.fromkeys(r["config"] for r in cls):
        rs = [r for r in cls if r["config"] == c]
        ax.plot([r["batch"] for r in rs], [r["throughput_per_s"] for r in rs], marker="o", label=c)
    ax.set(xscale="log", xlabel="batch size", ylabel="faces/s", title="classifier throughput")
    ax.legend(fontsize=7)
    if n == 2:
        ax = axes[0][1]
        stages = ("decode", "detect", "preprocess", "infer", "output")
        names = [p["config"] for p in res["pipeline"]]
        bottom = np.zeros(len(names))
        for s in stages:
            v = np.array([p["stage_ms"][s].get("mean", 0.0) for p in res["pipeline"]])
            ax.bar(names, v, bottom=bottom, label=s)
            bottom += v
        ax.set(ylabel="ms per frame (stage means)", title="pipeline stages")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def run_bench(models: Sequence[str | os.PathLike], backends: Sequence[str] = ("ort",),
              batch_sizes: Sequence[int] = (1, 8, 32), threads: Sequence[int | None] = (None,),
              video: str | os.PathLike | None = None, out_dir: str | os.PathLike = "bench_out", iters: int = 50,
              max_frames: int = 300, compare: bool = False, detector_model=None, cuda_graph: bool = False) -> dict:
    """Every (model, backend, threads) configuration; writes bench.json/.md/.png into ``out_dir``.

    ``cuda_graph``: TensorRT configurations replay a captured CUDA graph per batch size (host wall
    time only: events cannot sit inside a graph)."""
    from ..settings import RANGES, check, check_all

    batch_sizes, iters = check_all("batch_sizes", batch_sizes, *RANGES["batch_size"]), check("iters", iters)
    threads = [check("threads", t) for t in threads]
    max_frames = check("max_frames", max_frames, allow_none=False)
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output folder: {e.strerror or e}", path=out) from e
    if not models:
        raise ConfigError("give at least one model (.onnx or .engine)")
    res: dict = {"env": _env(), "compare": compare, "classifier": [], "pipeline": [], "notes": []}
    unavailable: list[BackendUnavailableError] = []
    for model, backend, t in product(map(Path, models), backends, threads):
        if backend == "trt" and model.suffix == ".onnx":
            if cpu_only(read_card(model)):
                res["notes"].append(f"{model.name}: ONNX Runtime's CPU INT8 does not build for TensorRT; "
                                    "bench the *.int8-trt.onnx with trt (skipped)")
                continue
        if backend != "trt" and model.suffix != ".onnx":
            res["notes"].append(f"{model.name}: {backend} runs ONNX files (skipped)")
            continue
        try:
            res["classifier"] += bench_classifier(model, backend, batch_sizes, iters=iters, threads=t,
                                                  cuda_graph=cuda_graph)
        except BackendUnavailableError as e:  # e.g. no TensorRT here: keep the other configurations' figures
            unavailable.append(e)
            res["notes"].append(f"{model.name}/{backend}: skipped: {e}")
            continue
        if video is not None:
            res["pipeline"].append(bench_e2e(video, model, backend, t, max_frames=max_frames,
                                             detector_model=detector_model))
    if unavailable and not res["classifier"]:
        raise unavailable[0]  # nothing could run: the error itself, not an empty report
    note = plot(res, out / "bench.png")
    if note:
        res["notes"].append(note)
    from ..outputs import atomic_write_text

    atomic_write_text(out / "bench.json", json.dumps(res, indent=1))  # all or nothing
    atomic_write_text(out / "bench.md", to_markdown(res))
    res["files"] = [str(out / f) for f in ("bench.json", "bench.md", "bench.png") if (out / f).exists()]
    return res
