"""Issue 15 class 5, failures recorded as results: errors of the run's own settings stop the run (or are
retried next time), only per-file faults are recorded per file; every row records the settings
fingerprint that made it, and a re-run with another model, detector or settings never reuses rows made
by others. Real models, real files, real allocation failures (``RLIMIT_AS``)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import cv2
import pytest

from harness import ROOT, run_ffd, screen_rows
from media import face_canvas
from tests.conftest import make_tiny_onnx


@pytest.fixture(scope="module")
def archive(tmp_path_factory, london_neutral):
    d = tmp_path_factory.mktemp("arch5")
    for i in range(4):
        cv2.imwrite(str(d / f"face{i}.jpg"), face_canvas(cv2.imread(str(london_neutral[i])), (320, 240)))
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")  # a per-file fault: recorded, kept
    return d


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two classifiers with the *same* model card (same model_id) but different weights, and a third
    with another threshold."""
    d = tmp_path_factory.mktemp("m5")
    return (make_tiny_onnx(d / "a.onnx", weight=4.0), make_tiny_onnx(d / "b.onnx", weight=-4.0),
            make_tiny_onnx(d / "c.onnx", threshold=0.9))


def _screen(archive, model, db, *extra, env=None):
    run = run_ffd(["screen", archive, "-m", model, "--db", db, "--workers", "0", "--no-progress", *extra],
                  timeout=240, env=env)
    summary = json.loads(run.stdout.splitlines()[0]) if run.rc == 0 and run.stdout.strip() else None
    return run, summary


def test_a_rerun_with_another_model_or_detector_never_reuses_rows(archive, models, yunet_model, tmp_path):
    from edge.runtime import open_runner

    a, b, c = models
    with open_runner(a) as ra, open_runner(b) as rb:
        assert ra.card.model_id() == rb.card.model_id()  # only the weights differ
    db = tmp_path / "s.sqlite"
    det = ["--detector-model", yunet_model]
    run, s = _screen(archive, a, db, *det)
    assert run.rc == 0 and not run.problems() and s["screened"] == 5, run.stderr[-1500:]
    fp_a = s["fingerprint"]
    run, s = _screen(archive, a, db, *det)
    assert s["skipped"] == 5 and s["screened"] == 0, s  # same settings: resumed
    run, s = _screen(archive, b, db, *det)
    assert s["skipped"] == 0 and s["screened"] == 5 and s["fingerprint"] != fp_a, s  # other weights: redone
    run, s = _screen(archive, c, db, *det)
    assert s["skipped"] == 0 and s["screened"] == 5, s  # other threshold
    run, s = _screen(archive, c, db, *det, "--frames", "8", "--aggregate", "max")
    assert s["skipped"] == 0, s  # other sampling settings (an image has one frame: --aggregate changes the key)
    # another face-detector model (the same network, other bytes) is another setting too
    import onnx

    m = onnx.load(str(yunet_model))
    m.doc_string = "the same YuNet, re-saved"
    other_det = tmp_path / "yunet_copy.onnx"
    onnx.save(m, str(other_det))
    run, s = _screen(archive, c, db, "--detector-model", other_det, "--frames", "8", "--aggregate", "max")
    assert run.rc == 0 and s["skipped"] == 0 and s["screened"] == 5, (run.stderr[-800:], s)
    with sqlite3.connect(db) as con:
        fps = {r[0] for r in con.execute("SELECT DISTINCT fingerprint FROM results")}
        what = dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'fingerprint:%'").fetchall())
    assert fps == {s["fingerprint"]}  # every row says which settings made it
    described = json.loads(what[f"fingerprint:{s['fingerprint']}"])
    assert described["detector"]["model_sha256"] and described["threshold"] == 0.9


def test_wrong_detector_then_right_detector(archive, models, yunet_model, tmp_path):
    """A detector model that is not a face detector stops the run with one line and writes no rows; the
    re-run with the right one screens every file."""
    a = models[0]
    db = tmp_path / "s.sqlite"
    run, _ = _screen(archive, a, db, "--detector-model", a)  # a classifier given as the detector
    assert run.rc not in (0, None) and not run.problems() and "YuNet" in run.error_line(), run.stderr[-800:]
    assert screen_rows(db) == {}
    run, s = _screen(archive, a, db, "--detector-model", yunet_model)
    assert run.rc == 0 and s["screened"] == 5 and s["done"] == 4 and s["error"] == 1, s


