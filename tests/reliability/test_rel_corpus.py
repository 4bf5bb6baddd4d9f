"""Every entry of the generated bad-input corpus through ``faces extract``, ``detect``, ``screen`` and
``eval``: each ends in a recorded error or a correct result; no crash, no hang, no traceback."""
from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from corpus import HOSTILE_NAME, jpeg_with_exif_orientation
from harness import (detect_image_outcomes, detect_video_outcomes, eval_image_outcomes, integrity_ok, run_ffd,
                     screen_outcomes, screen_rows, table)
from rel_fixtures import rel_ckpt, rel_corpus, rel_extract, rel_model  # noqa: F401 - fixtures


def _by_name(entries):
    return {e.name: e for e in entries}


def _assert_all_ok(outcomes, run=None):
    bad = [o for o in outcomes if not o.ok]
    assert not bad, "\n" + table(bad) + (f"\nstderr tail: {run.stderr[-1500:]}" if run else "")


# --- the corpus is what it claims to be ---------------------------------------------------------
def test_corpus_files_are_what_they_claim(rel_corpus):
    folder, entries = rel_corpus
    e = _by_name(entries)
    assert len(entries) >= 28 and len({x.path for x in entries}) == len(entries)
    assert HOSTILE_NAME in e
    assert e["zero.mp4"].path.stat().st_size == 0 and e["zero.jpg"].path.stat().st_size == 0
    assert e["audio_only.mp4"].path.read_bytes()[:4] == b"RIFF"  # a real WAV under an .mp4 name
    png16 = cv2.imread(str(e["deep16.png"].path), cv2.IMREAD_UNCHANGED)
    assert png16.dtype == np.uint16 and png16.max() > 255
    assert cv2.imread(str(e["rgba.png"].path), cv2.IMREAD_UNCHANGED).shape[2] == 4
    assert cv2.imread(str(e["grey.png"].path), cv2.IMREAD_UNCHANGED).ndim == 2
    assert cv2.imread(str(e["one_pixel.png"].path)).shape == (1, 1, 3)
    assert cv2.imread(str(e[f"huge_{8000}.jpg"].path), cv2.IMREAD_REDUCED_GRAYSCALE_8).shape == (1000, 1000)
    for name in ("truncated.mp4", "truncated.avi", "truncated.mkv", "truncated.jpg"):
        assert e[name].path.stat().st_size > 0
    # rotated metadata: stored sideways (240 wide, 320 high), displayed upright by the tkhd matrix
    cap = cv2.VideoCapture(str(e["rotated90.mp4"].path), cv2.CAP_FFMPEG)
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape[:2] == (240, 320)
    # variable frame rate: irregular presentation timestamps
    cap = cv2.VideoCapture(str(e["vfr.mp4"].path), cv2.CAP_FFMPEG)
    ts = []
    while cap.grab():
        ts.append(cap.get(cv2.CAP_PROP_POS_MSEC))
    cap.release()
    steps = np.round(np.diff(ts), 1)
    assert len(ts) == 10 and len(set(steps.tolist())) >= 3, ts


def test_exif_orientation_is_applied(tmp_path):
    from edge.media import read_image

    img = np.zeros((40, 100, 3), np.uint8)
    img[:, :10] = 255  # a white bar on the left of the upright image
    stored = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)  # bar at the bottom, 100 high
    p = tmp_path / "o6.jpg"
    p.write_bytes(jpeg_with_exif_orientation(stored, 6))
    out = read_image(p)
    assert out.shape[:2] == (40, 100)
    assert out[:, :10].mean() > 200 and out[:, -10:].mean() < 50


def test_twenty_faces_are_found(rel_corpus, yunet_model):
    from edge.faces import FaceDetector
    from edge.media import iter_video_frames

    _, entries = rel_corpus
    frame = next(iter_video_frames(_by_name(entries)["faces20.mp4"].path, n_frames=1))[2]
    assert len(FaceDetector(model_path=yunet_model).detect(frame)) >= 16


