"""The spec, the crop and the CLI shell: the pieces every stage shares."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.errors import ConfigError, ModelError
from edge.faces import Detection, FaceDetector, crop_face, transform_points
from edge.spec import ModelCard, PreprocessSpec, normalize, preprocess


def test_spec_round_trip_and_fingerprint():
    s = PreprocessSpec(size=96, margin=1.25, crop_mode="align5")
    back = PreprocessSpec.from_json(s.to_json())
    assert back == s and back.fingerprint() == s.fingerprint()
    assert s.fingerprint() != PreprocessSpec().fingerprint()
    card = ModelCard("student_small", spec=s, threshold=0.42, uncertain_band=0.05)
    assert ModelCard.from_json(card.to_json()) == card
    assert card.label(0.9) == "fake" and card.label(0.1) == "real" and card.label(0.44) == "uncertain"


@pytest.mark.parametrize("bad", [dict(crop_mode="x"), dict(size=2), dict(margin=0.5), dict(color_order="HSV")])
def test_spec_rejects_bad_fields(bad):
    with pytest.raises(ConfigError):
        PreprocessSpec(**bad)


def test_normalize_matches_formula():
    spec = PreprocessSpec(size=8)
    crop = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = normalize(crop, spec)
    rgb = crop[..., ::-1].astype(np.float32) / 255.0
    ref = ((rgb - np.array(spec.mean)) / np.array(spec.std)).transpose(2, 0, 1)
    assert x.shape == (1, 3, 8, 8) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], ref, atol=1e-5)


def test_square_crop_maps_box_centre_to_crop_centre():
    spec = PreprocessSpec(size=64, margin=1.5)
    img = np.zeros((200, 300, 3), np.uint8)
    img[50:150, 100:200] = 255  # the "face" box
    det = Detection((100, 50, 100, 100), 1.0, None)
    crop, m = crop_face(img, det, spec)
    assert crop.shape == (64, 64, 3)
    c = transform_points(np.array([[150.0, 100.0]]), m)[0]
    np.testing.assert_allclose(c, [32, 32], atol=1e-6)
    # the box spans 1/1.5 of the crop: the border ring is black, the centre white
    assert crop[32, 32].min() == 255 and crop[2, 2].max() == 0


def test_yunet_finds_faces_and_missing_model_is_clear(london_neutral, yunet_model, tmp_path):
    det = FaceDetector("yunet", yunet_model)
    found = sum(bool(det.detect(cv2.imread(str(f)))) for f in london_neutral[:20])
    assert found >= 19
    with pytest.raises(ModelError) as e:
        FaceDetector("yunet", tmp_path / "nope.onnx")
    assert "--detector-model" in str(e.value)


def test_yunet_on_onnxruntime_matches_opencv_facedetectoryn(london_neutral, yunet_model, shared, monkeypatch):
    """The default engine (ONNX Runtime + FaceDetectorYN's decoding) finds the same faces as OpenCV's own
    FaceDetectorYN: same count, boxes and landmarks within 0.05 px, scores within 1e-4, on real photos
    (portraits, several faces, composites) and on frames that need padding to a multiple of 32."""
    photos = list(london_neutral[:8]) + sorted((shared / "data" / "interfaces_cc0" / "img_500").glob("*"))[:8]
    photos += sorted((shared / "data" / "ciplab_real_fake_160" / "full_160" / "fake").glob("*"))[:4]
    ort_det, cv_det = FaceDetector("yunet", yunet_model), FaceDetector("yunet", yunet_model, engine="opencv")
    assert ort_det.engine == "onnxruntime" and cv_det.engine == "opencv"
    n = 0
    for f in photos:
        img = cv2.imread(str(f))
        for im in (img, cv2.resize(img, (img.shape[1] * 3 // 4 + 5, img.shape[0] * 3 // 4 + 3))):  # odd sizes: padded
            a, b = ort_det.detect(im), cv_det.detect(im)
            assert len(a) == len(b), f
            for x, y in zip(a, b):
                assert np.abs(np.subtract(x.box, y.box)).max() < 0.05 and abs(x.score - y.score) < 1e-4
                assert np.abs(x.landmarks - y.landmarks).max() < 0.05
            n += len(a)
    assert n >= len(photos)  # faces were found, so the comparison compared something
    assert ort_det.detect(np.zeros((300, 400, 3), np.uint8)) == []  # no face: no rows, as OpenCV
    monkeypatch.setenv("FFD_YUNET_ENGINE", "opencv")
    assert FaceDetector("yunet", yunet_model).engine == "opencv"
    monkeypatch.setenv("FFD_YUNET_ENGINE", "tensorflow")
    with pytest.raises(ConfigError, match="FFD_YUNET_ENGINE"):
        FaceDetector("yunet", yunet_model)
    with pytest.raises(ConfigError, match="engine"):
        FaceDetector("yunet", yunet_model, engine="tflite")


def test_preprocess_same_tensor_for_same_crop(london_neutral, yunet_model):
    spec = PreprocessSpec()
    img = cv2.imread(str(london_neutral[0]))
    d = FaceDetector.from_spec(spec, yunet_model).detect(img)[0]
    a = preprocess([crop_face(img, d, spec)[0]], spec)
    b = preprocess([crop_face(img.copy(), d, spec)[0]], spec)
    assert a.shape == (1, 3, spec.size, spec.size) and np.array_equal(a, b)


def test_cli_help_and_one_line_errors():
    r = subprocess.run([sys.executable, "-m", "ffd", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "Usage" in r.stdout
