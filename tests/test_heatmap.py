"""Forgery heatmaps: exact CAMs in numpy from the exported ``features`` output, INT8 too, in detect and screen.

A tiny student (``student_tiny``, 128 px: a 4x4 feature grid) is exported in the test with and without the
heatmap output and quantized to both INT8 flavours; everything runs in real ONNX Runtime, OpenCV and (for the
report) headless Chromium, skipped with the reason where one is missing.
"""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from browser import headless_chromium
from edge import heatmap as hm
from tests.conftest import ROOT

SIZE = 128
pytestmark = pytest.mark.filterwarnings("ignore::calib.calibset.SmallCalibrationSetWarning")


def _crops(shared, n=16):
    import cv2

    files = sorted((shared / "data" / "ciplab_real_fake_160" / "face_crops" / "real").glob("*"))[:n]
    if not files:
        pytest.skip("ciplab face_crops/real is empty")
    return [cv2.imread(str(f)) for f in files]


def _make_ckpt(path: Path, x, threshold: float):
    """student_tiny with a wide head whose scores spread around 0.5 on real faces; the card's threshold as given."""
    import torch

    from edge.spec import ModelCard, PreprocessSpec
    from train.checkpoint import save_checkpoint
    from train.registry import create_model

    torch.manual_seed(0)
    m = create_model("student_tiny").eval()
    with torch.no_grad():
        m.head.fc.weight.mul_(300.0)
        d = m(torch.from_numpy(x))
        m.head.fc.bias[1] -= float((d[:, 1] - d[:, 0]).median())
    return save_checkpoint(path, m, ModelCard("student_tiny", PreprocessSpec(size=SIZE), threshold=threshold,
                                              version="test"))


