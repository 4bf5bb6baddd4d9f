"""Defects of the run path (issue 16, item 5): the model card is read without a runner, and one URI classifier
(``edge.sources.parse_uri``) decides what a source is for ``open_source`` and ``ffd detect`` alike."""
from __future__ import annotations

import hashlib
import json
import importlib.util
import shutil

import pytest
from media import write_face_video

from edge.detect import classify_source, detect_sources, source_kind
from edge.errors import BackendUnavailableError, ConfigError, MissingDependencyError, ModelError
from edge.runtime import model_card
from edge.runtime.engine_cache import BatchProfile, BuildOptions, EngineEnv, key_inputs, make_sidecar, write_sidecar
from edge.sources import parse_uri
from edge.spec import ModelCard
from tests.conftest import make_tiny_onnx

HAS_TRT = importlib.util.find_spec("tensorrt") is not None


def _engine_with_sidecar(tmp_path, card: ModelCard):
    """An engine file and its sidecar as `ffd build-engine` writes them (the bytes are not a real engine:
    nothing here may deserialize it)."""
    eng = tmp_path / "m.engine"
    data = b"not-deserialized-engine-bytes"
    eng.write_bytes(data)
    inputs = key_inputs(onnx_sha256="ab" * 32, profile=BatchProfile(1, 8, 32), options=BuildOptions(),
                        env=EngineEnv("10.3.0", "Orin", "8.7"), input_name="input")
    write_sidecar(eng, make_sidecar(inputs, card, hashlib.sha256(data).hexdigest(), None))
    return eng


# --- the card without a runner -------------------------------------------------------------------------
def test_model_card_reads_onnx_and_engine_without_a_runner(tmp_path):
    onnx_path = make_tiny_onnx(tmp_path / "m.onnx", size=32, threshold=0.4)
    card = model_card(onnx_path)
    assert card.name == "tiny_mean" and card.threshold == 0.4 and card.spec.size == 32
    eng = _engine_with_sidecar(tmp_path, ModelCard("engine_card", threshold=0.3))
    assert model_card(eng).name == "engine_card"  # from the sidecar: TensorRT is never imported
    with pytest.raises(ModelError, match="ffd export"):
        model_card(make_tiny_onnx(tmp_path / "bare.onnx", card=False))
    with pytest.raises(ModelError, match="not found"):
        model_card(tmp_path / "missing.onnx")
    with pytest.raises(BackendUnavailableError):
        model_card(eng, "ort")
    with pytest.raises(ConfigError):
        model_card(onnx_path, "tensorflow")
    with pytest.raises(ConfigError, match="no backend takes"):
        model_card(onnx_path, "auto", intra_op_thread=2)
    # an input size that is not the card's: refused as the runner would, before any worker opens one
    wrong = make_tiny_onnx(tmp_path / "wrong.onnx", size=32,
                           card=ModelCard("w", spec=ModelCard("x").spec.replace(size=64)))
    with pytest.raises(ModelError, match="spec says"):
        model_card(wrong)


@pytest.mark.skipif(HAS_TRT, reason="checks the refusal where TensorRT is not installed")
def test_model_card_refuses_trt_without_tensorrt(tmp_path):
    with pytest.raises(MissingDependencyError):
        model_card(make_tiny_onnx(tmp_path / "m.onnx"), "trt")


@pytest.mark.skipif(HAS_TRT, reason="shows that no runner is opened where TensorRT is not installed")
def test_screen_reads_the_card_without_opening_a_runner(tmp_path, yunet_model):
    """With nothing to screen, ``screen_archive`` needs the card and nothing else: a TensorRT engine's card
    comes from its sidecar on a host without TensorRT (before, a runner was opened only to read it)."""
    from edge.screen import screen_archive

    eng = _engine_with_sidecar(tmp_path, ModelCard("engine_card", threshold=0.3))
    empty = tmp_path / "archive"
    empty.mkdir()
    s = screen_archive([empty], eng, tmp_path / "s.sqlite", detector_model=yunet_model, progress=False)
    assert s["files"] == 0 and s["screened"] == 0 and s["model_id"].startswith("engine_card")


# --- one URI classifier --------------------------------------------------------------------------------
def test_file_uris_are_files_not_cameras(tmp_path):
    vid, img = tmp_path / "x.mp4", tmp_path / "a.jpg"
    assert source_kind(f"file://{vid}") == "video" and classify_source(f"file://{vid}") == ("video", str(vid))
    assert classify_source(f"file://{img}") == ("images", str(img))
    assert source_kind(f"file://{tmp_path}") == "images" and parse_uri(f"file://{tmp_path}").kind == "folder"
    for live in ("rtsp://cam/1", "/dev/video0", "0", "csi://0", "videotestsrc ! appsink"):
        assert source_kind(live) == "camera" and parse_uri(live).live
    assert source_kind(str(vid)) == "video" and source_kind(str(img)) == "images"


def test_detect_reads_a_file_uri_image_as_an_image(tmp_path, london_neutral, yunet_model):
    """``ffd detect file:///…/face.jpg`` gives image records (``file``, ``face``), as the plain path does."""
    img = tmp_path / "face.jpg"
    shutil.copy(london_neutral[0], img)
    model = make_tiny_onnx(tmp_path / "m.onnx")
    out_uri, out_path = tmp_path / "uri.jsonl", tmp_path / "path.jsonl"
    a = detect_sources([f"file://{img}"], model, out_uri, detector_model=yunet_model, threads=1)
    b = detect_sources([str(img)], model, out_path, detector_model=yunet_model, threads=1)
    assert a.faces == b.faces == 1
    assert out_uri.read_text() == out_path.read_text() and '"file": "' + str(img) in out_uri.read_text()


def test_detect_plays_a_file_uri_video(tmp_path, london_neutral, yunet_model):
    vid = write_face_video(tmp_path / "clip.mp4", london_neutral[:2], n_frames=6, fps=10, size=(320, 240))
    model = make_tiny_onnx(tmp_path / "m.onnx")
    out = tmp_path / "v.jsonl"
    detect_sources([f"file://{vid}"], model, out, detector_model=yunet_model, threads=1)
    lines = out.read_text().splitlines()
    assert lines and all('"source": "' + str(vid) in ln and '"frame": ' in ln for ln in lines)


def test_detect_folder_plays_its_videos_after_its_images(tmp_path, london_neutral, yunet_model):
    """``ffd detect folder/`` scores the folder's images, then plays its videos (what ``open_source(folder)``
    does), a broken video in it becoming an error record while the others still play; no video is skipped."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    shutil.copy(london_neutral[0], d / "a.jpg")
    vid = write_face_video(d / "sub" / "clip.mp4", london_neutral[1:3], n_frames=6, fps=10, size=(320, 240))
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)  # a container header, no video
    model = make_tiny_onnx(tmp_path / "m.onnx")
    out = tmp_path / "f.jsonl"
    summary = detect_sources([str(d)], model, out, detector_model=yunet_model, threads=1)
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [r["file"] for r in recs if "file" in r and "error" not in r] == [str(d / "a.jpg")]
    assert not [r for r in recs if "skipped" in r] and summary.skipped == 0
    frames = [r for r in recs if r.get("source") == str(vid)]
    assert frames and {r["frame"] for r in frames} <= set(range(6)) and summary.faces == 1 + len(frames)
    bad = [r for r in recs if r.get("file") == str(d / "broken.mp4")]
    assert len(bad) == 1 and bad[0]["error"] and summary.errors == 1
    assert recs.index(bad[0]) > 0  # after the image
