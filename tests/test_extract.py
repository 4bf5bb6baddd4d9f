"""Face extraction with the real YuNet detector on real faces, broken inputs, videos, resume and the CLI."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import face_canvas, write_corrupt_files, write_face_video

from edge.errors import ConfigError
from edge.faces.extract import MANIFEST_COLUMNS, NO_FACE, extract_faces, infer_label
from edge.spec import PreprocessSpec

ROOT = Path(__file__).resolve().parents[1]


def read_manifest(out: Path) -> list[dict]:
    with (out / "manifest.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == MANIFEST_COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def neutral_run(tmp_path_factory, london_neutral, yunet_model):
    out = tmp_path_factory.mktemp("neutral")
    summary = extract_faces(london_neutral[0].parent, out, detector_model=yunet_model, workers=0, progress=False)
    return out, summary, read_manifest(out)


def test_real_faces_detected(neutral_run, london_neutral):
    out, summary, rows = neutral_run
    assert summary.files == len(london_neutral) >= 100
    found = {r["source"] for r in rows if r["path"]}
    assert len(found) / len(london_neutral) >= 0.95
    assert summary.faces == len(found) and summary.errors == 0
    assert summary.no_face == sum(r["error"] == NO_FACE for r in rows)


def test_manifest_rows_and_crops(neutral_run):
    out, _, rows = neutral_run
    assert PreprocessSpec.from_json((out / "spec.json").read_text()) == PreprocessSpec()
    for r in [r for r in rows if r["path"]][:40]:
        crop = cv2.imread(str(out / r["path"]))
        assert crop.shape == (128, 128, 3)
        assert r["group"] == Path(r["source"]).stem and r["frame"] == "" and r["face_index"] == "0"
        x, y, w, h = json.loads(r["box"])
        assert w > 50 and h > 50 and 0 <= x < 512 and 0 <= y < 512
        lm = np.array(json.loads(r["landmarks"]))
        assert lm.shape == (5, 2) and (lm > 0).all() and (lm < 128).all()
        assert lm[0, 0] < lm[1, 0] and lm[2, 1] < lm[3, 1]  # eyes left->right, nose above mouth
        dense = np.array(json.loads(r["dense_landmarks"]))
        assert dense.shape == (189, 2)
        inside = ((dense >= 0) & (dense < 128)).all(axis=1).mean()
        assert inside > 0.7
        assert 0.6 <= float(r["det_score"]) <= 1.0


def test_dense_landmarks_follow_the_crop(neutral_run, london_neutral):
    """Point 0 of the 189 maps into the crop where the crop's own geometry says it must."""
    out, _, rows = neutral_run
    r = next(r for r in rows if r["path"])
    pts = np.loadtxt(Path(r["source"]).with_name(Path(r["source"]).stem + "_landmarks.csv"), delimiter=",",
                     skiprows=1, usecols=(1, 2))
    x, y, w, h = json.loads(r["box"])
    k = 128 / (1.3 * max(w, h))
    expect = (pts[0] - [x + w / 2, y + h / 2]) * k + 64
    assert np.allclose(json.loads(r["dense_landmarks"])[0], expect, atol=0.05)


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, london_neutral, yunet_model):
    src = tmp_path_factory.mktemp("bad_src")
    bad = write_corrupt_files(src / "bad")
    face = cv2.imread(str(london_neutral[5]))
    cv2.imwrite(str(src / "grey.png"), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(src / "rgba.png"), cv2.cvtColor(face, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(src / "good.jpg"), face)
    cv2.imwrite(str(src / "noface.png"), np.full((300, 400, 3), 128, np.uint8))
    (src / "README.txt").write_text("not media")
    out = tmp_path_factory.mktemp("bad_out")
    summary = extract_faces(src, out, detector_model=yunet_model, n_frames=4, workers=0, progress=False)
    return src, bad, out, summary, read_manifest(out)


def test_bad_inputs_recorded_and_run_goes_on(bad_run):
    src, bad, out, summary, rows = bad_run
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(Path(r["source"]).name, []).append(r)
    assert summary.files == len(bad) + 4 and summary.ignored == 1
    assert summary.errors == len(bad) and summary.faces == 3
    for name in ("grey.png", "rgba.png", "good.jpg"):
        (r,) = by_source[name]
        assert r["error"] == "" and cv2.imread(str(out / r["path"])).shape == (128, 128, 3)
    (r,) = by_source["noface.png"]
    assert r["error"] == NO_FACE and r["path"] == ""
    expected = {"zero.jpg": "empty", "zero.mp4": "empty", "notes.jpg": "cannot decode",
                "notes.mp4": "cannot open", "truncated.jpg": "cannot decode", "truncated.mp4": "cannot open"}
    for name, words in expected.items():
        (r,) = by_source[name]
        assert words in r["error"] and r["path"] == "" and r["source"] == str(bad[next(
            k for k, p in bad.items() if p.name == name)])
    avi = by_source["truncated.avi"]  # opens, decodes some frames (no face in them), then is reported truncated
    assert sum("truncated" in r["error"] for r in avi) == 1
    assert all(r["error"] == NO_FACE and r["frame"] != "" for r in avi if "truncated" not in r["error"])
    assert summary.no_face == 1 + len(avi) - 1


def test_grey_crop_is_grey(bad_run):
    _, _, out, _, rows = bad_run
    (r,) = [r for r in rows if Path(r["source"]).name == "grey.png"]
    crop = cv2.imread(str(out / r["path"])).astype(int)
    assert np.abs(crop[..., 0] - crop[..., 2]).max() == 0


def test_video_gives_n_crops(tmp_path, london_neutral, yunet_model):
    (tmp_path / "clips" / "real").mkdir(parents=True)
    video = write_face_video(tmp_path / "clips" / "real" / "clip.mp4", london_neutral[10:13], n_frames=30, fps=10)
    out = tmp_path / "out"
    s = extract_faces(tmp_path / "clips", out, detector_model=yunet_model, n_frames=8, workers=0, progress=False)
    rows = read_manifest(out)
    assert s.files == 1 and s.faces == 8 and len(rows) == 8
    frames = [int(r["frame"]) for r in rows]
    assert len(set(frames)) == 8 and all(0 <= f < 30 for f in frames)
    for r in rows:
        assert r["label"] == "real" and r["group"] == "clip" and r["source"] == str(video.absolute())
        assert float(r["time_s"]) == pytest.approx(int(r["frame"]) / 10)
        assert r["path"] == f"crops/real/clip_f{int(r['frame']):06d}.png" and (out / r["path"]).is_file()
    s2 = extract_faces(video, tmp_path / "out2", detector_model=yunet_model, every=10, workers=0, progress=False)
    assert s2.faces == 3 and sorted(int(r["frame"]) for r in read_manifest(tmp_path / "out2")) == [0, 10, 20]


def test_all_faces_policy(tmp_path, london_neutral, yunet_model):
    left = face_canvas(cv2.imread(str(london_neutral[0])), (320, 400), face_frac=0.6)
    right = face_canvas(cv2.imread(str(london_neutral[1])), (320, 400), face_frac=0.4)
    cv2.imwrite(str(tmp_path / "two.jpg"), np.hstack([left, right]))
    s = extract_faces(tmp_path / "two.jpg", tmp_path / "all", detector_model=yunet_model, policy="all",
                      workers=0, progress=False)
    rows = read_manifest(tmp_path / "all")
    assert s.faces == 2 and [r["path"] for r in rows] == ["crops/two_0.png", "crops/two_1.png"]
    boxes = [json.loads(r["box"]) for r in rows]
    assert boxes[0][2] * boxes[0][3] > boxes[1][2] * boxes[1][3] and boxes[0][0] < 320 <= boxes[1][0]
    s1 = extract_faces(tmp_path / "two.jpg", tmp_path / "one", detector_model=yunet_model, workers=0, progress=False)
    assert s1.faces == 1 and read_manifest(tmp_path / "one")[0]["box"] == rows[0]["box"]


def test_haar_fallback_needs_no_model(tmp_path, london_neutral):
    s = extract_faces(london_neutral[7], tmp_path / "haar", spec=PreprocessSpec(detector="haar", crop_mode="align5"),
                      workers=0, progress=False)
    (r,) = read_manifest(tmp_path / "haar")
    assert s.faces == 1 and r["landmarks"] == "" and r["dense_landmarks"] != ""  # align5 falls back to square
    assert json.loads((tmp_path / "haar" / "spec.json").read_text())["detector"] == "haar"


def test_resume_skips_done_and_spec_guard(tmp_path, london_neutral, yunet_model):
    src = tmp_path / "src"
    src.mkdir()
    for p in london_neutral[:3]:
        (src / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    assert extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False).files == 3
    for p in london_neutral[3:5]:
        (src / p.name).write_bytes(p.read_bytes())
    s = extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False)
    assert (s.files, s.skipped, s.faces) == (2, 3, 2)
    rows = read_manifest(out)
    assert len(rows) == 5 and len({r["source"] for r in rows}) == 5
    with pytest.raises(ConfigError) as e:
        extract_faces(src, out, spec=PreprocessSpec(size=64), detector_model=yunet_model, workers=0, progress=False)
    assert "--overwrite" in e.value.fix
    s = extract_faces(src, out, spec=PreprocessSpec(size=64), detector_model=yunet_model, workers=0,
                      progress=False, overwrite=True)
    assert s.files == 5 and cv2.imread(str(out / read_manifest(out)[0]["path"])).shape == (64, 64, 3)