def test_decode_timeout_aborts_and_rerun_screens_everything(archive, models, yunet_model, tmp_path):
    a = models[0]
    db = tmp_path / "s.sqlite"
    det = ["--detector-model", yunet_model]
    vids = tmp_path / "vids"
    vids.mkdir()
    from media import write_face_video

    for i in range(4):
        write_face_video(vids / f"v{i}.mp4", [archive / f"face{i}.jpg"], n_frames=12, fps=10, size=(320, 240))
    run, _ = _screen(vids, a, db, *det, env={"FFD_DECODE_TIMEOUT_S": "0.000001"})
    assert run.rc not in (0, None) and not run.problems(), run.stderr[-800:]
    assert "FFD_DECODE_TIMEOUT_S" in run.error_line() and "first 3 files" in run.error_line()
    assert screen_rows(db) == {}  # nothing a re-run could mistake for a result
    run, s = _screen(vids, a, db, *det)
    assert run.rc == 0 and s["skipped"] == 0 and s["done"] == 4, s


def test_transient_error_rows_are_retried_and_per_file_errors_kept(archive, models, yunet_model, tmp_path):
    a = models[0]
    db = tmp_path / "s.sqlite"
    det = ["--detector-model", yunet_model]
    run, s = _screen(archive, a, db, *det)
    assert s["done"] == 4 and s["error"] == 1, s
    victim = str((archive / "face2.jpg").resolve())
    with sqlite3.connect(db) as con:  # as if this file had timed out / run out of memory in that run
        con.execute("UPDATE results SET status='error', score=NULL, error='decoding took longer than 300 s', "
                    "error_type='DecodeTimeoutError' WHERE path=?", (victim,))
        con.execute("UPDATE results SET status='error', error='out of memory', error_type='OutOfMemoryError' "
                    "WHERE path=?", (str((archive / "face3.jpg").resolve()),))
    run, s = _screen(archive, a, db, *det)
    assert run.rc == 0 and s["screened"] == 2 and s["skipped"] == 3, s  # the two transient rows, not broken.jpg
    rows = screen_rows(db)
    assert rows[victim]["status"] == "done" and rows[str((archive / "broken.jpg").resolve())]["status"] == "error"


_OOM = r"""
import json, os, resource, sys
from pathlib import Path
os.environ["FFD_MAX_IMAGE_PIXELS"] = str(10**9)  # past the pixel budget: the allocation itself fails
from edge.forgery import ForgeryDetector
from edge.screen.screen import ScreenSettings, is_transient, sample_file, score_sample
model, small, big = sys.argv[1:4]
fd = ForgeryDetector(model, "ort", intra_op_threads=1)
settings = ScreenSettings(n_frames=4)
rows = [score_sample(fd, sample_file(small, "image", settings, fd.detector, fd.spec), settings)]  # warm
def vm():
    return next(int(x.split()[1]) * 1024 for x in open("/proc/self/status") if x.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (vm() + (150 << 20), resource.RLIM_INFINITY))
rows.append(score_sample(fd, sample_file(big, "image", settings, fd.detector, fd.spec), settings))
print(json.dumps([{k: r.get(k) for k in ("status", "error", "error_type")} | {"transient": is_transient(r)}
                  for r in rows]))
"""


def test_an_allocation_failure_is_never_a_result(archive, models, yunet_model, tmp_path):
    """A real allocation failure (RLIMIT_AS) while decoding: an error row of a transient kind (retried by
    the next run), never ``no_face`` and never a score."""
    import numpy as np

    big = tmp_path / "big.jpg"
    cv2.imwrite(str(big), np.full((12000, 12000, 3), 90, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 50])
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FFD_YUNET_MODEL": str(yunet_model)}
    r = subprocess.run([sys.executable, "-c", _OOM, str(models[0]), str(archive / "face0.jpg"), str(big)],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr[-1500:]
    small_row, big_row = json.loads(r.stdout.splitlines()[-1])
    assert small_row["status"] == "done"
    assert big_row["status"] == "error" and big_row["error_type"] == "OutOfMemoryError" and big_row["transient"], \
        big_row
