"""Benchmark of issue 16: ``ffd screen`` on clips made as real archives are, beside the synthetic ones.

Real-codec clips: H.264 (libx264 through PyAV) at 720p and 1080p, 30 fps, the encoder's default keyframe
interval (250) and B-frames, a face moving over a panning background; one HEVC (libx265) clip where the
encoder is there. Synthetic clips: OpenCV's mp4v writer (short GOPs), as ``scripts/bench_pipeline.py``
writes them. For each clip, side by side in one run (medians of ``--repeats``):

* *decode*: 32 uniform samples read by seeks (``CAP_PROP_POS_FRAMES``) and by one sequential pass
  (``grab()``), what ``auto`` chooses, and one full pass of ``grab()`` (the decode floor);
* *screen*: ``screen_archive`` (in-process, 1 thread each) with 32 frames per clip and at 2 sampled
  frames/s: x real time, and the decode share of the wall time (sampling alone / the whole screening).

Nothing here asserts a speed. The model: ``--model``, else the newest student ONNX under ``runs/``, else a
tiny test classifier (classification is < 1 ms per face either way; face detection dominates).

    .venv/bin/python scripts/bench_archive.py --seconds 10 --out docs/bench
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FFD_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def find_model(work: Path) -> tuple[Path, str]:
    cands = sorted((ROOT / "runs").rglob("*.onnx"), key=lambda p: ("int8" not in p.name, -p.stat().st_mtime))
    cands = [p for p in cands if "student" in str(p) or "int8" in p.name]
    if cands:
        return cands[0], "trained model from runs/"
    from conftest import make_tiny_onnx

    return make_tiny_onnx(work / "tiny.onnx", size=64), "tiny test classifier (no trained model under runs/)"


def make_clips(work: Path, faces: list[Path], seconds: float, fps: int, sizes: list[str], hevc: bool,
               preset: str) -> list[dict]:
    from media import have_encoder, write_archive_video, write_face_video

    n = int(seconds * fps)
    clips = []
    for name in sizes:
        w, h = {"720p": (1280, 720), "1080p": (1920, 1080), "480p": (854, 480)}[name]
        if have_encoder("libx264"):
            p = work / f"h264_{name}_{int(seconds)}s.mp4"
            if not p.exists():
                write_archive_video(p, faces[:6], n_frames=n, fps=fps, size=(w, h), keyint=250, preset=preset)
            clips.append({"clip": p, "codec": "h264 (libx264, keyint 250, B-frames)", "size": name, "real_codec": True})
        p = work / f"mp4v_{name}_{int(seconds)}s.mp4"
        if not p.exists():
            write_face_video(p, faces[:6], n_frames=n, fps=fps, size=(w, h))
        clips.append({"clip": p, "codec": "mp4v (OpenCV writer, synthetic)", "size": name, "real_codec": False})
    if hevc and have_encoder("libx265"):
        p = work / f"hevc_720p_{int(seconds)}s.mp4"
        if not p.exists():
            write_archive_video(p, faces[:6], n_frames=n, fps=fps, size=(1280, 720), codec="libx265", keyint=250,
                                preset=preset)
        clips.append({"clip": p, "codec": "hevc (libx265, keyint 250, B-frames)", "size": "720p", "real_codec": True})
    return clips


def _median_time(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def decode_costs(clip: Path, n_frames: int, repeats: int) -> dict:
    """Seconds to read ``n_frames`` uniform samples by seeks and by one pass, what auto picks, one grab() pass."""
    from edge.media import VideoReader

    def sample(strategy):
        with VideoReader(clip) as r:
            for _ in r.frames(n_frames=n_frames, strategy=strategy):
                pass

    def grab_all():
        with VideoReader(clip) as r:
            while r._grab():
                pass

    with VideoReader(clip) as r:
        for _ in r.frames(n_frames=n_frames):
            pass
        auto, gop, info = r.strategy, r.gop, r.info
    out = {"frames": info.frame_count, "fps": info.fps, "duration_s": info.duration_s, "auto_strategy": auto,
           "gop_measured": gop,
           "seek_s": _median_time(lambda: sample("seek"), repeats),
           "sequential_s": _median_time(lambda: sample("sequential"), repeats),
           "grab_all_s": _median_time(grab_all, repeats)}
    out["auto_s"] = out[f"{auto}_s"]
    out["seek_over_sequential"] = out["seek_s"] / out["sequential_s"]
    return out


def screen_rtf(clip: Path, model: Path, work: Path, settings, repeats: int) -> dict:
    from edge.screen import screen_archive

    walls, video_s = [], 0.0
    for k in range(repeats):
        db = work / f"screen_{clip.stem}_{k}.sqlite"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        s = screen_archive([clip], model, db, settings=settings, workers=0, progress=False,
                           runner_kw={"intra_op_threads": 1})
        walls.append(s["wall_s"])
        video_s = s["video_s"]
    wall = statistics.median(walls)
    return {"wall_s": round(wall, 3), "video_s": video_s, "realtime_factor": round(video_s / wall, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="ONNX or engine (default: newest student under runs/, else a tiny one)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ffd_bench_archive"))
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each clip (issue 16: 10-60 s)")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--sizes", default="720p,1080p")
    ap.add_argument("--frames", type=int, default=32, help="uniform samples per clip")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="veryfast", help="x264/x265 preset of the generated clips")
    ap.add_argument("--no-hevc", action="store_true")
    ap.add_argument("--skip-screen", action="store_true", help="decode costs only")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FFD_YUNET_MODEL", str(SHARED / "models" / "face_detection_yunet.onnx"))
    import cv2

    from edge.screen import ScreenSettings

    cv2.setNumThreads(1)  # as one screening worker
    faces = sorted((SHARED / "data" / "london_faces" / "neutral").glob("*.jpg"))
    if not faces:
        sys.exit(f"error: faces not found under {SHARED}; fix: set FFD_SHARED")
    model, how = (a.model, "given") if a.model else find_model(a.work)
    res = {"model": str(model), "model_source": how, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
           "opencv": cv2.__version__, "clip_seconds": a.seconds, "fps": a.fps, "samples": a.frames,
           "repeats": a.repeats, "time": time.strftime("%Y-%m-%d %H:%M:%S"), "clips": []}
    t0 = time.perf_counter()
    clips = make_clips(a.work, faces, a.seconds, a.fps, a.sizes.split(","), not a.no_hevc, a.preset)
    print(f"model: {model} ({how}); {len(clips)} clips in {time.perf_counter() - t0:.0f} s", flush=True)
    for c in clips:
        row = {k: (str(v) if isinstance(v, Path) else v) for k, v in c.items()}
        row["decode"] = d = decode_costs(c["clip"], a.frames, a.repeats)
        print(f"{c['size']:>5} {c['codec']:<38} {a.frames} samples: seek {d['seek_s']:.2f} s, sequential "
              f"{d['sequential_s']:.2f} s (seek/sequential {d['seek_over_sequential']:.1f}x), "
              f"auto={d['auto_strategy']}, one grab() pass {d['grab_all_s']:.2f} s", flush=True)
        if not a.skip_screen:
            for label, st in ((f"{a.frames} frames", ScreenSettings(n_frames=a.frames)),
                              ("2 frames/s", ScreenSettings(every_s=0.5))):
                s = screen_rtf(c["clip"], model, a.work, st, a.repeats)
                decode = d["auto_s"] if st.n_frames else d["grab_all_s"]  # every-k: one pass, samples converted
                s["decode_share"] = round(min(1.0, decode / s["wall_s"]), 3)
                row[f"screen_{'n' if st.n_frames else 'fps2'}"] = {"sampling": label, **s}
                print(f"      screen {label}: {s['realtime_factor']}x real time, decode share "
                      f"{100 * s['decode_share']:.0f}%", flush=True)
        res["clips"].append(row)
    out = a.out / "bench_archive.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
