"""The pipelined video loop (edge.stream.pipeline), IoU tracking (edge.stream.tracking) and `ffd detect` on
videos (edge.detect)."""
from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from edge.stream.tracking import IouTracker, iou_matrix
from media import write_face_video


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory, london_neutral, yunet_model):
    d = tmp_path_factory.mktemp("vid")
    return write_face_video(d / "face.mp4", london_neutral[:3], n_frames=24, fps=12, size=(320, 240))


def test_iou_and_tracker_keep_ids_and_smooth():
    assert iou_matrix([(0, 0, 10, 10)], [(0, 0, 10, 10), (5, 0, 10, 10), (50, 50, 5, 5)]).round(3).tolist() == \
        [[1.0, 0.333, 0.0]]
    tr = IouTracker(iou_threshold=0.3, max_age=2, alpha=0.5)
    a = tr.update(0, [(0, 0, 10, 10), (100, 100, 10, 10)], [1.0, 0.0])
    b = tr.update(1, [(101, 100, 10, 10), (1, 0, 10, 10)], [1.0, 0.0])  # order swapped, boxes moved
    assert [t for t, _ in a] == [1, 2] and [t for t, _ in b] == [2, 1]
    assert b[0][1] == pytest.approx(0.5) and b[1][1] == pytest.approx(0.5)  # EMA of 0->1 and 1->0
    c = tr.update(5, [(0, 0, 10, 10)], [0.2])  # both tracks expired (max_age=2): a new id
    assert c[0][0] == 3 and c[0][1] == pytest.approx(0.2)


def test_bad_smoothing_weight_is_a_user_error():
    from edge.errors import ConfigError

    for alpha in (0.0, 1.5):
        with pytest.raises(ConfigError, match="smoothing weight"):
            IouTracker(alpha=alpha)


def test_detect_file_every_frame_tracks_and_outputs(face_clip, tiny_onnx, tmp_path):
    import cv2

    from edge.detect import run_detect

    out_jsonl, out_vid = tmp_path / "d.jsonl", tmp_path / "annotated.avi"
    st = run_detect(str(face_clip), tiny_onnx, jsonl=out_jsonl, video_out=out_vid, batch_size=4)
    assert st.end == "eos" and st.error is None
    assert st.frames_read == st.frames_processed == 24 and st.dropped == 0
    recs = [json.loads(x) for x in out_jsonl.read_text().splitlines()]
    assert len(recs) == st.faces >= 20
    assert {"source", "time", "frame", "track", "box", "score", "raw_score", "label"} <= set(recs[0])
    assert [r["frame"] for r in recs] == sorted(r["frame"] for r in recs)  # output keeps frame order
    assert len({r["track"] for r in recs}) <= 2  # one drifting face -> (almost always) one track
    assert recs[5]["time"] == pytest.approx(recs[5]["frame"] / 12, abs=1e-3)
    assert all(r["label"] in ("real", "fake") for r in recs)
    # the smoothed score is an EMA of raw scores: it differs from raw once the face image changes
    assert any(abs(r["score"] - r["raw_score"]) > 1e-4 for r in recs)
    summ = st.stage_summary()
    for s in ("decode", "detect", "preprocess", "infer", "output"):
        assert summ[s]["n"] > 0
    assert st.fps > 0 and st.limiting_stage() in summ and "fps" in st.summary()
    cap = cv2.VideoCapture(str(out_vid))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 24 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 320
    cap.release()


def test_live_source_drops_frames_instead_of_queueing(face_clip, tiny_onnx):
    """A file read as a live camera at 2000 fps: decode outruns detection; frames are dropped, queues stay bounded."""
    from edge.forgery import ForgeryDetector
    from edge.stream import Pipeline
    from edge.stream.sources import open_source

    with ForgeryDetector(tiny_onnx) as fd, open_source(str(face_clip)) as src:
        pipe = Pipeline(src, fd, live=True, pace_fps=2000, queue_size=1, batch_size=2)
        seen_q = []
        out = []
        for fr, faces in pipe:
            seen_q.append(max(pipe._q_dec.qsize(), pipe._q_det.qsize(), pipe._q_out.qsize()))
            out.append(fr.index)
    st = pipe.stats
    assert st.frames_read == 24 and st.dropped > 0
    assert st.frames_processed + st.dropped == 24 and len(out) == st.frames_processed
    assert max(seen_q) <= 1 and out == sorted(out)


