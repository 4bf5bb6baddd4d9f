#!/usr/bin/env python
"""Run the generated bad-input corpus through every entry point and print the reliability summary.

    .venv/bin/python scripts/reliability_report.py [--work DIR] [--json OUT.json] [--soak-frames N]
        [--kills K] [--seed S] [--quick]

Generates the corpus of ``tests/reliability/corpus.py`` (media, broken models and, per class of
issue 15, odd media and names (3), hostile cards/models/checkpoints (2), bad settings (4), failures
recorded as results (5) and hostile report rows (8)) in a
temporary folder, then runs ``ffd faces extract``, ``ffd detect`` (images via the CLI, videos via the
pipeline), ``ffd screen`` (+ HTML report), ``ffd eval`` (per bad image on a folder dataset and
on the corpus extraction), the loaders (``open_runner``, the engine-cache sidecar check,
``load_checkpoint``) and the CLI with each broken model; SIGKILLs ``ffd screen`` at seeded
random points and resumes it; points ``ffd detect`` and ``ffd screen --ray`` at loopback servers
that accept and never answer (6); sends SIGTERM and Ctrl-C's SIGINT to ``ffd screen -j 2`` and
``ffd faces extract -j 2`` and resumes them (7); soaks the detector and the video pipeline and reports the RSS
drift. Prints a table, the counts per class (1..8) and the totals (inputs tried, clear errors,
correct results, crashes, rows lost, RSS drift) and writes them as JSON. Exit status 1 if
anything crashed, hung, was lost or came out wrong. Needs ``../shared`` (london_faces and the YuNet model).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, help="Working folder (default: a temporary one, removed after).")
    ap.add_argument("--json", type=Path, default=None,
                    help="Write the summary here (default WORK/reliability.json, or $TMPDIR/ffd_reliability.json).")
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("FFD_SHARED", ROOT.parent / "shared")))
    ap.add_argument("--soak-frames", type=int, default=3000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="Small soak (1200 frames) and 3 kills.")
    a = ap.parse_args()
    if a.quick:
        a.soak_frames, a.kills = 1200, 3

    yunet = a.shared / "models" / "face_detection_yunet.onnx"
    faces = sorted((a.shared / "data" / "london_faces" / "neutral").glob("*.jpg"))
    if not yunet.is_file() or len(faces) < 24:
        print(f"error: needs {yunet} and london_faces/neutral under {a.shared}", file=sys.stderr)
        return 2
    os.environ.setdefault("FFD_YUNET_MODEL", str(yunet))

    import harness as H
    from corpus import (CLASSES, MARKER, OUTPUT_CASES, SETTING_CASES, build_hostile_model_corpus, build_media_corpus,
                        build_model_corpus, save_tiny_checkpoint)
    from media import write_face_video
    from tests.conftest import make_tiny_onnx

    own = a.work is None
    work = Path(tempfile.mkdtemp(prefix="ffd_rel_")) if own else a.work
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    def step(name, fn):
        print(f"... {name}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        r = fn()
        timings[name] = round(time.perf_counter() - t, 1)
        return r

    try:
        corpus = work / "corpus"
        shutil.rmtree(corpus, ignore_errors=True)
        entries = step("media corpus", lambda: build_media_corpus(corpus, faces[:20]))
        model = make_tiny_onnx(work / "tiny.onnx")
        ckpt = save_tiny_checkpoint(work / "student_tiny.pt")
        shutil.rmtree(work / "models", ignore_errors=True)
        models = step("model corpus", lambda: build_model_corpus(work / "models", model))
        shutil.rmtree(work / "hostile_models", ignore_errors=True)
        hostile = step("hostile model corpus (class 2)", lambda: build_hostile_model_corpus(
            work / "hostile_models", model, ckpt))
        outcomes, runs = [], {}

        for d in ("extract", "screen.sqlite", "detect.jsonl", "report.html", "eval", "kill.sqlite", "kill.html"):
            p = work / d
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        o, runs["faces extract"] = step("ffd faces extract",
                                        lambda: H.extract_outcomes(corpus, entries, work / "extract"))
        outcomes += o
        o, runs["detect images"] = step("ffd detect (images)", lambda: H.detect_image_outcomes(
            corpus, entries, model, work / "detect.jsonl"))
        outcomes += o
        outcomes += step("detect (videos)", lambda: H.detect_video_outcomes(entries, model))
        o, runs["screen"] = step("ffd screen", lambda: H.screen_outcomes(corpus, entries, model, work / "screen.sqlite",
                                                                          report=work / "report.html"))
        outcomes += o
        html = (work / "report.html").read_text() if (work / "report.html").is_file() else ""
        escaped = "<img src=x onerror" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
        outcomes.append(H.Outcome("report.html (hostile file name)", "screen --report", "result",
                                  "result" if escaped else "crash", "escaped" if escaped else "NOT escaped", 8))
        if (work / "screen.sqlite").is_file():  # class 8: every field of every row holds HTML
            shutil.copy(work / "screen.sqlite", work / "hostile.sqlite")
            outcomes += step("report of hostile rows (class 8)", lambda: H.report_outcomes(
                work / "hostile.sqlite", work / "hostile.html"))
        outcomes += step("eval (folder datasets)", lambda: H.eval_image_outcomes(entries, ckpt, faces[20:24],
                                                                                   work / "eval"))
        ev = step("ffd eval (corpus extraction)", lambda: H.run_ffd(["eval", ckpt, work / "extract"], timeout=300))
        outcomes.append(H.Outcome("corpus extraction", "ffd eval", "result", *ev.outcome("report"), 3))
        outcomes += step("loaders", lambda: H.loader_outcomes(models, work / "models" / MARKER))
        outcomes += step("CLI with broken models", lambda: H.cli_model_outcomes(models, corpus / "real",
                                                                                 work / "extract"))
        outcomes += step("loaders, hostile models (class 2)", lambda: H.loader_outcomes(hostile))
        pick = [m for m in hostile if m.kind == "detector" or m.check == "infer" or m.name.startswith("contract_")
                or m.name in ("card_size_100000.onnx", "card_threshold_string.onnx", "card_deep_nesting.onnx",
                              "card_threshold_nan.pt", "kwargs_vit_3g.pt", "kwargs_teacher_19g.pt")]
        outcomes += step("CLI with hostile models (class 2)", lambda: H.cli_model_outcomes(
            pick, corpus / "real", work / "extract", good_model=model))
        face_video = next(e.path for e in entries if e.name == "face.mp4")
        shutil.rmtree(work / "settings", ignore_errors=True)
        outcomes += step("CLI with bad settings (class 4)", lambda: H.settings_outcomes(
            SETTING_CASES, images=corpus / "real", video=face_video, model=model, ckpt=ckpt,
            classifier=work / "hostile_models" / "classifier_as_detector.onnx", work=work / "settings"))
        outcomes += step("library with bad settings (class 4)", lambda: H.library_settings_outcomes(model, face_video))
        shutil.rmtree(work / "outputs", ignore_errors=True)
        outcomes += step("outputs on inputs (class 1)", lambda: H.output_outcomes(
            OUTPUT_CASES, image=faces[0], video=face_video, model=model, yunet=yunet, work=work / "outputs"))
        outcomes += step("crop names and --overwrite (class 1)", lambda: H.crop_name_outcomes(
            faces[0], yunet, work / "outputs"))
        shutil.rmtree(work / "names", ignore_errors=True)
        outcomes += step("file names on the terminal (class 3)", lambda: H.terminal_name_outcomes(
            work / "names", model))
        run_arch = work / "run_errors" / "archive"
        shutil.rmtree(work / "run_errors", ignore_errors=True)
        run_arch.mkdir(parents=True)
        for e in entries:
            if e.name in ("face.jpg", "rgba.png", "face.mp4", "face.mkv"):
                shutil.copy(e.path, run_arch / e.name)
        outcomes += step("failures recorded as results (class 5)", lambda: H.run_error_outcomes(
            run_arch, model, make_tiny_onnx(work / "tiny_other_weights.onnx", weight=-4.0),
            work / "hostile_models" / "classifier_as_detector.onnx", yunet, work / "run_errors"))

        # crash-resume
        arch = work / "kill_archive"
        shutil.rmtree(arch, ignore_errors=True)
        arch.mkdir()
        for i in range(24):
            write_face_video(arch / f"v{i:02d}.mp4", faces[i % 8:i % 8 + 2], n_frames=24, fps=12, size=(320, 240))
        for e in entries:
            if e.expect == "error":
                (arch / f"bad_{e.name}").write_bytes(e.path.read_bytes())
        kr = step("kill and resume ffd screen", lambda: H.kill_resume(
            arch, model, work / "kill.sqlite", seed=a.seed, kills=a.kills, frames=8, report=work / "kill.html"))
        final = kr["runs"][-1]
        one_row_each = len(kr["final_rows"]) == kr["files"]
        kept = one_row_each and kr["integrity_ok"] and not kr["rows_lost"] and final["rc"] == 0
        outcomes.append(H.Outcome(f"kill-resume ({kr['kills']} SIGKILLs, {kr['files']} files)", "ffd screen (resume)",
                                  "result", "result" if kept else "lost",
                                  f"rows lost {kr['rows_lost']}, one row each {one_row_each}, "
                                  f"integrity ok {kr['integrity_ok']}", 1))
        resume = {"files": kr["files"], "kills": kr["kills"], "rows_lost": kr["rows_lost"],
                  "one_row_per_file": one_row_each, "integrity_ok": kr["integrity_ok"],
                  "final_rc": final["rc"], "runs": kr["runs"]}

        # class 6: servers that accept and never answer, addresses where nothing listens (2 s deadline)
        outcomes += step("streams that never answer (class 6)", lambda: H.stream_outcomes(
            model, faces[0], work / "streams"))
        # class 7: SIGTERM / Ctrl-C during screen -j 2 and extract -j 2, then the re-runs
        sig_arch = work / "signal_archive"
        shutil.rmtree(sig_arch, ignore_errors=True)
        sig_arch.mkdir()
        for i in range(12):
            write_face_video(sig_arch / f"v{i:02d}.mp4", faces[i % 8:i % 8 + 2], n_frames=24, fps=12, size=(480, 360))
        shutil.rmtree(work / "signals", ignore_errors=True)
        outcomes += step("SIGTERM and SIGINT (class 7)", lambda: H.signal_outcomes(
            sig_arch, model, work / "signals", yunet=yunet))

        # soak
        loop = write_face_video(work / "loop.mp4", faces[:4], n_frames=100, size=(320, 240))
        soak = {"detector": step("soak ForgeryDetector", lambda: H.soak_detector(
                    loop, model, frames=a.soak_frames, warmup=300, intra_op_threads=1)),
                "pipeline": step("soak ffd detect pipeline", lambda: H.soak_pipeline(
                    loop, model, frames=a.soak_frames, warmup=300, intra_op_threads=1))}
        drift = max(abs(s["drift_mb"]) for s in soak.values())

        rows_lost = kr["rows_lost"] + (0 if one_row_each else abs(kr["files"] - len(kr["final_rows"])))
        summary = H.summarize(outcomes, rows_lost=rows_lost, rss={"drift_mb": drift, **soak})
        summary.update(resume=resume, timings_s=timings, seconds=round(time.perf_counter() - t0, 1),
                       cli_runs={k: {"rc": r.rc, "seconds": round(r.seconds, 1), "problems": r.problems()}
                                 for k, r in runs.items()})
        print(H.table(outcomes))
        print()
        print(H.class_table(outcomes, CLASSES))
        print()
        for name, s in soak.items():
            print(f"soak {name}: RSS {s['warm_mb']} MiB after {s['warmup']} frames -> {s['end_mb']} MiB after "
                  f"{s['frames']} frames (drift {s['drift_mb']:+} MiB), {s['fps']} fps")
        print(f"kill-resume: {resume['kills']} SIGKILLs, {resume['files']} files, one row each: {one_row_each}, "
              f"integrity ok: {resume['integrity_ok']}, rows lost: {resume['rows_lost']}")
        print()
        keys = ("inputs_tried", "clear_errors", "correct_results", "crashes", "hangs", "lost", "wrong", "rows_lost",
                "rss_drift_mb")
        print("SUMMARY " + "  ".join(f"{k}={summary[k]}" for k in keys))
        out = a.json or (Path(tempfile.gettempdir()) / "ffd_reliability.json" if own else work / "reliability.json")
        out.write_text(json.dumps(summary, indent=1, default=str))
        print(f"wrote {out}")
        failed = summary["crashes"] or summary["lost"] or summary["wrong"] or summary["rows_lost"] or \
            not (kr["integrity_ok"] and final["rc"] == 0) or drift > 12.0
        return 1 if failed else 0
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
