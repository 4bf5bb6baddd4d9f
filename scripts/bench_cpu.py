"""CPU benchmark of the deployment chain: teacher and student in PyTorch eager, student in ONNX Runtime FP32
and INT8 (Model Optimizer's Q/DQ and ONNX Runtime's own U8S8), face crops/s at batch 1 and 32.

    python scripts/bench_cpu.py [--student CKPT] [--teacher CKPT] [--size S] [--threads 2]
                                [--json docs/bench_cpu.json]

Trained checkpoints are used when given or found under ``runs/`` (newest ``student_*`` /
``teacher_*``); otherwise models are freshly initialised (speed does not depend on the weights;
AUC does, and the table says which). The student is exported (``calib.export``), calibrated on
real faces from ``$FFD_SHARED/data`` (``calib.calibset``) and quantized to both INT8 flavours
(``calib.quantize``); the FP32-vs-INT8 AUC comes from that report (ciplab full_160 real/fake).
Every configuration runs in its own subprocess so peak RSS is its own; inputs are real face
crops from the calibration set. Numbers are medians of one run on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BATCHES = (1, 32)


# --- one configuration, in a child process -------------------------------------------------
def worker(cfg: dict) -> dict:
    import numpy as np

    from edge.tools.bench import peak_rss_mb, percentiles, time_calls

    x_all = np.load(cfg["inputs"])
    out = {"name": cfg["name"], "batches": {}}
    if cfg["kind"] == "torch":
        import torch

        from train.checkpoint import load_checkpoint

        torch.set_num_threads(cfg["threads"])
        model = load_checkpoint(cfg["model"])[0]  # always a checkpoint: fresh models are saved by fresh_ckpt

        def make(b):
            xb = torch.from_numpy(x_all[np.arange(b) % len(x_all)])

            def call():
                with torch.inference_mode():
                    model(xb)
            return call
    else:
        from edge.runtime.ort import OrtRunner

        runner = OrtRunner(cfg["model"], intra_op_threads=cfg["threads"])

        def make(b):
            xb = np.ascontiguousarray(x_all[np.arange(b) % len(x_all)])
            return lambda: runner.infer(xb)
    for b in BATCHES:
        iters = cfg["iters_b1"] if b == 1 else cfg["iters_b32"]
        if cfg.get("slow"):  # the teacher: a few calls are enough for a median of multi-second calls
            iters = max(3, iters // 4)
        ms = time_calls(make(b), iters=iters, warmup=3 if b == 1 else 2, min_time_s=cfg["min_time_s"])
        p = percentiles(ms)
        out["batches"][str(b)] = {"crops_per_s": b * 1e3 / p["p50"], "p50_ms": p["p50"], "p90_ms": p["p90"],
                                  "p99_ms": p["p99"], "n": p["n"]}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def run_worker(cfg: dict, timeout: int = 900) -> dict:
    p = subprocess.run([sys.executable, __file__, "--worker", json.dumps(cfg)], capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT)
    if p.returncode != 0:
        return {"name": cfg["name"], "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# --- preparation ---------------------------------------------------------------------------
def newest(pattern: str) -> Path | None:
    from train.checkpoint import read_checkpoint

    found = []
    for f in (ROOT / "runs").rglob("*.pt") if (ROOT / "runs").is_dir() else []:
        if "/." in str(f.relative_to(ROOT)):
            continue  # temporary folders of runs in progress
        try:
            if read_checkpoint(f)["model_name"].startswith(pattern):
                found.append(f)
        except Exception:  # noqa: BLE001 - not a checkpoint of ours
            continue
    return max(found, key=lambda f: f.stat().st_mtime) if found else None


def fresh_ckpt(name: str, size: int, path: Path) -> Path:
    import torch

    from edge.spec import ModelCard, PreprocessSpec
    from train.checkpoint import save_checkpoint
    from train.registry import create_model

    torch.manual_seed(0)
    return save_checkpoint(path, create_model(name), ModelCard(name, PreprocessSpec(size=size), version="untrained"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", type=Path)
    ap.add_argument("--teacher", type=Path)
    ap.add_argument("--student-model", default="student_small")
    ap.add_argument("--teacher-model", default="teacher_dual")
    ap.add_argument("--size", type=int, help="crop size for fresh models (default: the student checkpoint's, else 128)")
    ap.add_argument("--fresh", action="store_true", help="ignore checkpoints under runs/: freshly initialised models")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-n", type=int, default=512)
    ap.add_argument("--eval-n", type=int, default=400)
    ap.add_argument("--iters-b1", type=int, default=60)
    ap.add_argument("--iters-b32", type=int, default=12)
    ap.add_argument("--min-time-s", type=float, default=2.0)
    ap.add_argument("--eval", type=Path, nargs="*", help="image folders with real/ and fake/ (default: ciplab full_160 "
                    "when no --eval-crops)")
    ap.add_argument("--eval-crops", type=Path, nargs="*", help="ready-crop folders with real/ and fake/ (default: "
                    "runs/fretal/source_eval when present: held-out reals + SBI fakes of the trained student's domain)")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("FFD_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "bench_cpu.json")
    ap.add_argument("--work", type=Path, help="keep the exported/quantized models here (default: a temp dir)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))))
        return

    from calib.calibset import build_calibset
    from calib.export import export_onnx
    from calib.quantize import quantize_onnx
    from train.checkpoint import read_checkpoint

    data = a.shared / "data"
    os.environ.setdefault("FFD_YUNET_MODEL", str(a.shared / "models" / "face_detection_yunet.onnx"))
    work = a.work or Path(tempfile.mkdtemp(prefix="ffd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    student = a.student or (None if a.fresh else newest("student_"))
    size = a.size or (read_checkpoint(student)["card"].spec.size if student else 128)
    trained_student = student is not None
    if student is None:
        student = fresh_ckpt(a.student_model, size, work / "student_fresh.pt")
    teacher = a.teacher or (None if a.fresh else newest("teacher_"))
    trained_teacher = teacher is not None
    if teacher is None:
        teacher = fresh_ckpt(a.teacher_model, size, work / "teacher_fresh.pt")
    s_blob, t_blob = read_checkpoint(student), read_checkpoint(teacher)
    print(f"student: {student} ({s_blob['model_name']}, {'trained' if trained_student else 'fresh init'}), "
          f"teacher: {teacher} ({t_blob['model_name']}, {'trained' if trained_teacher else 'fresh init'}), size {size}")

    t0 = time.time()
    fp32 = Path(export_onnx(student, work / "student.onnx", parity_data=[data / "london_faces" / "neutral"],
                            parity_n=32)["path"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calib = build_calibset(fp32, [data / "london_faces" / "smiling", data / "interfaces_cc0" / "img_500",
                                      data / "ciplab_real_fake_160" / "full_160" / "real"], work / "calib",
                               n=a.calib_n)
    default_crops = ROOT / "runs" / "fretal" / "source_eval"
    eval_crops = a.eval_crops if a.eval_crops is not None else ([default_crops] if default_crops.is_dir() else [])
    evals = a.eval if a.eval is not None else ([] if eval_crops else [data / "ciplab_real_fake_160" / "full_160"])
    ev = {"eval_data": evals, "eval_crops": eval_crops, "eval_n": a.eval_n}
    rep_trt = quantize_onnx(fp32, work / "calib", work, target="both", **ev)
    # Model Optimizer's Q/DQ with fp32 instead of fp16 around the INT8 ops: what CPU would run of it at best
    (work / "fp32hp").mkdir(exist_ok=True)
    rep_hp = quantize_onnx(fp32, work / "calib", work / "fp32hp", target="trt", high_precision="fp32", **ev)
    prep_s = time.time() - t0

    common = {"inputs": str(work / "calib" / "calib.npy"), "threads": a.threads, "iters_b1": a.iters_b1,
              "iters_b32": a.iters_b32, "min_time_s": a.min_time_s}
    configs = [
        {"name": f"FP32 teacher ({t_blob['model_name']}) PyTorch eager", "kind": "torch", "model": str(teacher),
         "slow": True},
        {"name": f"FP32 student ({s_blob['model_name']}) PyTorch eager", "kind": "torch", "model": str(student)},
        {"name": "FP32 student ORT", "kind": "ort", "model": str(fp32), "report": ("fp32", None)},
        {"name": "INT8 student ORT, Model Optimizer Q/DQ (fp16, TensorRT artefact)", "kind": "ort",
         "model": rep_trt["int8"]["trt"]["path"], "report": ("trt", rep_trt)},
        {"name": "INT8 student ORT, Model Optimizer Q/DQ (fp32 high precision)", "kind": "ort",
         "model": rep_hp["int8"]["trt"]["path"], "report": ("trt", rep_hp)},
        {"name": "INT8 student ORT, ORT static U8S8 QDQ (CPU flavour)", "kind": "ort",
         "model": rep_trt["int8"]["cpu"]["path"], "report": ("cpu", rep_trt)},
    ]
    results = []
    for c in configs:
        r = run_worker({**common, **{k: v for k, v in c.items() if k != "report"}})
        if "report" in c:
            k, rep = c["report"]
            src = rep_trt["fp32"] if k == "fp32" else rep["int8"][k]
            r.update({"auc": src.get("auc"), "flavour": src.get("flavour")})
            if k != "fp32":
                q, fl = len(src["nodes"]["quantized_compute"]), len(src["nodes"]["float_compute"])
                r.update({"auc_drop": src.get("auc_drop"), "label_agreement": src.get("label_agreement"),
                          "max_abs_diff": src.get("max_abs_diff"), "int8_compute": f"{q}/{q + fl}"})
        results.append(r)
        print(fmt_row(r), flush=True)

    by = {r["name"]: r for r in results}
    tput = lambda name, b="32": by[name]["batches"][b]["crops_per_s"] if "batches" in by[name] else None  # noqa: E731
    teacher_name, int8_cpu, fp32_ort = configs[0]["name"], configs[5]["name"], configs[2]["name"]
    ratios = {}
    if tput(teacher_name) and tput(int8_cpu) and tput(fp32_ort):
        ratios = {"int8_cpu_vs_teacher_b32": tput(int8_cpu) / tput(teacher_name),
                  "int8_cpu_vs_fp32_ort_b32": tput(int8_cpu) / tput(fp32_ort),
                  "int8_cpu_vs_teacher_b1": tput(int8_cpu, "1") / tput(teacher_name, "1"),
                  "int8_cpu_vs_fp32_ort_b1": tput(int8_cpu, "1") / tput(fp32_ort, "1"),
                  "int8_modelopt_fp16_vs_fp32_ort_b32": (tput(configs[3]["name"]) or 0) / tput(fp32_ort),
                  "int8_modelopt_fp32hp_vs_fp32_ort_b32": (tput(configs[4]["name"]) or 0) / tput(fp32_ort)}
    import onnxruntime
    import torch

    doc = {"machine": {"cpus": os.cpu_count(), "threads": a.threads, "onnxruntime": onnxruntime.__version__,
                       "torch": torch.__version__, "cpu": _cpu_name(),
                       "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()]},
           "size": size, "student": {"path": str(student), "model": s_blob["model_name"], "trained": trained_student},
           "teacher": {"path": str(teacher), "model": t_blob["model_name"], "trained": trained_teacher},
           "calibration": {"count": calib["count"], "real": calib["real"], "pseudo_fake": calib["pseudo_fake"],
                           "sources": calib["sources"], "sha256": calib["sha256"][:16]},
           "evaluation": rep_trt["evaluation"], "prep_seconds": round(prep_s, 1), "results": results,
           "ratios": ratios, "targets": {"int8_cpu_vs_teacher_b32": 20.0, "int8_cpu_vs_fp32_ort_b32": 2.0,
                                         "auc_drop_max": 0.005},
           "date": time.strftime("%Y-%m-%d %H:%M")}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(doc, indent=1))
    print()
    print(markdown_table(doc))
    print(f"\nJSON: {a.json}")


def fmt_row(r: dict) -> str:
    if "error" in r:
        return f"{r['name']}: ERROR {r['error']}"
    b1, b32 = r["batches"]["1"], r["batches"]["32"]
    return (f"{r['name']}: b1 {b1['crops_per_s']:.0f}/s p50 {b1['p50_ms']:.2f} ms | b32 {b32['crops_per_s']:.0f}/s "
            f"p50 {b32['p50_ms']:.1f} ms | RSS {r['peak_rss_mb']:.0f} MB")


def markdown_table(doc: dict) -> str:
    f = lambda v, p=3: "-" if v is None else f"{v:.{p}f}"  # noqa: E731
    lines = ["| configuration | crops/s b1 | p50/p90/p99 ms b1 | crops/s b32 | p50/p90/p99 ms b32 | peak RSS MB "
             "| AUC | INT8 conv/gemm |",
             "|---|---:|---|---:|---|---:|---:|---|"]
    for r in doc["results"]:
        if "error" in r:
            lines.append(f"| {r['name']} | error: {r['error']} |||||||")
            continue
        b1, b32 = r["batches"]["1"], r["batches"]["32"]
        lines.append(f"| {r['name']} | {b1['crops_per_s']:.0f} "
                     f"| {b1['p50_ms']:.2f}/{b1['p90_ms']:.2f}/{b1['p99_ms']:.2f} "
                     f"| {b32['crops_per_s']:.0f} | {b32['p50_ms']:.1f}/{b32['p90_ms']:.1f}/{b32['p99_ms']:.1f} "
                     f"| {r['peak_rss_mb']:.0f} | {f(r.get('auc'))} | {r.get('int8_compute', '-')} |")
    if doc["ratios"]:
        rt = doc["ratios"]
        lines.append("")
        lines.append(f"INT8 (CPU flavour) vs FP32 teacher eager at batch 32: **{rt['int8_cpu_vs_teacher_b32']:.1f}x** "
                     f"(target >= 20x); vs FP32 student ORT: **{rt['int8_cpu_vs_fp32_ort_b32']:.2f}x** (target >= 2x). "
                     "Model Optimizer Q/DQ vs FP32 ORT at batch 32: "
                     f"{rt['int8_modelopt_fp16_vs_fp32_ort_b32']:.2f}x (fp16), "
                     f"{rt['int8_modelopt_fp32hp_vs_fp32_ort_b32']:.2f}x (fp32 high precision).")
    return "\n".join(lines)


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


if __name__ == "__main__":
    main()
