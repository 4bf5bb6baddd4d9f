"""`ffd detect` on images and folders: JSON lines per face, bad files recorded and not fatal."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from edge.detect import detect_paths
from tests.conftest import ROOT, make_tiny_onnx


@pytest.fixture
def image_folder(tmp_path, london_neutral, shared):
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    for f in london_neutral[:3]:
        shutil.copy(f, d / f.name)
    shutil.copy(london_neutral[3], d / "sub" / london_neutral[3].name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "notes.txt").write_text("skipped: not an image")
    # a real image without a face (a flat grey picture)
    import cv2
    import numpy as np

    cv2.imwrite(str(d / "blank.png"), np.full((120, 160, 3), 127, np.uint8))
    return d


def test_detect_paths_records(tmp_path, image_folder, yunet_model):
    model = make_tiny_onnx(tmp_path / "m.onnx", size=32, threshold=0.5)
    recs = list(detect_paths([image_folder, tmp_path / "missing.jpg"], model, detector_model=yunet_model,
                             batch_size=2))
    files = [r["file"] for r in recs]
    # a file of a folder that is not scored is listed with its reason (issue 15 class 3), never silently left out
    notes = [r for r in recs if r["file"].endswith("notes.txt")]
    assert notes == [{"file": str(image_folder / "notes.txt"), "face": None, "skipped": "unsupported extension"}]
    faces = [r for r in recs if r.get("face") is not None]
    assert len({r["file"] for r in faces}) == 4  # 3 + 1 in a subfolder
    for r in faces:
        assert 0.0 <= r["score"] <= 1.0 and r["label"] in ("real", "fake") and len(r["box"]) == 4
    errs = {r["file"].rsplit("/", 1)[-1]: r for r in recs if "error" in r}
    assert set(errs) == {"broken.jpg", "missing.jpg"} and errs["missing.jpg"]["error_type"] == "InputError"
    blank = [r for r in recs if r["file"].endswith("blank.png")]
    assert blank == [{"file": str(image_folder / "blank.png"), "face": None, "faces": 0}]
    assert files[-1].endswith("missing.jpg")  # input order is kept across batches


def test_cli_detect_writes_json_lines(tmp_path, image_folder, yunet_model):
    model = make_tiny_onnx(tmp_path / "m.onnx", size=32, threshold=0.0)  # threshold 0: every face is fake
    out = tmp_path / "out.jsonl"
    p = subprocess.run([sys.executable, "-m", "ffd", "detect", str(image_folder), "--model", str(model),
                        "-o", str(out), "--detector-model", str(yunet_model), "--threads", "1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    faces = [r for r in recs if r.get("face") is not None]
    assert faces and all(r["label"] == "fake" for r in faces)
    assert f"{len(faces)} faces ({len(faces)} fake)" in p.stderr and "1 unreadable" in p.stderr


def test_cli_detect_errors_are_one_line(tmp_path, image_folder):
    bare = make_tiny_onnx(tmp_path / "bare.onnx", card=False)
    p = subprocess.run([sys.executable, "-m", "ffd", "detect", str(image_folder), "--model", str(bare)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 3 and p.stderr.startswith("error:") and "ffd export" in p.stderr
    assert "Traceback" not in p.stderr
