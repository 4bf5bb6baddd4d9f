"""ffd screen: real short videos, bad files, resume/skip, model change, kill-and-resume, report and export."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import ROOT, make_tiny_onnx
from edge.screen import ResultsDB, ScreenSettings, aggregate, screen_archive
from edge.screen.screen import parse_aggregation
from media import write_corrupt_files, write_face_video

EVIL = "<script>alert(1)<script>.mp4"


def _write_wav(path: Path) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(8000)
        w.writeframes((np.sin(np.arange(8000) / 5) * 8000).astype(np.int16).tobytes())


@pytest.fixture(scope="module")
def archive(tmp_path_factory, london_neutral, yunet_model):
    d = tmp_path_factory.mktemp("archive")
    write_face_video(d / "a.mp4", london_neutral[0:2], n_frames=20, fps=10, size=(320, 240))
    (d / "sub").mkdir()
    write_face_video(d / "sub" / "b.avi", london_neutral[2:4], n_frames=20, fps=10, size=(320, 240), codec="MJPG")
    cv2.imwrite(str(d / "sub" / "face.jpg"), cv2.imread(str(london_neutral[5])))
    blank = np.full((240, 320, 3), 90, np.uint8)
    w = cv2.VideoWriter(str(d / "empty_room.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for _ in range(10):
        w.write(blank)
    w.release()
    write_corrupt_files(d / "bad")
    _write_wav(d / "bad" / "audio_only.mp4")
    (d / EVIL).write_bytes(b"\x00" * 100)
    return d


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_tiny_onnx(tmp_path_factory.mktemp("m") / "tiny.onnx")


def _rows(db) -> dict[str, dict]:
    with ResultsDB(db, readonly=True) as r:
        return {Path(x["path"]).name: x for x in r.rows()}


def test_aggregation_rules():
    assert aggregate([0.2, None, 0.4, 0.9], "mean") == pytest.approx(0.5)
    assert aggregate([0.2, 0.4, 0.9], "max") == pytest.approx(0.9)
    assert aggregate([0.2, 0.4, 0.9, 0.8], "topk:2") == pytest.approx(0.85)
    assert aggregate([None, None], "mean") is None
    for bad in ("median", "topk:0", "topk:x"):
        with pytest.raises(Exception, match="aggregation"):
            parse_aggregation(bad)


def test_screen_archive_rows_errors_and_resume(archive, model, tmp_path):
    db = tmp_path / "r.sqlite"
    s = screen_archive([archive], model, db, settings=ScreenSettings(n_frames=6), progress=False,
                       report=tmp_path / "r.html", export=tmp_path / "r.csv")
    rows = _rows(db)
    n_files = 4 + 7 + 2  # videos a, b, empty_room; image; 7 corrupt; audio-only; the evil name
    assert len(rows) == n_files == s["files"] == s["screened"]
    for name in ("a.mp4", "b.avi", "face.jpg"):
        r = rows[name]
        assert r["status"] == "done" and r["label"] in ("real", "fake") and 0 <= r["score"] <= 1
        assert r["model_id"] == s["model_id"] and r["threshold"] == 0.5 and r["thumb"][:2] == b"\xff\xd8"
        assert r["size"] == (archive / ("sub/" if name != "a.mp4" else "") / name).stat().st_size
        assert len(r["content_hash"]) == 64
    ev = json.loads(rows["a.mp4"]["evidence"])
    assert rows["a.mp4"]["n_frames"] == len(ev) == 6 and rows["a.mp4"]["duration_s"] == pytest.approx(2.0)
    assert rows["a.mp4"]["score"] == pytest.approx(np.mean([e["score"] for e in ev if e["score"] is not None]),
                                                   abs=1e-5)
    assert rows["empty_room.mp4"]["status"] == "no_face" and rows["empty_room.mp4"]["score"] is None
    for name in ("zero.mp4", "notes.mp4", "truncated.mp4", "zero.jpg", "truncated.jpg", "notes.jpg",
                 "audio_only.mp4", EVIL):
        assert rows[name]["status"] == "error" and rows[name]["error"], name
    assert "empty" in rows["zero.mp4"]["error"]
    assert rows["truncated.avi"]["status"] in ("no_face", "done")  # decodes its first frames
    assert s["realtime_factor"] > 0 and s["video_s"] > 4
    # a second run skips everything
    s2 = screen_archive([archive], model, db, settings=ScreenSettings(n_frames=6), progress=False)
    assert s2["skipped"] == n_files and s2["screened"] == 0
    # a touched file is screened again; nothing else
    os.utime(archive / "a.mp4", (time.time(), time.time() + 5))
    s3 = screen_archive([archive], model, db, settings=ScreenSettings(n_frames=6), progress=False)
    assert s3["screened"] == 1 and s3["skipped"] == n_files - 1
    # a different model (threshold -> model id) screens everything again; still one row per file
    m2 = make_tiny_onnx(tmp_path / "m2.onnx", threshold=0.95)
    s4 = screen_archive([archive], m2, db, settings=ScreenSettings(n_frames=6), progress=False)
    assert s4["screened"] == n_files and s4["model_id"] != s["model_id"]
    rows4 = _rows(db)
    assert len(rows4) == n_files and rows4["a.mp4"]["threshold"] == 0.95 and rows4["a.mp4"]["label"] == "real"
    with ResultsDB(db, readonly=True) as r:
        assert r.integrity_ok()
    # report and export
    html = (tmp_path / "r.html").read_text()
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;script&gt;.mp4" in html
    assert "data:image/jpeg;base64," in html and "<svg" in html
    assert html.index("a.mp4") < html.index("empty_room.mp4") < html.index("zero.mp4")
    csv_text = (tmp_path / "r.csv").read_text()
    assert csv_text.startswith("path,size,mtime,content_hash") and csv_text.count("\n") >= n_files + 1


def test_every_s_sampling_and_workers_agree(archive, model, tmp_path):
    """2 fps sampling on a 10 fps clip = every 5th frame; 2 worker processes give the same rows as in-process."""
    files = [archive / "a.mp4", archive / "sub" / "b.avi", archive / "bad" / "zero.mp4"]
    st = ScreenSettings(every_s=0.5, aggregation="topk:2")
    screen_archive(files, model, tmp_path / "w0.sqlite", settings=st, workers=0, progress=False)
    screen_archive(files, model, tmp_path / "w2.sqlite", settings=st, workers=2, progress=False)
    r0, r2 = _rows(tmp_path / "w0.sqlite"), _rows(tmp_path / "w2.sqlite")
    assert [e["frame"] for e in json.loads(r0["a.mp4"]["evidence"])] == [0, 5, 10, 15]
    for k in r0:
        for col in ("status", "label", "faces_seen", "n_frames", "error", "aggregation"):
            assert r0[k][col] == r2[k][col], (k, col)
        if r0[k]["score"] is not None:
            assert r0[k]["score"] == pytest.approx(r2[k]["score"], abs=1e-6)


def test_unsupported_file_named_explicitly_is_an_error_row(model, tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("hello")
    screen_archive([f], model, tmp_path / "r.sqlite", progress=False)
    r = _rows(tmp_path / "r.sqlite")["notes.txt"]
    assert r["status"] == "error" and "unsupported" in r["error"]


def test_unwritable_db_location_is_a_clear_error(archive, model, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = subprocess.run([sys.executable, "-m", "ffd", "screen", str(archive / "a.mp4"), "--model", str(model),
                        "--db", str(blocker / "r.sqlite"), "--no-progress", "--workers", "0"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3 and p.stderr.startswith("error:") and "Traceback" not in p.stderr


def test_kill_and_resume(tmp_path, london_neutral, model, yunet_model):
    """SIGKILL `ffd screen` mid-run, resume: one row per file, none lost, finished rows kept, DB intact."""
    arch = tmp_path / "arch"
    arch.mkdir()
    for i in range(24):
        write_face_video(arch / f"v{i:02d}.mp4", london_neutral[i % 8:i % 8 + 2], n_frames=24, fps=12,
                         size=(480, 360))
    db = tmp_path / "r.sqlite"
    cmd = [sys.executable, "-m", "ffd", "screen", str(arch), "--model", str(model), "--db", str(db),
           "--frames", "12", "--workers", "1", "--no-progress", "--detector-model", str(yunet_model)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    n_before = 0
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
                        n_before = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
                except sqlite3.OperationalError:
                    n_before = 0
                if n_before >= 3:
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the screen process and its worker (its own session)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "screening finished before it could be killed"
    assert 3 <= n_before < 24
    with sqlite3.connect(db) as con:
        before = dict(con.execute("SELECT path, screened_at FROM results").fetchall())
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary["skipped"] >= len(before) and summary["skipped"] + summary["screened"] == 24
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        paths = [r[0] for r in con.execute("SELECT path FROM results")]
        after = dict(con.execute("SELECT path, screened_at FROM results").fetchall())
        statuses = {r[0] for r in con.execute("SELECT status FROM results")}
    assert len(paths) == len(set(paths)) == 24
    assert sorted(Path(x).name for x in paths) == [f"v{i:02d}.mp4" for i in range(24)]
    assert all(after[k] == v for k, v in before.items())  # finished rows were kept, not redone
    assert statuses == {"done"}