def test_embeddable_pipeline_process_api(face_clip, tiny_onnx):
    """ForgeryDetector.process on frames from a host loop (what a GStreamer appsink callback would do)."""
    from edge.forgery import ForgeryDetector
    from edge.stream.sources import open_source

    with ForgeryDetector(tiny_onnx) as fd, open_source(str(face_clip)) as src:
        frame = src.read().image
        res = fd.process(frame)
    assert len(res) == 1 and 0.0 <= res[0].score <= 1.0 and res[0].label in ("real", "fake")


def test_pipeline_uses_the_detector_stages(face_clip, tiny_onnx):
    """The pipeline's raw scores and boxes are ForgeryDetector.process's (one crop, one normalising, one result)."""
    from edge.forgery import ForgeryDetector
    from edge.stream import Pipeline
    from edge.stream.sources import open_source

    with ForgeryDetector(tiny_onnx) as fd, open_source(str(face_clip)) as src:
        piped = [(fr.image, faces) for fr, faces in Pipeline(src, fd, max_frames=4)]
        direct = [fd.process(img) for img, _ in piped]
        empty = fd.prepare([])
        assert empty.shape == (0, 3, fd.spec.size, fd.spec.size) and fd.submit(empty).result().size == 0
    assert len(piped) == 4 and all(faces for _, faces in piped)
    for (_, faces), ref in zip(piped, direct):
        assert [f.box for f in faces] == [r.box for r in ref]
        assert [f.extra["raw_score"] for f in faces] == pytest.approx([r.score for r in ref], abs=1e-6)
        assert all(f.track_id is not None and "raw_score" in f.to_dict() for f in faces)


def test_detect_sources_opens_one_detector_for_all_sources(face_clip, tiny_onnx, tmp_path, london_neutral,
                                                           monkeypatch):
    """`ffd detect imgs/ a.mp4 a.mp4`: one ForgeryDetector (one runner, one face detector) serves every source;
    --det-size applies to the videos, images keep the default detector input."""
    import shutil

    from edge.detect import detect_sources
    from edge.forgery import DEFAULT_DET_MAX_SIDE, ForgeryDetector

    made, sides = [], []
    real_init, real_detect = ForgeryDetector.__init__, ForgeryDetector.detect_faces

    def counting_init(self, *a, **kw):
        made.append(self)
        real_init(self, *a, **kw)

    def recording_detect(self, frame):
        sides.append(self.detector.max_side)
        return real_detect(self, frame)
    monkeypatch.setattr(ForgeryDetector, "__init__", counting_init)
    monkeypatch.setattr(ForgeryDetector, "detect_faces", recording_detect)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    for f in london_neutral[:2]:
        shutil.copy(f, imgs / f.name)
    out = tmp_path / "all.jsonl"
    summary = detect_sources([str(imgs), str(face_clip), str(face_clip)], tiny_onnx, out, det_max_side=320)
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(made) == 1 and made[0].runner is None  # one detector, closed at the end
    assert sum("file" in r for r in recs) == 2 and sum("track" in r for r in recs) == summary.faces - 2 > 0
    assert sides[:2] == [DEFAULT_DET_MAX_SIDE] * 2 and set(sides[2:]) == {320}


def test_missing_source_is_a_clear_error(tiny_onnx, tmp_path):
    from edge.detect import run_detect
    from edge.stream.sources import SourceError

    with pytest.raises(SourceError):
        run_detect(str(tmp_path / "nope.mp4"), tiny_onnx)