@pytest.fixture(scope="module")
def models(tmp_path_factory, shared):
    """FP32 with and without the features output, a low-threshold twin (every face flagged), INT8 both flavours."""
    from calib.calibset import build_calibset
    from calib.export import export_onnx
    from calib.quantize import quantize_onnx
    from edge.spec import PreprocessSpec, preprocess

    d = tmp_path_factory.mktemp("heat")
    crops = _crops(shared)
    x = preprocess(crops, PreprocessSpec(size=SIZE))
    faces = [shared / "data" / "london_faces" / "neutral"]
    ckpt = _make_ckpt(d / "tiny.pt", x, 0.5)
    low = _make_ckpt(d / "low.pt", x, 0.001)
    out = {"dir": d, "ckpt": ckpt, "x": x, "crops": crops}
    out["fp32"] = export_onnx(ckpt, d / "tiny.onnx", parity_data=faces, parity_n=8, verbose=False)["path"]
    out["plain"] = export_onnx(ckpt, d / "plain.onnx", parity_data=faces, parity_n=8, verbose=False,
                               heatmap=False)["path"]
    out["low"] = export_onnx(low, d / "low.onnx", parity_data=faces, parity_n=8, verbose=False)["path"]
    out["low_plain"] = export_onnx(low, d / "low_plain.onnx", parity_data=faces, parity_n=8, verbose=False,
                                   heatmap=False)["path"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        build_calibset(d / "tiny.onnx", faces, d / "calib", n=32,
                       crops=[shared / "data" / "ciplab_real_fake_160" / "face_crops" / "real"])
        rep = quantize_onnx(d / "tiny.onnx", d / "calib", d / "q", target="both", verbose=False)
    out["int8"] = {k: a["path"] for k, a in rep["int8"].items()}
    return out


# --- exactness ---------------------------------------------------------------------------------
def test_numpy_cam_equals_torch_reference(models):
    import onnx
    import torch

    from edge.forgery import ForgeryDetector
    from edge.runtime.ort import OrtRunner
    from train.checkpoint import load_checkpoint

    assert [o.name for o in onnx.load(models["fp32"]).graph.output] == ["score", "features"]
    assert [o.name for o in onnx.load(models["plain"]).graph.output] == ["score"]
    model = load_checkpoint(models["ckpt"])[0].eval()
    x = models["x"]
    with torch.no_grad():  # the reference: torch's feature map times the fake-minus-real weights of the head
        xt = torch.from_numpy(x)
        fm = model.forward_features(xt)
        w = model.head.fc.weight[1] - model.head.fc.weight[0]
        ref = torch.einsum("nchw,c->nhw", fm, w).numpy()
        logits = model(xt)
        ref_logit = (logits[:, 1] - logits[:, 0]).numpy()
    with OrtRunner(models["fp32"]) as r:
        assert r.features_name == "features"
        scores, feats = r.infer_with_features(x)
        assert np.array_equal(scores, r.infer(x))  # the scores do not change when features are fetched
        head = hm.cam_head(r.card)
    assert feats.shape == (len(x), 32, SIZE // 32, SIZE // 32)
    got = hm.cam(feats, head)
    scale = float(np.abs(ref).max())
    assert np.abs(got - ref).max() <= 1e-4 * scale, np.abs(got - ref).max()
    # exact: the spatial mean of the CAM plus the head's bias is the logit the score came from
    assert np.allclose(hm.logits_from_cam(got, head.bias), ref_logit, atol=1e-4 * max(1.0, np.abs(ref_logit).max()))
    with ForgeryDetector(models["fp32"], "ort", heatmaps=True) as fd:
        sc, cams = fd.cams(models["crops"])
        assert np.abs(cams - ref).max() <= 1e-4 * scale
        s2, maps = fd.classify_crops_with_heatmaps(models["crops"])
    assert np.array_equal(sc, s2)
    flagged = s2 >= 0.5
    assert flagged.any() and (~flagged).any()
    assert all((m is not None) == f for m, f in zip(maps, flagged))  # maps only for faces at/above the threshold
    for m, c in zip(maps, models["crops"]):
        if m is not None:
            assert m.shape == c.shape[:2] and m.dtype == np.float32 and 0.0 <= m.min() and m.max() <= 1.0


def _pearson(a, b):
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    a, b = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    return (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1) + 1e-30)


def test_int8_keeps_the_output_and_its_cam_correlates(models, capsys):
    import onnx

    from edge.runtime.ort import OrtRunner

    with OrtRunner(models["fp32"]) as r:
        _, f32 = r.infer_with_features(models["x"])
        head = hm.cam_head(r.card)
    ref = hm.cam(f32, head)
    figures = {}
    for flavour, path in models["int8"].items():
        assert [o.name for o in onnx.load(path).graph.output] == ["score", "features"], flavour
        with OrtRunner(path) as r:
            assert r.features_name == "features" and hm.cam_head(r.card) is not None
            _, fq = r.infer_with_features(models["x"])
        rho = _pearson(ref, hm.cam(fq, hm.cam_head(r.card)))
        figures[flavour] = (float(np.median(rho)), float(rho.min()))
    with capsys.disabled():
        print("\nINT8 vs FP32 CAM Pearson r (median, min) on", len(models["x"]), "real faces:",
              {k: tuple(round(v, 3) for v in f) for k, f in figures.items()})
    for flavour, (med, lo) in figures.items():
        assert med >= 0.9 and lo >= 0.5, (flavour, med, lo)


# --- a model without the output ----------------------------------------------------------------
def test_missing_output_warns_once_and_scores_are_unchanged(models):
    from edge.forgery import ForgeryDetector, HeatmapUnavailableWarning

    crops = models["crops"]
    with ForgeryDetector(models["fp32"], "ort") as fd:
        want = fd.classify_crops(crops)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        with ForgeryDetector(models["plain"], "ort", heatmaps=True) as fd:
            assert not fd.heatmaps and not fd.heatmaps_available
            s1, maps = fd.classify_crops_with_heatmaps(crops)
            s2, _ = fd.classify_crops_with_heatmaps(crops)
            frame = np.zeros((120, 160, 3), np.uint8)
            fd.process_batch([frame], heatmaps=True)
            s3 = fd.classify_crops(crops)
    ours = [x for x in w if issubclass(x.category, HeatmapUnavailableWarning)]
    assert len(ours) == 1, [str(x.message) for x in ours]
    assert "export" in str(ours[0].message) and "--heatmap" in str(ours[0].message)
    assert maps == [None] * len(crops)
    for s in (s1, s2, s3):
        assert np.allclose(s, want, atol=1e-6)


# --- ffd detect --heatmaps -----------------------------------------------------------------------
@pytest.fixture
def photos(tmp_path, london_neutral):
    d = tmp_path / "photos"
    d.mkdir()
    for f in london_neutral[:2]:
        shutil.copy(f, d / f.name)
    return d


def _detect(photos, model, out, heat, yunet):
    return subprocess.run([sys.executable, "-m", "ffd", "detect", str(photos), "--model", str(model), "-o", str(out),
                           "--detector-model", str(yunet), "--threads", "1", "--heatmaps", str(heat)],
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_detect_heatmaps_writes_overlays_and_never_overwrites(models, photos, tmp_path, yunet_model):
    import cv2

    heat = tmp_path / "heat"
    heat.mkdir()
    first = sorted(photos.iterdir())[0]
    user = heat / f"{first.stem}_face0.jpg"
    user.write_bytes(b"the user's own file")
    p = _detect(photos, models["low"], tmp_path / "o.jsonl", heat, yunet_model)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    faces = [r for r in recs if r.get("face") is not None]
    assert faces and all(r["label"] == "fake" and "heatmap" in r for r in faces)
    assert user.read_bytes() == b"the user's own file"  # never overwritten: the overlay took another name
    paths = [Path(r["heatmap"]) for r in faces]
    assert len(set(paths)) == len(paths) and user not in paths
    assert any(q.name == f"{first.stem}_face0_1.jpg" for q in paths)
    for q in paths:
        img = cv2.imread(str(q))
        assert q.parent == heat and img is not None and img.shape == (SIZE, SIZE, 3)
    # a second run into the same folder adds files, it replaces none
    before = {q: q.read_bytes() for q in heat.iterdir()}
    p = _detect(photos, models["low"], tmp_path / "o2.jsonl", heat, yunet_model)
    assert p.returncode == 0, p.stderr
    assert all(q.read_bytes() == b for q, b in before.items()) and len(list(heat.iterdir())) == 2 * len(before) - 1


def test_detect_heatmaps_without_the_output_says_so_once(models, photos, tmp_path, yunet_model):
    heat = tmp_path / "heat"
    p = _detect(photos, models["low_plain"], tmp_path / "o.jsonl", heat, yunet_model)
    assert p.returncode == 0, p.stderr
    assert p.stderr.count("exported without the heatmap output") == 1, p.stderr
    recs = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert [r for r in recs if r.get("face") is not None] and not any("heatmap" in r for r in recs)
    assert not heat.exists() or not any(heat.iterdir())


def test_heatmap_writer_refuses_a_file_and_keeps_names_unique(tmp_path):
    from edge.errors import ConfigError

    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ConfigError, match="names a file"):
        hm.HeatmapWriter(tmp_path / "f.txt")
    w = hm.HeatmapWriter(tmp_path / "out", ext=".png")
    crop, heat = np.full((32, 32, 3), 90, np.uint8), np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    names = [Path(w.write("../a b", crop, heat)).name for _ in range(3)]
    assert names == ["a_b.png", "a_b_1.png", "a_b_2.png"] and w.written == 3
    assert all((tmp_path / "out" / n).is_file() for n in names)


# --- ffd screen --report --------------------------------------------------------------------------
def _chromium(tmp_path):
    return headless_chromium(tmp_path, window="1400,900")


def test_screen_report_renders_the_heatmaps_in_chromium(models, photos, tmp_path, yunet_model):
    from edge.screen import ScreenSettings, screen_archive
    from edge.screen.db import ResultsDB

    report = tmp_path / "report.html"
    screen_archive([photos], models["low"], tmp_path / "s.db", settings=ScreenSettings(max_faces=2), workers=0,
                   backend="ort", detector_model=yunet_model, report=report, progress=False)
    with ResultsDB(tmp_path / "s.db", readonly=True) as db:
        rows = list(db.rows())
    assert rows and all(r["label"] == "fake" and r["heatmaps"] for r in rows)
    for r in rows:
        for e in json.loads(r["heatmaps"]):
            assert base64.b64decode(e["jpeg"])[:3] == b"\xff\xd8\xff" and e["score"] >= 0.001
    html = report.read_text()
    assert html.count('class="heat"') == sum(len(json.loads(r["heatmaps"])) for r in rows)
    drv = _chromium(tmp_path)
    try:
        from selenium.webdriver.common.by import By

        drv.get(report.resolve().as_uri())
        imgs = drv.find_elements(By.CSS_SELECTOR, "img.heat")
        assert len(imgs) == html.count('class="heat"') >= 1
        for img in imgs:  # decoded by the browser under the page's CSP (img-src data: only)
            assert drv.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) > 0
    finally:
        drv.quit()