def test_parallel_workers_match_in_process(bad_run, yunet_model, tmp_path):
    src, _, out0, _, rows0 = bad_run
    s = extract_faces(src, tmp_path / "par", detector_model=yunet_model, n_frames=4, workers=2, progress=False)
    rows = read_manifest(tmp_path / "par")
    key = lambda r: (r["source"], r["frame"], r["error"])  # noqa: E731
    assert sorted(map(key, rows)) == sorted(map(key, rows0)) and s.files == len({r["source"] for r in rows0})
    for r in [r for r in rows if r["path"]]:
        assert cv2.imread(str(tmp_path / "par" / r["path"])).shape == (128, 128, 3)


def test_infer_label():
    assert infer_label("/d/Real/a.jpg") == ("real", "")
    assert infer_label("/d/fake/x/a.png") == ("fake", "")
    assert infer_label("/d/fake/real/a.png") == ("real", "")  # the nearest folder wins
    assert infer_label("/ff/manipulated_sequences/Deepfakes/c23/videos/000_003.mp4") == ("fake", "Deepfakes")
    assert infer_label("/ff/original_sequences/youtube/c23/videos/000.mp4") == ("real", "")
    assert infer_label("/celeb/Celeb-synthesis/id0_id1_0000.mp4") == ("fake", "")
    assert infer_label("/data/fake_news/real_ish/a.jpg") == ("", "")


