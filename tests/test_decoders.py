"""Decoding back-ends (edge.decoders, issue 16): which one is chosen and why, PyAV and OpenCV giving exactly the
frames, indices and timestamps asked for on long-GOP H.264 (uniform, every-k, keyframes), keyframe-only decoding,
the fallback to OpenCV where PyAV does not import (a real subprocess with ``av`` blocked, not a mock), and the
screening prefetcher that decodes the next files while this one's faces are scored. GPU decoders (GStreamer
nvv4l2decoder, PyNvVideoCodec) are tested where they exist and skip here with the reason."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from media import have_encoder, write_archive_video, write_corrupt_files

from edge.decoders import (gstreamer_pipeline, gstreamer_unusable_reason, keyframe_times, nvdec_unusable_reason,
                           select_decoder)
from edge.errors import BackendUnavailableError, ConfigError, InputError
from edge.media import VideoReader, iter_video_frames, uniform_indices

ROOT = Path(__file__).resolve().parents[1]
FPS, N, KEYINT = 25, 300, 100  # 12 s at 25 fps, a keyframe every 100 frames (0, 100, 200), B-frames

needs_x264 = pytest.mark.skipif(not have_encoder("libx264"),
                                reason="PyAV with libx264 not installed (pip install 'ffd-edge[av]')")


@pytest.fixture(scope="module")
def gop_clip(tmp_path_factory, london_neutral):
    if not have_encoder("libx264"):
        pytest.skip("PyAV with libx264 not installed (pip install 'ffd-edge[av]')")
    return write_archive_video(tmp_path_factory.mktemp("gop") / "clip.mp4", london_neutral[:3], n_frames=N,
                               fps=FPS, size=(160, 120), keyint=KEYINT)


@pytest.fixture(scope="module")
def reference(gop_clip):
    """Every frame of the clip, decoded in order by OpenCV (the reference both back-ends must match)."""
    return {i: f for i, _, f in iter_video_frames(gop_clip, decoder="opencv")}


# --- selection ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["pyav", "opencv"])
def test_env_var_chooses_the_decoder(monkeypatch, gop_clip, name):
    monkeypatch.setenv("FFD_DECODER", name.upper())  # case does not matter
    assert select_decoder() == (name, "chosen by FFD_DECODER")
    with VideoReader(gop_clip) as r:
        assert r.decoder == name and type(r._cap).__name__ == ("PyAVCapture" if name == "pyav" else "VideoCapture")
    # --decoder (the argument) wins over the variable
    other = "opencv" if name == "pyav" else "pyav"
    assert select_decoder(other) == (other, "chosen by --decoder")


def test_auto_prefers_pyav_here(monkeypatch):
    monkeypatch.delenv("FFD_DECODER", raising=False)
    name, why = select_decoder()
    assert name == "pyav" and "PyAV" in why and why.startswith("auto")


def test_unknown_decoder_is_one_config_error(monkeypatch):
    monkeypatch.setenv("FFD_DECODER", "ffmpeg7")
    with pytest.raises(ConfigError, match="FFD_DECODER must be one of auto, pyav, opencv"):
        select_decoder()
    with pytest.raises(ConfigError, match="--decoder must be one of"):
        select_decoder("vlc")


@pytest.mark.skipif(nvdec_unusable_reason() is None, reason="PyNvVideoCodec and a GPU are here")
def test_nvdec_asked_for_where_it_is_not_says_why(monkeypatch):
    monkeypatch.setenv("FFD_DECODER", "nvdec")
    with pytest.raises(BackendUnavailableError, match="nvdec is not usable here") as e:
        select_decoder()
    assert "PyNvVideoCodec" in e.value.message or "GPU" in e.value.message


@pytest.mark.skipif(gstreamer_unusable_reason() is None, reason="GStreamer with nvv4l2decoder is here")
def test_gstreamer_asked_for_where_it_is_not_says_why():
    with pytest.raises(BackendUnavailableError, match="gstreamer is not usable here"):
        select_decoder("gstreamer")


def test_gstreamer_pipeline_follows_container_and_codec(tmp_path):
    p = gstreamer_pipeline(tmp_path / 'a "b".mp4', "h264")
    assert "qtdemux" in p and "h264parse ! nvv4l2decoder" in p and "format=BGR ! appsink" in p
    assert '\\"b\\"' in p  # the quote in the name is escaped, not the end of the location
    assert "matroskademux" in gstreamer_pipeline(tmp_path / "a.mkv", "hevc") and "h265parse" in \
        gstreamer_pipeline(tmp_path / "a.mkv", "hevc")
    assert gstreamer_pipeline(tmp_path / "a.flv", "h264") is None
    assert gstreamer_pipeline(tmp_path / "a.mp4", "prores") is None


def test_ffd_cli_decoder_option(tmp_path, gop_clip):
    """--decoder is checked before anything runs: an unknown one is one error line and exit 3."""
    run = subprocess.run([sys.executable, "-m", "ffd", "screen", str(gop_clip), "-m", str(tmp_path / "x.onnx"),
                          "--decoder", "vlc", "--db", str(tmp_path / "s.sqlite")],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 3, run.stderr
    assert "--decoder must be one of" in run.stderr and "Traceback" not in run.stderr


BLOCK_AV = textwrap.dedent("""
    import sys
    class BlockAV:  # PyAV is not installed, as far as this interpreter can tell
        def find_spec(self, name, path=None, target=None):
            if name == "av" or name.startswith("av."):
                raise ImportError("No module named 'av' (blocked by the test)")
            return None
    sys.meta_path.insert(0, BlockAV())
