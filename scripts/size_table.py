#!/usr/bin/env python
"""Size / speed / accuracy of the student, and INT8 against FP32 per source.

For every input size (default 128, 160, 224) the student checkpoint is exported at that size, a
calibration set of real faces is built with that spec, and ONNX Runtime's U8S8 INT8 (the CPU
flavour) is timed at batch 1 and 32 (``--threads`` intra-op threads, medians, one process, the
sizes measured side by side). At the size the checkpoint was trained at, FP32, INT8 U8S8 and INT8
Model Optimizer Q/DQ (the TensorRT artefact, run here on ONNX Runtime) are scored on the same
held-out faces of every source (``train.sources``: TIMIT val people, ciplab test, self-blends of
held-out reals), so the INT8 AUC drop is read per source, on identical inputs.

Usage: ``.venv/bin/python scripts/size_table.py --student runs/release/student.pt``; writes
``docs/size_table.md`` and ``docs/size_table.json``. A size other than the trained one is timed
only: its AUC would need a student trained at that size (the table says so).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from _common import log  # noqa: E402

SOURCES = ("timit", "ciplab", "london", "canada", "interfaces")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default=str(ROOT / "runs" / "release" / "student.pt"))
    ap.add_argument("--faces", default=str(ROOT / "runs" / "faces224"))
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 160, 224])
    ap.add_argument("--work", default=str(ROOT / "runs" / "size_table"))
    ap.add_argument("--shared", default=os.environ.get("FFD_SHARED", str(ROOT.parent / "shared")))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calib-n", type=int, default=512)
    ap.add_argument("--high-precision", choices=("fp16", "fp32"), default="fp32",
                    help="Q/DQ flavour's non-INT8 ops (fp32: what scripts/train_release.sh ships for MobileNetV2)")
    ap.add_argument("--out-md", default=str(ROOT / "docs" / "size_table.md"))
    ap.add_argument("--out-json", default=str(ROOT / "docs" / "size_table.json"))
    args = ap.parse_args(argv)
    # calibration images are whole photos: the face detector of ../shared unless the user set one
    os.environ.setdefault("FFD_YUNET_MODEL", str(Path(args.shared) / "models" / "face_detection_yunet.onnx"))

    import torch

    from calib.calibset import build_calibset
    from calib.export import export_onnx
    from calib.quantize import quantize_onnx
    from edge.tools.bench import percentiles, time_calls
    from edge.runtime.ort import OrtRunner
    from train.checkpoint import read_checkpoint, save_checkpoint
    from train.data import FaceDataset
    from train.evaluate import report_sets
    from train.registry import create_model
    from train.sbi import SBIConfig
    from train.sources import SBI_SET, eval_sets, load_sources

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    shared = Path(args.shared) / "data"
    blob = read_checkpoint(args.student)
    card = blob["card"]
    model = create_model(blob["model_name"], **blob["model_kwargs"])
    model.load_state_dict(blob["state_dict"])
    trained = card.spec.size
    faces = Path(args.faces)
    tests = eval_sets(load_sources([f"{n}={faces / n}" for n in SOURCES if (faces / n).is_dir()]), "test")
    rows, per_source = [], {}
    for size in args.sizes:
        t0 = time.time()
        c = card.replace(spec=card.spec.replace(size=size))
        ck = work / f"student_{size}.pt"
        save_checkpoint(ck, model, c, model_kwargs=blob["model_kwargs"], config=blob["config"], metrics=blob["metrics"])
        onnx_path = work / f"student_{size}.onnx"
        export_onnx(ck, onnx_path, parity_data=[faces / "london" / "crops"], verbose=False)
        calib = work / f"calib_{size}"
        # the calibration faces of scripts/train_release.sh (real faces only); a size that is only timed needs
        # no more than 128 (ONNX Runtime keeps every face's activations: 512 at 224 px outgrew 22 GB)
        build_calibset(onnx_path, [shared / "london_faces" / "smiling", shared / "interfaces_cc0" / "img_500",
                                   shared / "ciplab_real_fake_160" / "full_160" / "real"], calib,
                       n=args.calib_n if size == trained else min(args.calib_n, 128))
        target = "both" if size == trained else "cpu"
        rep = quantize_onnx(onnx_path, calib, work / f"int8_{size}", target=target, verbose=False,
                            high_precision=args.high_precision)
        cpu_path = Path(rep["int8"]["cpu"]["path"])
        x = np.load(calib / "calib.npy") if (calib / "calib.npy").is_file() else None
        runner = OrtRunner(str(cpu_path), intra_op_threads=args.threads)
        speed = {}
        for b in (1, 32):
            xb = np.ascontiguousarray(x[np.arange(b) % len(x)])
            ms = time_calls(lambda: runner.infer(xb), iters=60 if b == 1 else 15, warmup=3, min_time_s=2.0)
            p = percentiles(ms)
            speed[b] = {"crops_per_s": round(b * 1e3 / p["p50"], 1), "p50_ms": round(p["p50"], 3)}
        runner.close()
        row = {"size": size, "speed_int8_cpu": speed, "trained_size": size == trained,
               "seconds": round(time.time() - t0, 1)}
        if size == trained:
            spec = c.spec
            paths = {"fp32": onnx_path, "int8_cpu": cpu_path, "int8_qdq": Path(rep["int8"]["trt"]["path"])}
            scored = {k: {} for k in paths}
            runners = {k: OrtRunner(str(p), intra_op_threads=args.threads) for k, p in paths.items()}
            for name, items in tests.items():
                ds = FaceDataset(items, spec, sbi=SBIConfig() if name == SBI_SET else None, seed=10_007)
                xs = np.stack([ds[i][0].numpy() for i in range(len(ds))])
                ys = np.array(ds.labels, np.int64)
                samples = [ds.sample(i) for i in range(len(ds))]
                for k, r in runners.items():
                    s = np.concatenate([r.infer(np.ascontiguousarray(xs[i:i + 64])) for i in range(0, len(xs), 64)])
                    scored[k][name] = (s, ys, samples)
            for r in runners.values():
                r.close()
            for k in paths:
                sets_k = report_sets(scored[k], c.threshold)
                per_source[k] = {n: round(float(v["frame"]["auc"]), 4) for n, v in sets_k.items()}
            row["auc"] = per_source["fp32"]
        rows.append(row)
        log(f"size {size}: {row}")

    sets = list(tests)
    lines = ["# Student: size, speed, accuracy; INT8 against FP32 per source", "",
             f"Generated by `scripts/size_table.py` (do not edit by hand) from `{args.student}` "
             f"(`{card.name}`, trained at {trained} px). ONNX Runtime U8S8 INT8, {args.threads} threads, "
             "median of one run, sizes measured side by side in one process; AUC on the held-out test parts "
             f"(frame level). Q/DQ with `--high-precision {args.high_precision}`, "
             f"{args.calib_n} calibration faces at the trained size (128 at the sizes only timed).", "",
             "| input | INT8 crops/s b1 | p50 ms b1 | INT8 crops/s b32 | p50 ms b32 | "
             + " | ".join(f"{s} AUC" for s in sets) + " |",
             "|---|---|---|---|---|" + "---|" * len(sets)]
    for r in rows:
        if "auc" in r:
            auc = [f"{r['auc'][s]:.3f}" for s in sets]
        else:
            auc = ["(not trained at this size)"] + [""] * (len(sets) - 1)
        sp = r["speed_int8_cpu"]
        lines.append(f"| {r['size']} px | {sp[1]['crops_per_s']:.0f} | {sp[1]['p50_ms']:.2f} "
                     f"| {sp[32]['crops_per_s']:.0f} "
                     f"| {sp[32]['p50_ms']:.1f} | " + " | ".join(auc) + " |")
    if per_source:
        lines += ["", f"INT8 against FP32 at {trained} px, same faces, frame AUC:", "",
                  "| model | " + " | ".join(sets) + " | max drop |", "|---|" + "---|" * (len(sets) + 1)]
        for k, v in per_source.items():
            drop = max(per_source["fp32"][s] - v[s] for s in sets)
            lines.append(f"| {k} | " + " | ".join(f"{v[s]:.4f}" for s in sets) + f" | {drop:+.4f} |")
    lines.append("")
    Path(args.out_md).write_text("\n".join(lines))
    Path(args.out_json).write_text(json.dumps({"student": args.student, "rows": rows, "int8_vs_fp32": per_source,
                                               "test_counts": {k: len(v) for k, v in tests.items()}}, indent=1))
    log(f"-> {args.out_md}")


if __name__ == "__main__":
    main()