def _ffd(*args, env=None):
    return subprocess.run([sys.executable, "-m", "ffd", *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=120)


def test_cli_extract_video(tmp_path, london_neutral, yunet_model):
    video = write_face_video(tmp_path / "v.mp4", london_neutral[20:22], n_frames=20, fps=10)
    r = _ffd("faces", "extract", video, tmp_path / "out", "--frames", 5, "--label", "fake", "--no-progress",
             "--detector-model", yunet_model)
    assert r.returncode == 0, r.stderr
    assert "5 faces" in r.stdout
    rows = read_manifest(tmp_path / "out")
    assert len(rows) == 5 and {r["label"] for r in rows} == {"fake"}
    assert all((tmp_path / "out" / r["path"]).is_file() for r in rows)


def test_cli_errors_are_one_line(tmp_path, london_neutral):
    env = {k: v for k, v in os.environ.items() if k != "FFD_YUNET_MODEL"}
    r = _ffd("faces", "extract", london_neutral[0], tmp_path / "o", "--detector-model", tmp_path / "none.onnx",
             env=env)
    assert r.returncode == 3 and "--detector-model" in r.stderr and "FFD_YUNET_MODEL" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = _ffd("faces", "extract", london_neutral[0], tmp_path / "o", "--frames", 3, "--every", 2)
    assert r.returncode == 3 and "--every" in r.stderr