def test_ffd_detect_cli_on_a_video(face_clip, tiny_onnx, tmp_path):
    from typer.testing import CliRunner

    from ffd.cli import app

    out = tmp_path / "o.jsonl"
    r = CliRunner().invoke(app, ["detect", str(face_clip), "--model", str(tiny_onnx), "-o", str(out),
                                 "--save-video", str(tmp_path / "ann.mp4")])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    assert recs and all("track" in x and "frame" in x for x in recs)
    assert "fps" in r.output and (tmp_path / "ann.mp4").stat().st_size > 0
    assert np.isfinite([x["score"] for x in recs]).all()


def test_ffd_bench_cli_writes_json_markdown_plot(face_clip, tiny_onnx, tmp_path):
    from typer.testing import CliRunner

    from ffd.cli import app

    out = tmp_path / "b"
    r = CliRunner().invoke(app, ["bench", str(tiny_onnx), "--batch-sizes", "1,4", "--threads", "1", "--threads", "2",
                                 "--iters", "5", "--video", str(face_clip), "--frames", "10", "--out", str(out),
                                 "--compare"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "bench.json").read_text())
    assert {(x["config"], x["batch"]) for x in res["classifier"]} == \
        {("tiny/ort/t1", 1), ("tiny/ort/t1", 4), ("tiny/ort/t2", 1), ("tiny/ort/t2", 4)}
    assert all(x["precision"] == "fp32" and x["latency_ms"]["p50"] > 0 for x in res["classifier"])
    assert [p["frames_processed"] for p in res["pipeline"]] == [10, 10]
    md = (out / "bench.md").read_text()
    assert "Side by side" in md and "| pipeline config |" in md
    assert (out / "bench.png").exists() or any("matplotlib" in n for n in res["notes"])


def test_stats_windows_are_bounded_and_detector_size_is_a_constructor_argument(tiny_onnx, yunet_model):
    from edge.forgery import ForgeryDetector
    from edge.stream.pipeline import STAGE_WINDOW, DetectStats

    st = DetectStats()
    for i in range(STAGE_WINDOW + 500):
        st.stage_ms["detect"].append(float(i))
    assert len(st.stage_ms["detect"]) == STAGE_WINDOW and st.stage_ms["detect"][0] == 500.0
    assert st.limiting_stage() == "detect"
    with ForgeryDetector(tiny_onnx, detector_model=yunet_model, det_max_side=320) as fd:
        assert fd.detector.max_side == 320


class ThreadedRunner:
    """A real ONNX Runtime runner made asynchronous the way TensorRT's is: ``infer_async`` returns at once
    and the batch runs on another thread (slowed, like a busy GPU, so frames queue up meanwhile)."""

    def __init__(self, runner, delay_s: float = 0.02):
        from concurrent.futures import ThreadPoolExecutor

        self.runner, self.card, self.delay_s = runner, runner.card, delay_s
        self.pool = ThreadPoolExecutor(1)
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0

    def _run(self, batch):
        time.sleep(self.delay_s)
        out = self.runner.infer(batch)
        with self.lock:
            self.in_flight -= 1
        return out

    def infer_async(self, batch):
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return self.pool.submit(self._run, batch)  # a Future: .result() waits

    def close(self):
        self.pool.shutdown()
        self.runner.close()


def test_classify_stage_overlaps_batches_when_the_runner_is_asynchronous(face_clip, tiny_onnx):
    """Double buffering in the pipeline: batch n+1 is submitted before batch n is collected, never more than
    two are in flight, and every score and the frame order are those of the plain synchronous run."""
    from edge.forgery import ForgeryDetector
    from edge.stream import Pipeline
    from edge.stream.sources import open_source

    def run(fd):
        with open_source(str(face_clip)) as src:
            return [(fr.index, [round(f.extra["raw_score"], 6) for f in faces])
                    for fr, faces in Pipeline(src, fd, batch_size=2, queue_size=8)]

    with ForgeryDetector(tiny_onnx) as fd:
        reference = run(fd)
        fd.runner = threaded = ThreadedRunner(fd.runner)
        overlapped = run(fd)
    assert overlapped == reference and [i for i, _ in reference] == list(range(24))
    assert threaded.max_in_flight == 2  # n+1 was submitted while n ran, and never a third