""")


def test_without_pyav_opencv_reads_and_keyframes_say_what_is_missing(gop_clip):
    script = BLOCK_AV + textwrap.dedent(f"""
        import json, os
        from edge.decoders import select_decoder
        from edge.errors import MissingDependencyError
        from edge.media import VideoReader
        out = {{"auto": select_decoder()}}
        with VideoReader({str(gop_clip)!r}) as r:
            out["decoder"] = r.decoder
            out["uniform"] = [i for i, _, _ in r.frames(n_frames=4)]
        with VideoReader({str(gop_clip)!r}) as r:
            try:
                list(r.frames(keyframes=True))
            except MissingDependencyError as e:
                out["keyframes"] = [e.message, e.fix]
        os.environ["FFD_DECODER"] = "pyav"
        try:
            select_decoder()
        except MissingDependencyError as e:
            out["pyav"] = [e.message, e.fix]
        print(json.dumps(out))
    """)
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env={**__import__("os").environ, "FFD_DECODER": ""})
    assert run.returncode == 0, run.stderr[-2000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["auto"][0] == "opencv" and "PyAV is not installed" in out["auto"][1]
    assert out["decoder"] == "opencv" and out["uniform"] == uniform_indices(N, 4)
    assert "'av'" in out["keyframes"][0] and "keyframes" in out["keyframes"][0]
    assert "ffd-edge[av]" in out["keyframes"][1]
    assert "'av'" in out["pyav"][0] and "ffd-edge[av]" in out["pyav"][1]


# --- exact samples on long-GOP H.264, both back-ends ------------------------------------------------------
def _check(got, want_idx, reference, fps=FPS):
    idx = [i for i, _, _ in got]
    assert idx == want_idx
    assert [t for _, t, _ in got] == pytest.approx([i / fps for i in idx], abs=1e-9)  # mp4: 1/12800 s ticks
    for i, _, f in got:
        assert np.array_equal(f, reference[i]), f"frame {i} is not the in-order decode's frame {i}"


@pytest.mark.parametrize("strategy", ["seek", "sequential", "auto"])
def test_uniform_samples_exact(decoder, gop_clip, reference, strategy):
    # the clip moves: neighbouring frames differ, so a sample one frame off would be seen
    assert all(not np.array_equal(reference[i], reference[i + 1]) for i in range(N - 1))
    with VideoReader(gop_clip) as r:
        assert r.decoder == decoder
        got = list(r.frames(n_frames=9, strategy=strategy))
    _check(got, uniform_indices(N, 9), reference)


def test_every_k_exact(decoder, gop_clip, reference):
    with VideoReader(gop_clip) as r:
        got = list(r.frames(every=37))
    _check(got, list(range(0, N, 37)), reference)


def test_keyframes_exact(decoder, gop_clip, reference):
    assert keyframe_times(gop_clip) == [(0, 0.0), (100, 4.0), (200, 8.0)]
    with VideoReader(gop_clip) as r:
        got = list(r.frames(keyframes=True))
        assert r.strategy == "keyframes"
    _check(got, [0, 100, 200], reference)
    with VideoReader(gop_clip) as r:  # N of them, spread uniformly over the keyframes
        got = list(r.frames(keyframes=True, n_frames=2))
    _check(got, [0, 200], reference)
    with VideoReader(gop_clip) as r, pytest.raises(ConfigError):
        list(r.frames(keyframes=True, every=3))


@needs_x264
def test_pyav_keyframes_decode_only_keyframes(gop_clip):
    """skip_frame NONKEY: the decoder returns keyframes and nothing else (each flagged key_frame)."""
    from edge.decoders import PyAVCapture

    cap = PyAVCapture(gop_clip)
    try:
        out = list(cap.keyframes())
    finally:
        cap.release()
    assert [round(t, 6) for t, _, _ in out] == [0.0, 4.0, 8.0]


def test_keyframes_of_a_stream_with_one_keyframe(decoder, tmp_path, london_neutral):
    """No keyframe after the first for the whole clip: keyframe sampling gives exactly that one frame."""
    if not have_encoder("libx264"):
        pytest.skip("PyAV with libx264 not installed")
    clip = write_archive_video(tmp_path / "one_key.mp4", london_neutral[:2], n_frames=120, fps=FPS, size=(160, 120),
                               keyint=1000)
    got = list(iter_video_frames(clip, keyframes=True))
    assert [(i, t) for i, t, _ in got] == [(0, 0.0)]


def test_keyframes_of_a_truncated_container(decoder, tmp_path):
    """A truncated MJPG AVI (every frame a keyframe) claims 20 frames: the keyframes that are there, exactly."""
    bad = write_corrupt_files(tmp_path)["truncated_avi"]
    got = list(iter_video_frames(bad, keyframes=True))
    idx = [i for i, _, _ in got]
    assert idx == list(range(len(idx))) and 0 < len(idx) < 20
    assert [t for _, t, _ in got] == pytest.approx([i / 10 for i in idx])


def test_keyframes_of_a_non_video_is_an_input_error(decoder, tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("not a video\n" * 40)
    with pytest.raises(InputError) as e:
        list(iter_video_frames(p, keyframes=True))
    assert e.value.path == str(p)


def test_vfr_timestamps_are_the_pts_with_pyav(tmp_path, london_neutral):
    """Irregular frame durations (stts rewritten): PyAV's timestamps are each frame's pts; both back-ends give
    the same indices (OpenCV's timestamps stay index / fps)."""
    sys.path.insert(0, str(ROOT / "tests" / "reliability"))
    from corpus import set_mp4_frame_durations
    from media import write_face_video

    clip = write_face_video(tmp_path / "vfr.mp4", london_neutral[:2], n_frames=12, fps=10, size=(160, 120))
    durations = set_mp4_frame_durations(clip, (1, 1, 3, 0.5, 2, 1))
    import av

    with av.open(str(clip)) as c:
        tb = float(c.streams.video[0].time_base)
    starts = np.concatenate([[0], np.cumsum(durations)[:-1]]) * tb
    got = {d: list(iter_video_frames(clip, decoder=d)) for d in ("pyav", "opencv")}
    assert [i for i, _, _ in got["pyav"]] == [i for i, _, _ in got["opencv"]] == list(range(12))
    assert [t for _, t, _ in got["pyav"]] == pytest.approx(list(starts), abs=1e-6)
    assert len(set(np.round(np.diff(starts), 4))) > 1  # really variable


# --- the screening prefetcher -----------------------------------------------------------------------------
def test_prefetcher_gives_each_files_frames_and_errors_in_order(gop_clip, tmp_path):
    from edge.screen import ScreenSettings
    from edge.screen.screen import Prefetcher, _iter_frames, FileSample

    bad = write_corrupt_files(tmp_path)
    files = [(gop_clip, "video"), (bad["text_mp4"], "video"), (gop_clip, "video"), (tmp_path / "x.txt", "other")]
    settings = ScreenSettings(n_frames=5)
    pre = Prefetcher(files, settings, depth=2)
    try:
        seen = []
        for (p, _), (s, frames) in zip(files, pre.files()):
            assert s.path == str(p)
            try:
                seen.append([i for i, _, _ in frames])
            except InputError as e:
                seen.append(type(e).__name__)
    finally:
        pre.close()
    direct = [i for i, _, _ in _iter_frames(str(gop_clip), "video", settings, FileSample(str(gop_clip), "video"))]
    assert seen == [direct, "InputError", direct, "InputError"] and direct == uniform_indices(N, 5)


def test_prefetcher_memory_is_bounded_and_waiting_is_not_decode_time(gop_clip, monkeypatch):
    """The decode thread stops at ``depth`` frames ahead; the time it waits for the consumer does not count
    against the file's decode timeout (a slow classifier is not a slow file)."""
    from edge.screen import ScreenSettings
    from edge.screen.screen import Prefetcher

    monkeypatch.setenv("FFD_DECODE_TIMEOUT_S", "1.5")
    # every 10th frame: streamed as decoded (the deadline is checked at every frame of the pass)
    pre = Prefetcher([(gop_clip, "video")], ScreenSettings(every_s=0.4), depth=2)
    try:
        time.sleep(2.5)  # longer than the timeout: the thread is blocked on a full queue meanwhile
        assert pre._q.qsize() <= 2 and pre._thread.is_alive()
        files = pre.files()
        s, frames = next(files)
        got = [i for i, _, _ in frames]
    finally:
        pre.close()
    assert got == list(range(0, N, 10))


def test_prefetcher_skips_what_the_consumer_leaves(gop_clip):
    from edge.screen import ScreenSettings
    from edge.screen.screen import Prefetcher

    files = [(gop_clip, "video"), (gop_clip, "video")]
    pre = Prefetcher(files, ScreenSettings(n_frames=6), depth=1)
    try:
        out = []
        for s, frames in pre.files():
            out.append(next(iter(frames))[0])  # one frame, then move on (as after a detection error)
    finally:
        pre.close()
    assert out == [uniform_indices(N, 6)[0]] * 2


def test_settings_key_unchanged_for_uniform_sampling():
    from edge.screen import ScreenSettings

    assert json.loads(ScreenSettings().key()) == {"n_frames": 32, "every_s": None, "aggregation": "mean",
                                                  "max_faces": 4}  # resume keys of existing databases hold
    k = json.loads(ScreenSettings(n_frames=None, sample="keyframes").key())
    assert k["sample"] == "keyframes" and k["n_frames"] is None
    with pytest.raises(ConfigError, match="--every-s"):
        ScreenSettings(every_s=0.5, sample="keyframes")
    with pytest.raises(ConfigError, match="--sample"):
        ScreenSettings(sample="random")


def test_screen_keyframes_records_exact_indices(decoder, gop_clip, tiny_onnx, yunet_model, tmp_path):
    from edge.screen import ResultsDB, ScreenSettings, screen_archive

    db = tmp_path / "s.sqlite"
    s = screen_archive([gop_clip], tiny_onnx, db, settings=ScreenSettings(n_frames=None, sample="keyframes"),
                       progress=False)
    assert s["screened"] == 1
    with ResultsDB(db, readonly=True) as r:
        (row,) = list(r.rows())
    ev = json.loads(row["evidence"])
    assert [(e["frame"], e["t"]) for e in ev] == [(0, 0.0), (100, 4.0), (200, 8.0)] and row["n_frames"] == 3


# --- decode threads -------------------------------------------------------------------------------------
def _threads_of(cap) -> int:
    import cv2

    if type(cap).__name__ == "PyAVCapture":
        return cap._s.codec_context.thread_count
    return int(cap.get(cv2.CAP_PROP_N_THREADS))


def test_decode_threads_reach_both_back_ends_and_samples_stay_exact(decoder, gop_clip, reference, monkeypatch):
    from edge import media

    monkeypatch.delenv("FFD_DECODE_THREADS", raising=False)
    try:
        media.set_decode_threads(1)  # what a screening worker on 2 cores with -j 2 does
        with VideoReader(gop_clip) as r:
            assert _threads_of(r._cap) == 1
            got = list(r.frames(n_frames=9, strategy="auto"))
        _check(got, uniform_indices(N, 9), reference)
        monkeypatch.setenv("FFD_DECODE_THREADS", "2")  # the variable wins over the process's share
        with VideoReader(gop_clip) as r:
            assert _threads_of(r._cap) == 2
    finally:
        media.set_decode_threads(None)
    assert media.decode_threads() == 2
    monkeypatch.delenv("FFD_DECODE_THREADS")
    assert media.decode_threads() == 0  # FFmpeg's automatic count, as before


@pytest.mark.parametrize("bad", ["-1", "abc", "1.5", "65"])
def test_bad_decode_threads_variable_is_one_config_error(monkeypatch, bad):
    from edge import media

    monkeypatch.setenv("FFD_DECODE_THREADS", bad)
    with pytest.raises(ConfigError, match="FFD_DECODE_THREADS"):
        media.decode_threads()
    with pytest.raises(ConfigError, match="decode_threads"):
        media.set_decode_threads(-2)


def test_screening_workers_share_the_cores(monkeypatch):
    from edge.screen.screen import worker_threads
    from edge.tools.envinfo import collect_env

    assert worker_threads(0) == (None, None) and worker_threads(1) == (None, None)  # in-process: defaults
    assert worker_threads(2, cpus=2) == (1, 1)  # the CLI's -j 2 on 2 cores: one FFmpeg thread per worker
    assert worker_threads(2, cpus=16) == (1, 8) and worker_threads(4, cpus=2) == (1, 1)
    monkeypatch.delenv("FFD_DECODE_THREADS", raising=False)
    assert collect_env()["decode_threads"].startswith("automatic (FFmpeg's count; ffd screen -j 2 workers: ")
    monkeypatch.setenv("FFD_DECODE_THREADS", "2")
    assert collect_env()["decode_threads"] == "2 (chosen by FFD_DECODE_THREADS)"
    monkeypatch.setenv("FFD_DECODE_THREADS", "many")  # ffd env still prints, the line says why
    assert collect_env()["decode_threads"].startswith("unusable: FFD_DECODE_THREADS must be an integer")


def test_screening_worker_processes_decode_with_their_share(tiny_onnx, yunet_model, monkeypatch):
    """A worker process started as screen_archive starts them (spawned, its initializer) opens every decoder
    with its share; FFD_DECODE_THREADS, inherited, still wins."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from edge.media import decode_threads
    from edge.screen import ScreenSettings
    from edge.screen.screen import _pool_worker_init, worker_threads

    monkeypatch.delenv("FFD_DECODE_THREADS", raising=False)
    init_args = (str(tiny_onnx), "ort", str(yunet_model), {}, ScreenSettings(), *worker_threads(2, cpus=2))
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_pool_worker_init,
                             initargs=init_args) as pool:
        assert pool.submit(decode_threads).result(timeout=120) == 1
    assert decode_threads() == 0  # this process is untouched
    monkeypatch.setenv("FFD_DECODE_THREADS", "3")
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_pool_worker_init,
                             initargs=init_args) as pool:
        assert pool.submit(decode_threads).result(timeout=120) == 3


# --- hardware decoders: where they exist ------------------------------------------------------------------
@pytest.mark.gpu
@pytest.mark.skipif(importlib.util.find_spec("PyNvVideoCodec") is None,
                    reason="PyNvVideoCodec not installed (pip install 'ffd-edge[nvdec]')")
def test_nvdec_matches_software_indices(gop_clip, reference):
    with VideoReader(gop_clip, decoder="nvdec") as r:
        got = list(r.frames(n_frames=6))
        assert r.decoder == "nvdec"
    assert [i for i, _, _ in got] == uniform_indices(N, 6)
    for i, _, f in got:  # another YUV->RGB conversion: close, not bit-equal
        assert f.shape == reference[i].shape and np.abs(f.astype(int) - reference[i]).mean() < 4


@pytest.mark.gpu
@pytest.mark.skipif(gstreamer_unusable_reason() is not None,
                    reason=f"GStreamer nvv4l2decoder not usable: {gstreamer_unusable_reason()}")
def test_gstreamer_nvv4l2decoder_matches_software_indices(gop_clip, reference):
    with VideoReader(gop_clip, decoder="gstreamer") as r:
        got = list(r.frames(n_frames=6))
        assert r.decoder == "gstreamer" and r.strategy == "sequential"
    assert [i for i, _, _ in got] == uniform_indices(N, 6)
    for i, _, f in got:
        assert f.shape == reference[i].shape and np.abs(f.astype(int) - reference[i]).mean() < 4



def test_ffd_env_names_the_decoder_and_why(monkeypatch):
    from edge.tools.envinfo import collect_env, format_env

    monkeypatch.delenv("FFD_DECODER", raising=False)
    env = collect_env()
    assert env["video_decoder"].startswith("pyav (auto: PyAV") and env["packages"]["av"]
    monkeypatch.setenv("FFD_DECODER", "opencv")
    assert collect_env()["video_decoder"] == "opencv (chosen by FFD_DECODER)"
    monkeypatch.setenv("FFD_DECODER", "nvdec")
    if nvdec_unusable_reason() is not None:  # asked for where it is not: the line says why, env does not fail
        assert "video_decoder: unusable: FFD_DECODER nvdec is not usable here" in format_env(collect_env())
