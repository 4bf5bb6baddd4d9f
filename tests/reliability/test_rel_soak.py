"""Soak: thousands of frames through the detector and the `ffd detect` video pipeline on a looped
video; resident memory at the end stays within a small margin of the memory after warm-up."""
from __future__ import annotations

import os

import pytest

from harness import run_ffd, soak_detector, soak_pipeline
from media import write_face_video
from rel_fixtures import rel_model  # noqa: F401 - fixtures

FRAMES = int(os.environ.get("FFD_SOAK_FRAMES", "1200"))
WARMUP = 300
MARGIN_MB = 12.0  # a leak of one 320x240 frame per frame would be ~200 MB here


@pytest.fixture(scope="module")
def loop_video(tmp_path_factory, london_neutral, yunet_model):
    return write_face_video(tmp_path_factory.mktemp("soak") / "loop.mp4", london_neutral[:4], n_frames=100,
                            size=(320, 240))


def _report(name, r):
    print(f"\n{name}: RSS after {r['warmup']} frames {r['warm_mb']} MiB, after {r['frames']} frames "
          f"{r['end_mb']} MiB (drift {r['drift_mb']:+} MiB, max {r['max_mb']}), {r['fps']} fps, {r['faces']} faces")


def test_soak_forgery_detector_rss(loop_video, rel_model):
    r = soak_detector(loop_video, rel_model, frames=FRAMES, warmup=WARMUP, intra_op_threads=1)
    _report("ForgeryDetector", r)
    assert r["faces"] >= 0.9 * FRAMES and r["passes"] >= FRAMES // 100 - 1
    assert abs(r["drift_mb"]) < MARGIN_MB, r
    assert r["max_mb"] - r["warm_mb"] < 2 * MARGIN_MB, r


def test_soak_detect_pipeline_rss(loop_video, rel_model):
    r = soak_pipeline(loop_video, rel_model, frames=FRAMES, warmup=WARMUP, intra_op_threads=1)
    _report("ffd detect pipeline", r)
    assert r["frames"] == FRAMES and r["end"] == "max_frames"
    assert abs(r["drift_mb"]) < MARGIN_MB, r


@pytest.mark.gpu
def test_soak_tensorrt_runner_rss(loop_video, rel_model, tmp_path):
    pytest.importorskip("tensorrt")
    engine = tmp_path / "tiny.engine"
    run = run_ffd(["build-engine", rel_model, "-o", engine], timeout=600)
    assert run.rc == 0 and not run.problems(), run.stderr[-2000:]
    r = soak_detector(loop_video, engine, backend="trt", frames=FRAMES, warmup=WARMUP)
    _report("ForgeryDetector (TensorRT)", r)
    assert r["faces"] >= 0.9 * FRAMES
    assert abs(r["drift_mb"]) < MARGIN_MB, r