# --- entry points -------------------------------------------------------------------------------
def test_faces_extract_corpus(rel_corpus, rel_extract):
    outcomes, run, out = rel_extract
    _, entries = rel_corpus
    assert run.rc == 0 and not run.problems(), run.stderr[-2000:]
    assert len(outcomes) == len(entries)
    _assert_all_ok(outcomes, run)
    by = {o.entry: o for o in outcomes}
    assert by["faces20.mp4"].detail.startswith(tuple(f"{n} crops" for n in range(64, 81)))  # >= 16 per frame, 4 frames
    assert "video truncated" in by["truncated.avi"].detail


def test_detect_corpus_images_cli(rel_corpus, rel_model, tmp_path):
    folder, entries = rel_corpus
    outcomes, run = detect_image_outcomes(folder, entries, rel_model, tmp_path / "det.jsonl")
    assert run.rc == 0 and not run.problems(), run.stderr[-2000:]
    assert len(outcomes) == sum(e.kind == "image" or e.expect == "skipped" for e in entries)
    _assert_all_ok(outcomes, run)


def test_detect_corpus_videos(decoder, rel_corpus, rel_model):
    _, entries = rel_corpus
    outcomes = detect_video_outcomes(entries, rel_model)
    assert len(outcomes) == sum(e.kind == "video" and e.expect != "skipped" for e in entries)
    _assert_all_ok(outcomes)


def test_detect_cli_videos_never_traceback(rel_corpus, rel_model, tmp_path):
    """Broken videos on the `ffd detect` command line: results or one clear error line, never a traceback."""
    _, entries = rel_corpus
    vids = [e.path for e in entries if e.kind == "video" and e.expect != "face"]
    run = run_ffd(["detect", *vids, "-m", rel_model, "-o", tmp_path / "v.jsonl"], timeout=240)
    assert not run.problems(), run.stderr[-2000:]


def test_screen_corpus(decoder, rel_corpus, rel_model, tmp_path):
    folder, entries = rel_corpus
    db, report = tmp_path / "s.sqlite", tmp_path / "report.html"
    outcomes, run = screen_outcomes(folder, entries, rel_model, db, report=report)
    assert run.rc == 0 and not run.problems(), run.stderr[-2000:]
    _assert_all_ok(outcomes, run)
    scored = [e for e in entries if e.expect != "skipped"]
    assert len(screen_rows(db)) == len(scored)
    assert integrity_ok(db)
    # the hostile file name is text in the report, never markup
    html = report.read_text()
    assert "<img src=x onerror" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&amp;.jpg" in html
    assert "<script" not in html.lower()
    summary = json.loads(run.stdout.strip().splitlines()[0])
    assert summary["files"] == len(scored) and summary["error"] == sum(o.result == "error" for o in outcomes)
    assert summary["ignored"] == len(entries) - len(scored) == sum(o.result == "skipped" for o in outcomes)


def test_eval_on_folder_datasets_with_bad_images(rel_corpus, rel_ckpt, london_neutral, tmp_path):
    _, entries = rel_corpus
    outcomes = eval_image_outcomes(entries, rel_ckpt, london_neutral[20:24], tmp_path)
    assert len(outcomes) == sum(e.kind == "image" for e in entries)
    _assert_all_ok(outcomes)
    by = {o.entry: o for o in outcomes}
    assert "zero.jpg" in by and by["zero.jpg"].result == "error" and "entry.jpg" in by["zero.jpg"].detail


def test_eval_cli_on_the_corpus_extraction(rel_extract, rel_ckpt, tmp_path):
    """The extraction of the whole corpus (error rows included) is a dataset `ffd eval` reads."""
    _, _, out = rel_extract
    run = run_ffd(["eval", rel_ckpt, out, "--out", tmp_path / "rep.json"], timeout=240)
    assert run.rc == 0 and not run.problems(), run.stderr[-2000:]
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert 0.0 <= rep["frame"]["auc"] <= 1.0