def test_report_drops_heatmap_data_that_is_not_a_jpeg():
    from edge.screen.report import heatmaps_html

    good = base64.b64encode(b"\xff\xd8\xff\xe0fake but jpeg-shaped").decode()
    raw = json.dumps([{"jpeg": "<script>alert(1)</script>", "frame": 1}, {"jpeg": base64.b64encode(b"GIF89a").decode()},
                      {"jpeg": good, "frame": "<b>", "score": 0.9}, "not a dict"])
    html = heatmaps_html(raw)
    assert html.count("<img") == 1 and "<script" not in html and "<b>" not in html and "frame ?" in html
    assert heatmaps_html("{not json") == "" and heatmaps_html(None) == ""


# --- TensorRT ----------------------------------------------------------------------------------
@pytest.mark.gpu
def test_trt_features_binding_matches_onnx_runtime(models, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    from edge.runtime.ort import OrtRunner
    from edge.runtime.trt import TrtRunner, build_engine

    eng = build_engine(models["fp32"], tmp_path / "tiny.engine", max_batch=16).engine_path
    with OrtRunner(models["fp32"]) as o, TrtRunner(eng) as t:
        assert t.features_name == "features"
        so, fo = o.infer_with_features(models["x"])
        st, ft = t.infer_with_features(models["x"])
        assert np.array_equal(t.infer(models["x"]), st) or np.allclose(t.infer(models["x"]), st, atol=1e-6)
    assert np.allclose(so, st, atol=1e-3) and np.allclose(fo, ft, atol=1e-2 * max(1.0, float(np.abs(fo).max())))


def test_heatmap_writer_leaves_hidden_user_files_alone(tmp_path):
    """The overlay's temporary file gets a fresh exclusive name: a user's hidden file that looks like one
    (``.face.<pid>.tmp``) keeps its bytes, and no temporary file stays behind."""
    import os

    import edge.heatmap as hm

    out = tmp_path / "maps"
    out.mkdir()
    mine = out / f".face.{os.getpid()}.tmp"
    mine.write_bytes(b"user data")
    w = hm.HeatmapWriter(out)
    p = w.write("face", np.full((32, 32, 3), 128, np.uint8), np.ones((4, 4), np.float32))
    assert mine.read_bytes() == b"user data"
    assert sorted(x.name for x in out.iterdir()) == sorted([mine.name, os.path.basename(p)])
