"""Benchmarks of issue 6 (numbers for docs/pipeline.md; nothing here asserts a speed).

1. ``ffd screen`` real-time factor (video-seconds per wall-second) on archives of ``--files``
   generated 720p or 1080p clips at 2 fps sampling, in-process and with worker processes, and how it
   scales with the sampling rate (0.5 .. 8 fps).
2. ``ffd detect`` (the pipelined loop) on a 720p file with detection on every frame: fps and
   per-stage ms (which stage limits), at the default detector size and smaller ones.
3. Peak RSS of the detect loop over a long run (RSS sampled every 50 frames).
4. The classifier alone (``ffd bench``): batch sizes 1/8/32, ORT 1 and 2 threads.

The model: ``--model``, else the newest student ONNX under ``runs/`` (``*int8*.onnx`` preferred;
``scripts/demo.sh`` makes one). Clips are written with OpenCV (mp4v) from ../shared faces into --work.

    .venv/bin/python scripts/bench_pipeline.py --model runs/demo/int8/student.int8-cpu.onnx --out docs/bench
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FFD_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def find_model() -> tuple[Path | None, str]:
    cands = sorted((ROOT / "runs").rglob("*.onnx"), key=lambda p: ("int8" not in p.name, -p.stat().st_mtime))
    cands = [p for p in cands if "student" in str(p) or "int8" in p.name]
    return (cands[0], "trained model from runs/") if cands else (None, "")


def make_clips(work: Path, faces: list[Path], seconds: float, fps: int = 30) -> dict[str, Path]:
    from media import write_face_video

    clips = {}
    for name, size in (("720p", (1280, 720)), ("1080p", (1920, 1080))):
        p = work / f"clip_{name}_{int(seconds)}s.mp4"
        if not p.exists():
            write_face_video(p, faces[:8], n_frames=int(seconds * fps), fps=fps, size=size)
        clips[name] = p
    return clips


def archive_of(clip: Path, n: int) -> list[Path]:
    """``n`` copies of a clip (hard links) in their own folder: an archive the workers can split."""
    d = clip.parent / f"archive_{clip.stem}_{n}"
    d.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"{i:02d}_{clip.name}"
        if not p.exists():
            os.link(clip, p)
        out.append(p)
    return out


def screen_rtf(clips: list[Path], model: Path, work: Path, every_s: float, workers: int) -> dict:
    """Wall time of a whole `ffd screen` run (worker start-up included) on ``clips``."""
    from edge.screen import ScreenSettings, screen_archive

    db = work / f"screen_{every_s}_{workers}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    s = screen_archive(clips, model, db, settings=ScreenSettings(every_s=every_s), workers=workers, progress=False)
    return {"sample_fps": round(1 / every_s, 3), "workers": workers, "files": s["screened"], "video_s": s["video_s"],
            "wall_s": s["wall_s"], "realtime_factor": s["realtime_factor"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path,
                    help="INT8/FP32 ONNX or engine (default: the newest student model under runs/)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffd_bench_pipeline"))
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each generated clip")
    ap.add_argument("--long-frames", type=int, default=1500, help="frames of the long detect run (RSS)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--files", type=int, default=4, help="clips per screened archive (hard-linked copies)")
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: screen,scaling,detect,long,classifier")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FFD_YUNET_MODEL", str(SHARED / "models" / "face_detection_yunet.onnx"))
    faces = sorted((SHARED / "data" / "london_faces" / "neutral").glob("*.jpg"))
    model, how = (a.model, "given") if a.model else find_model()
    if model is None:
        sys.exit("error: no model under runs/; fix: run scripts/demo.sh first or pass --model M.int8-cpu.onnx")
    from edge.tools.bench import peak_rss_mb
    from edge.tools.bench_pipeline import bench_classifier, bench_e2e, model_precision

    res = {"model": str(model), "model_source": how, "precision": model_precision(model), "cpus": os.cpu_count(),
           "clip_seconds": a.seconds, "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    clips = make_clips(a.work, faces, a.seconds)
    print(f"model: {model} ({how}); clips: {[str(c) for c in clips.values()]}", flush=True)
    if "classifier" not in skip:
        res["classifier"] = [r for t in (1, 2) for r in bench_classifier(model, "ort", (1, 8, 32), iters=30, threads=t)]
        for r in res["classifier"]:
            print(f"classifier t{r['threads']} b{r['batch']}: p50 {r['latency_ms']['p50']:.2f} ms, "
                  f"{r['throughput_per_s']:.0f} faces/s", flush=True)
    if "screen" not in skip:
        res["screen"] = []
        for name, clip in clips.items():
            for w in (0, a.workers):
                r = {"clip": name, **screen_rtf(archive_of(clip, a.files), model, a.work, 0.5, w)}
                res["screen"].append(r)
                print(f"screen {name} 2 fps workers={w}: {r['realtime_factor']}x real time", flush=True)
    if "scaling" not in skip:
        res["screen_scaling"] = []
        for every_s in (2.0, 1.0, 0.5, 0.25, 0.125):
            r = {"clip": "720p", **screen_rtf(archive_of(clips["720p"], a.files), model, a.work, every_s, a.workers)}
            res["screen_scaling"].append(r)
            print(f"screen 720p {r['sample_fps']} fps: {r['realtime_factor']}x real time", flush=True)
    if "detect" not in skip:
        res["detect"] = []
        for det_side in (None, 480, 320):
            r = bench_e2e(clips["720p"], model, "ort", max_frames=300, det_max_side=det_side)
            r.pop("rss_mb", None)
            res["detect"].append(r)
            stages = ", ".join(f"{k} {v.get('mean', 0):.1f}" for k, v in r["stage_ms"].items())
            print(f"detect 720p det_max_side={det_side or 640}: {r['fps']} fps, slowest {r['limiting_stage']}, "
                  f"ms/frame: {stages}", flush=True)
    if "long" not in skip:
        from media import write_face_video

        long_clip = a.work / "long_720p.mp4"
        if not long_clip.exists():
            write_face_video(long_clip, faces[:30], n_frames=a.long_frames, fps=30, size=(1280, 720))
        r = bench_e2e(long_clip, model, "ort", max_frames=None, det_max_side=320)
        rss = r["rss_mb"]
        res["long_run"] = {"frames": r["frames_processed"], "fps": r["fps"], "rss_mb": rss,
                           "rss_first": rss[0][1] if rss else None, "rss_last": rss[-1][1] if rss else None,
                           "rss_max": max(v for _, v in rss) if rss else None, "peak_rss_mb": peak_rss_mb()}
        print(f"long run: {r['frames_processed']} frames, RSS first {res['long_run']['rss_first']} MiB, "
              f"last {res['long_run']['rss_last']} MiB, max {res['long_run']['rss_max']} MiB", flush=True)
    out = a.out / "bench_pipeline.json"
    if skip and out.exists():  # a partial re-run updates the parts it measured
        res = {**json.loads(out.read_text()), **res}
    out.write_text(json.dumps(res, indent=1))
    print(f"-> {a.out / 'bench_pipeline.json'}")


if __name__ == "__main__":
    main()