def test_eval_cli_bad_image_is_one_clear_line(rel_corpus, rel_ckpt, london_neutral, tmp_path):
    import shutil

    _, entries = rel_corpus
    for sub, files in (("real", london_neutral[:2]), ("fake", london_neutral[2:4])):
        (tmp_path / sub).mkdir()
        for f in files:
            shutil.copy(f, tmp_path / sub / f.name)
    shutil.copy(_by_name(entries)["text.png"].path, tmp_path / "fake" / "text.png")
    run = run_ffd(["eval", rel_ckpt, tmp_path], timeout=240)
    assert run.rc == 3 and not run.problems(), run.stderr[-2000:]
    assert "text.png" in run.error_line()


# --- the per-file decode watchdog ------------------------------------------------------------
def test_decode_timeout_is_a_recorded_error(decoder, rel_corpus, tmp_path, monkeypatch):
    from edge.errors import InputError
    from edge.media import VideoReader, iter_video_frames

    _, entries = rel_corpus
    video = _by_name(entries)["face.mp4"].path
    with VideoReader(video, timeout_s=1e-6) as r, pytest.raises(InputError, match="per-file decode timeout"):
        list(r.frames(n_frames=4))
    monkeypatch.setenv("FFD_DECODE_TIMEOUT_S", "1e-6")
    with pytest.raises(InputError, match="decoding took longer"):
        list(iter_video_frames(video, n_frames=4))
    monkeypatch.setenv("FFD_DECODE_TIMEOUT_S", "60")
    assert len(list(iter_video_frames(video, n_frames=4))) == 4


def test_decode_timeout_through_screen_and_extract(rel_corpus, rel_model, tmp_path):
    """A timeout too short for every file is the run's setting, not a fault of each file (issue 15 class 5):
    screen and extract stop with one error line naming FFD_DECODE_TIMEOUT_S and record nothing, so the
    re-run with a sane timeout screens every file."""
    folder, entries = rel_corpus
    videos = [e for e in entries if e.kind == "video" and e.expect == "face"][:3]
    src = tmp_path / "src"
    src.mkdir()
    for e in videos:
        (src / e.name).write_bytes(e.path.read_bytes())
    env = {"FFD_DECODE_TIMEOUT_S": "0.000001"}
    db = tmp_path / "t.sqlite"
    run = run_ffd(["screen", src, "-m", rel_model, "--db", db, "--workers", "0", "--no-progress"], timeout=120, env=env)
    assert run.rc not in (0, None) and not run.problems(), run.stderr[-1500:]
    assert "FFD_DECODE_TIMEOUT_S" in run.error_line()
    assert screen_rows(db) == {}  # no error row that a re-run would skip
    run = run_ffd(["screen", src, "-m", rel_model, "--db", db, "--workers", "0", "--no-progress"], timeout=120)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    rows = screen_rows(db)
    assert len(rows) == 3 and all(r["status"] == "done" for r in rows.values()), rows
    run = run_ffd(["faces", "extract", src, tmp_path / "ext", "--workers", "0", "--no-progress"], timeout=120, env=env)
    assert run.rc not in (0, None) and not run.problems(), run.stderr[-1500:]
    assert "FFD_DECODE_TIMEOUT_S" in run.error_line()
    manifest = tmp_path / "ext" / "manifest.csv"
    assert not manifest.is_file() or "decode timeout" not in manifest.read_text()
    run = run_ffd(["faces", "extract", src, tmp_path / "ext", "--workers", "0", "--no-progress"], timeout=120)
    assert run.rc == 0 and not run.problems(), run.stderr[-1500:]
    assert len({r["source"] for r in csv.DictReader(manifest.open()) if r["path"]}) == 3
