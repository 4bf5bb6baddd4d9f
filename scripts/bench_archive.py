"""Benchmark of issue 16: ``ffd screen`` on clips made as real archives are, beside the synthetic ones.

Real-codec clips: H.264 (libx264 through PyAV) at 720p and 1080p, 30 fps, the encoder's default keyframe
interval (250) and B-frames, a face moving over a panning background; one HEVC (libx265) clip where the
encoder is there. Synthetic clips: OpenCV's mp4v writer (short GOPs), as ``scripts/bench_pipeline.py``
writes them. For each clip, side by side in one run (medians of ``--repeats``):

* *decode*: 32 uniform samples read by seeks (``CAP_PROP_POS_FRAMES``) and by one sequential pass
  (``grab()``), what ``auto`` chooses, and one full pass of ``grab()`` (the decode floor);
* *screen*: ``screen_archive`` (in-process, 1 thread each) with 32 frames per clip, at 2 sampled
  frames/s and on keyframes only (``--sample keyframes``): x real time, and the decode share of the wall
  time (sampling alone / the whole screening; in-process the next file decodes in a background thread while
  this one's faces are scored, so the share can exceed what it adds to the wall time);
* each of those per decoding back-end, side by side in one run: PyAV (threaded) and OpenCV (``FFD_DECODER``);
* *detect*: ``ffd detect`` (``edge.detect.detect_sources``) on the 720p H.264 clip, face detection on every
  frame: frames per second;
* *archive* (``--archive-files K``, default 32): a folder of K copies of each real-codec clip screened as
  ``ffd screen`` does it, in-process (``-j 0``: a decode thread beside detection, OpenCV's default threads)
  and with the CLI's default ``-j 2`` (two worker processes, one OpenCV/ORT thread and a share of the cores
  for FFmpeg each, :func:`edge.screen.screen.worker_threads`), 32 frames and 2 frames/s:
  x real time over the whole folder (one model open and worker start-up per run, shared by the files), the
  CPU seconds per video second (this process and its workers), and the ceiling that CPU time sets on this
  machine (cores x video s / CPU s: the x real time if every core were busy with this work all the time);
* *many files* (``--many N``): peak RSS while screening N small H.264 files in-process, sampled over the
  run, and whether it stays flat (the last fifth against the first).

The issue-16 targets are printed next to the figures. Nothing here asserts a speed. The model: ``--model``,
else the newest student ONNX under ``runs/``, else a tiny test classifier (classification is < 1 ms per face
either way; face detection dominates).

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


TARGETS = {  # issue 16: x real time for ffd screen (2 cores), frames/s for ffd detect
    ("1080p", "screen_fps2"): 20.0, ("1080p", "screen_n"): 10.0,
    ("720p", "screen_fps2"): 30.0, ("720p", "screen_n"): 30.0, ("720p", "screen_keyframes"): 30.0,
    ("1080p", "screen_keyframes"): 20.0, "detect_720p_fps": 30.0,
}


def _target(size: str, key: str) -> str:
    t = TARGETS.get((size, key))
    return f" (target >= {t:g}x)" if t else ""


def decode_costs(clip: Path, n_frames: int, repeats: int, seeks: bool = True) -> dict:
    """Seconds to read ``n_frames`` uniform samples by seeks and by one pass, what auto picks, one grab() pass,
    every 15th frame (2 frames/s at 30 fps) and the keyframes only."""
    from edge.media import VideoReader

    def sample(strategy):
        with VideoReader(clip) as r:
            for _ in r.frames(n_frames=n_frames, strategy=strategy):
                pass

    def every(k):
        with VideoReader(clip) as r:
            for _ in r.frames(every=k):
                pass

    def keyframes():
        with VideoReader(clip) as r:
            for _ in r.frames(keyframes=True):
                pass

    def grab_all():
        with VideoReader(clip) as r:
            while r._grab():
                pass

    with VideoReader(clip) as r:
        for _ in r.frames(n_frames=n_frames):
            pass
        auto, gop, info, dec = r.strategy, r.gop, r.info, r.decoder
        skipping, decoded = r.skipping, r.frames_decoded  # PyAV: unwanted non-reference frames not decoded
    k = max(1, round(info.fps * 0.5))
    out = {"decoder": dec, "frames": info.frame_count, "fps": info.fps, "duration_s": info.duration_s,
           "auto_strategy": auto, "gop_measured": gop, "auto_skips_nonref": skipping,
           "auto_frames_decoded": decoded,
           "seek_s": _median_time(lambda: sample("seek"), repeats) if seeks else None,
           "sequential_s": _median_time(lambda: sample("sequential"), repeats),
           "grab_all_s": _median_time(grab_all, repeats),
           "every_s": _median_time(lambda: every(k), repeats),
           "keyframes_s": _median_time(keyframes, repeats)}
    out["auto_s"] = out[f"{auto}_s"]
    out["seek_over_sequential"] = out["seek_s"] / out["sequential_s"] if seeks else None
    return out


def detect_fps(clip: Path, model: Path, work: Path, repeats: int) -> dict:
    """``ffd detect CLIP`` in-process (face detection and scoring on every frame): frames per second."""
    from edge.detect import detect_sources
    from edge.media import probe_video

    n = probe_video(clip).frame_count
    walls = []
    for k in range(repeats):
        out = work / f"detect_{clip.stem}_{k}.jsonl"
        t0 = time.perf_counter()
        detect_sources([str(clip)], model, out, threads=1, log=lambda _line: None)
        walls.append(time.perf_counter() - t0)
        out.unlink(missing_ok=True)
    wall = statistics.median(walls)
    return {"frames": n, "wall_s": round(wall, 3), "fps": round(n / wall, 1)}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def many_files_rss(n: int, model: Path, work: Path, faces: list[Path], frames: int) -> dict:
    """Screen ``n`` small H.264 files in-process, sampling the RSS every 0.1 s: peak, and the mean of the last
    fifth of the run against the first fifth (flat: within 10% or 20 MB)."""
    import shutil
    import threading

    from media import write_archive_video

    from edge.screen import ScreenSettings, screen_archive

    folder = work / f"many_{n}"
    if not folder.is_dir() or len(list(folder.glob("*.mp4"))) != n:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        seed = write_archive_video(work / "many_seed.mp4", faces[:2], n_frames=50, fps=25, size=(320, 240))
        for i in range(n):  # distinct files (own names, inodes and bytes' mtime), one small clip's content
            shutil.copyfile(seed, folder / f"clip_{i:05d}.mp4")
    db = work / f"many_{n}.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def watch():
        t0 = time.perf_counter()
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, _rss_mb()))
            stop.wait(0.1)

    before = _rss_mb()
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    try:
        s = screen_archive([folder], model, db, settings=ScreenSettings(n_frames=frames), workers=0, progress=False,
                           runner_kw={"intra_op_threads": 1})
    finally:
        stop.set()
        th.join()
    rss = [r for _, r in samples]
    fifth = max(1, len(rss) // 5)
    first, last = statistics.mean(rss[:fifth]), statistics.mean(rss[-fifth:])
    return {"files": n, "frames_per_file": frames, "screened": s["screened"], "wall_s": s["wall_s"],
            "rss_before_mb": round(before, 1), "rss_peak_mb": round(max(rss), 1),
            "rss_first_fifth_mb": round(first, 1), "rss_last_fifth_mb": round(last, 1),
            "flat": bool(last - first <= max(20.0, 0.1 * first)),
            "rss_curve_mb": [round(rss[k * (len(rss) - 1) // 10], 1) for k in range(11)]}  # every tenth of the run


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


def _cpu_s() -> float:
    import resource

    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def archive_rtf(clip: Path, k: int, model: Path, work: Path, settings, workers: int, repeats: int,
                cv2_threads: int) -> dict:
    """``screen_archive`` on a folder of ``k`` copies of ``clip`` (distinct files) with ``workers``."""
    import shutil

    import cv2

    from edge.screen import screen_archive

    folder = work / f"archive_{clip.stem}_{k}"
    if not folder.is_dir() or len(list(folder.glob("*.mp4"))) != k:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i in range(k):
            shutil.copyfile(clip, folder / f"{clip.stem}_{i:02d}.mp4")
    before = cv2.getNumThreads()
    cv2.setNumThreads(cv2_threads)  # in-process: what `ffd screen -j 0` runs with
    runs = []
    try:
        for r in range(repeats):
            db = work / f"archive_{clip.stem}_{k}_{workers}_{r}.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            c0 = _cpu_s()
            s = screen_archive([folder], model, db, settings=settings, workers=workers, progress=False)
            runs.append((s["wall_s"], _cpu_s() - c0, s["video_s"], s["done"]))
    finally:
        cv2.setNumThreads(before)
    wall = statistics.median(x[0] for x in runs)
    cpu = statistics.median(x[1] for x in runs)
    video_s = runs[0][2]
    cores = os.cpu_count() or 1
    return {"files": k, "workers": workers, "scored": runs[0][3], "video_s": video_s, "wall_s": round(wall, 3),
            "realtime_factor": round(video_s / wall, 2), "cpu_s_per_video_s": round(cpu / video_s, 4),
            "cpu_ceiling_x": round(cores * video_s / cpu, 2) if cpu > 0 else None}


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
    ap.add_argument("--decoders", default="pyav,opencv", help="decoding back-ends measured side by side")
    ap.add_argument("--no-seek-timing", action="store_true", help="skip timing the (slow) 32 seeks per clip")
    ap.add_argument("--many", type=int, default=0, help="also screen N small files and report peak RSS")
    ap.add_argument("--many-frames", type=int, default=4, help="frames sampled per file in the --many run")
    ap.add_argument("--archive-files", type=int, default=32,
                    help="screen a folder of K copies of each real-codec clip with -j 0 and -j 2 (0: skip)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    a.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FFD_YUNET_MODEL", str(SHARED / "models" / "face_detection_yunet.onnx"))
    import cv2

    from edge.screen import ScreenSettings

    cv2_default_threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # as one screening worker
    faces = sorted((SHARED / "data" / "london_faces" / "neutral").glob("*.jpg"))
    if not faces:
        sys.exit(f"error: faces not found under {SHARED}; fix: set FFD_SHARED")
    model, how = (a.model, "given") if a.model else find_model(a.work)
    from edge.screen.screen import worker_threads

    res = {"model": str(model), "model_source": how, "cpus": os.cpu_count(), "load_avg": os.getloadavg(),
           "opencv": cv2.__version__, "clip_seconds": a.seconds, "fps": a.fps, "samples": a.frames,
           "repeats": a.repeats, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
           "decode_threads": {"FFD_DECODE_THREADS": os.environ.get("FFD_DECODE_THREADS"),
                              "per_worker_with_j2": worker_threads(2)[1]}, "clips": []}
    t0 = time.perf_counter()
    clips = make_clips(a.work, faces, a.seconds, a.fps, a.sizes.split(","), not a.no_hevc, a.preset)
    print(f"model: {model} ({how}); {len(clips)} clips in {time.perf_counter() - t0:.0f} s", flush=True)
    from edge.decoders import have_av

    decoders = [d for d in a.decoders.split(",") if d != "pyav" or have_av()]
    res["decoders"] = decoders
    for c in clips:
        row = {k: (str(v) if isinstance(v, Path) else v) for k, v in c.items()}
        row["by_decoder"] = {}
        for dec in decoders:
            os.environ["FFD_DECODER"] = dec
            r = row["by_decoder"][dec] = {}
            r["decode"] = d = decode_costs(c["clip"], a.frames, a.repeats, seeks=not a.no_seek_timing)
            seek = f"seek {d['seek_s']:.2f} s, " if d["seek_s"] is not None else ""
            skip = ", non-reference skipped" if d["auto_skips_nonref"] else ""
            print(f"{c['size']:>5} {c['codec']:<38} [{dec}] {a.frames} samples: {seek}sequential "
                  f"{d['sequential_s']:.2f} s, auto={d['auto_strategy']} ({d['auto_frames_decoded']} decoded{skip}),"
                  f" one grab() pass {d['grab_all_s']:.2f} s, "
                  f"every 15th {d['every_s']:.2f} s, keyframes {d['keyframes_s']:.2f} s", flush=True)
            if a.skip_screen:
                continue
            for key, label, st, decode in (
                    ("screen_n", f"{a.frames} frames", ScreenSettings(n_frames=a.frames), d["auto_s"]),
                    ("screen_fps2", "2 frames/s", ScreenSettings(every_s=0.5), d["every_s"]),
                    ("screen_keyframes", "keyframes", ScreenSettings(n_frames=None, sample="keyframes"),
                     d["keyframes_s"])):
                sr = screen_rtf(c["clip"], model, a.work, st, a.repeats)
                sr["decode_share"] = round(min(1.0, decode / sr["wall_s"]), 3)
                sr["target_x"] = TARGETS.get((c["size"], key)) if c["real_codec"] else None
                r[key] = {"sampling": label, **sr}
                print(f"      [{dec}] screen {label}: {sr['realtime_factor']}x real time"
                      f"{_target(c['size'], key) if c['real_codec'] else ''}, decode share "
                      f"{100 * sr['decode_share']:.0f}%", flush=True)
            if c["real_codec"] and c["size"] == "720p" and c["codec"].startswith("h264"):
                r["detect"] = det = detect_fps(c["clip"], model, a.work, a.repeats)
                print(f"      [{dec}] ffd detect every frame: {det['fps']} frames/s (target >= "
                      f"{TARGETS['detect_720p_fps']:g})", flush=True)
        if c["real_codec"] and a.archive_files > 0 and not a.skip_screen:
            os.environ["FFD_DECODER"] = decoders[0]
            row["archive"] = arch = {}
            for key, label, st in (("screen_n", f"{a.frames} frames", ScreenSettings(n_frames=a.frames)),
                                   ("screen_fps2", "2 frames/s", ScreenSettings(every_s=0.5))):
                for workers in (0, 2):
                    ar = archive_rtf(c["clip"], a.archive_files, model, a.work, st, workers, a.repeats,
                                     cv2_default_threads)
                    ar["sampling"], ar["target_x"] = label, TARGETS.get((c["size"], key))
                    arch[f"{key}_j{workers}"] = ar
                    print(f"      [{decoders[0]}] archive of {ar['files']} x {c['size']} {c['codec'].split()[0]}, "
                          f"{label}, -j {workers}: {ar['realtime_factor']}x real time{_target(c['size'], key)}; "
                          f"{ar['cpu_s_per_video_s']:.3f} CPU s per video s, CPU-bound ceiling "
                          f"{ar['cpu_ceiling_x']}x", flush=True)
        res["clips"].append(row)
    if a.many:
        os.environ["FFD_DECODER"] = decoders[0]
        res["many"] = m = many_files_rss(a.many, model, a.work, faces, a.many_frames)
        print(f"many files [{decoders[0]}]: {m['screened']} files in {m['wall_s']} s, RSS peak {m['rss_peak_mb']} MB "
              f"(first fifth {m['rss_first_fifth_mb']} MB, last fifth {m['rss_last_fifth_mb']} MB: "
              f"{'flat' if m['flat'] else 'GROWING'})", flush=True)
    out = a.out / "bench_archive.json"
    out.write_text(json.dumps(res, indent=1))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
