"""Uniform sampling on clips made as real archives are (issue 16): long-GOP H.264 (keyint 250, B-frames)
and HEVC written through PyAV. Seeks and the sequential pass give the frames asked for, with their exact
indices and timestamps; ``auto`` reads a long-GOP clip in one pass. Skipped with the reason without PyAV."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from media import have_encoder, write_archive_video, write_corrupt_files

from edge.media import (ASSUMED_GOP, VideoReader, choose_strategy, iter_video_frames, keyframe_interval,
                        uniform_indices)

needs_x264 = pytest.mark.skipif(not have_encoder("libx264"),
                                reason="PyAV with libx264 not installed (pip install 'ffd-edge[av]')")

FPS, N_FRAMES = 25, 90  # 3.6 s at 320x240, keyint 250: one keyframe, B-frames


@pytest.fixture(scope="module")
def h264_clip(tmp_path_factory, london_neutral):
    if not have_encoder("libx264"):
        pytest.skip("PyAV with libx264 not installed (pip install 'ffd-edge[av]')")
    return write_archive_video(tmp_path_factory.mktemp("h264") / "clip.mp4", london_neutral[:3],
                               n_frames=N_FRAMES, fps=FPS, keyint=250)


@pytest.fixture(scope="module")
def hevc_clip(tmp_path_factory, london_neutral):
    if not have_encoder("libx265"):
        pytest.skip("PyAV with libx265 not installed (pip install 'ffd-edge[av]')")
    return write_archive_video(tmp_path_factory.mktemp("hevc") / "clip.mkv", london_neutral[:3],
                               n_frames=60, fps=30, codec="libx265", keyint=250)


def _sequential_decode(path) -> dict[int, np.ndarray]:
    return {i: f for i, _, f in iter_video_frames(path)}


def _check_samples(path, n, strategy, fps, tick=1e-3):
    seq = _sequential_decode(path)
    count = len(seq)
    # the clip moves: neighbouring frames differ, so a sample one frame off would be seen
    assert min(np.abs(seq[i].astype(int) - seq[i + 1]).mean() for i in range(count - 1)) > 0.5
    with VideoReader(path) as r:
        got = list(r.frames(n_frames=n, strategy=strategy))
        used = r.strategy
    idx = [i for i, _, _ in got]
    assert idx == uniform_indices(count, n)
    # the frame's pts (PyAV) or index / fps (OpenCV): equal within the container's clock tick (Matroska: 1 ms)
    assert [t for _, t, _ in got] == pytest.approx([i / fps for i in idx], abs=tick)
    for i, _, f in got:
        assert np.array_equal(f, seq[i]), f"frame {i} ({strategy}) is not the sequential decode's frame {i}"
    return used


@pytest.mark.parametrize("strategy", ["seek", "sequential", "auto"])
def test_long_gop_h264_samples_are_the_frames_asked_for(decoder, h264_clip, strategy):
    used = _check_samples(h264_clip, 8, strategy, FPS)
    assert used == ("sequential" if strategy == "auto" else strategy)  # one keyframe: one pass is cheaper


@pytest.mark.parametrize("strategy", ["seek", "sequential"])
def test_hevc_samples_are_the_frames_asked_for(decoder, hevc_clip, strategy):
    _check_samples(hevc_clip, 6, strategy, 30)


@needs_x264
def test_keyframe_interval_is_measured_from_packets(decoder, h264_clip, tmp_path, london_neutral):
    assert keyframe_interval(h264_clip) >= N_FRAMES  # one keyframe in the whole clip
    short = write_archive_video(tmp_path / "short_gop.mp4", london_neutral[:2], n_frames=40, keyint=10, bframes=0)
    assert keyframe_interval(short) == 10
    # every sample at a keyframe interval of 10 frames: seeks decode ~5 frames each
    _check_samples(short, 4, "seek", 25)


def test_choose_strategy_by_decoded_frames():
    assert choose_strategy(300, 32, 250) == "sequential"  # 10 s at 30 fps, keyint 250: one pass
    assert choose_strategy(300, 32, None) == "sequential"  # unknown interval: assumed long
    assert choose_strategy(90_000, 32, 250) == "seek"  # an hour: 33 GOPs are far fewer frames than the file
    assert choose_strategy(1000, 32, 12) == "seek"  # OpenCV's mp4v writer: short GOPs make seeks cheap
    assert choose_strategy(0, 32, 12) == "sequential" and ASSUMED_GOP == 250


@pytest.mark.parametrize("hold_bytes", [None, 0])
def test_sequential_pass_on_a_container_claiming_more_frames(decoder, tmp_path, hold_bytes):
    """A truncated AVI claims 20 frames and decodes 8: the sequential pass still gives the uniform samples
    of the frames that decode; with no room to hold samples it streams them and still gives every one."""
    bad = write_corrupt_files(tmp_path)["truncated_avi"]
    kw = {} if hold_bytes is None else {"hold_bytes": hold_bytes}
    with VideoReader(bad, **kw) as r:
        idx = [i for i, _, _ in r.frames(n_frames=4, strategy="sequential")]
        assert r.truncated and 0 < r.decoded < r.info.frame_count == 20
    want = uniform_indices(r.decoded, 4)
    if hold_bytes is None:
        assert idx == want
    else:  # frames streamed before the end was found stay (real frames, exact indices); none is missing
        assert set(want) <= set(idx) and len(idx) == len(set(idx)) and max(idx) < r.decoded


@needs_x264
@pytest.mark.parametrize("how", [{"n_frames": 8, "strategy": "sequential"}, {"every": 7}])
def test_pyav_pass_skips_unwanted_non_reference_frames(h264_clip, how):
    """PyAV's sequential pass does not decode the B-frames nothing refers to unless they are samples: the
    samples are still the frames (indices, timestamps, pixels) of a full decode, and fewer frames decode."""
    seq = _sequential_decode(h264_clip)
    with VideoReader(h264_clip, decoder="pyav") as r:
        got = list(r.frames(**how))
        assert r.skipping
        decoded = r.frames_decoded
    want = uniform_indices(len(seq), 8) if "n_frames" in how else list(range(0, len(seq), 7))
    assert [i for i, _, _ in got] == want
    assert [t for _, t, _ in got] == pytest.approx([i / FPS for i in want], abs=1e-3)
    for i, _, f in got:
        assert np.array_equal(f, seq[i]), f"frame {i} differs from the full decode's"
    assert decoded < max(want) + 1, f"{decoded} frames decoded for a pass up to frame {max(want)}"


@needs_x264
def test_pyav_decodes_every_frame_when_the_container_count_is_off(tmp_path, london_neutral):
    """Frame ranks from the container are used only when its packets match its frame count: a clip cut short
    (its index still claims all frames) is read frame by frame, as before."""
    from edge.decoders import packet_stamps

    clip = write_archive_video(tmp_path / "c.mp4", london_neutral[:2], n_frames=40, fps=FPS, keyint=250)
    stamps = packet_stamps(clip)
    assert stamps == sorted(stamps) and len(stamps) == 40 and len(set(stamps)) == 40
    with VideoReader(clip, decoder="pyav") as r:
        r.info = dataclasses.replace(r.info, frame_count=41)  # a container claiming one frame more than it has
        list(r.frames(n_frames=4, strategy="sequential"))
        assert not r.skipping
