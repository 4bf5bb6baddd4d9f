"""edge.media: image decoding, video probing and frame sampling on real files written by OpenCV; every video test
runs on both decoding back-ends (the ``decoder`` fixture: PyAV and OpenCV)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from media import face_canvas, write_corrupt_files, write_face_video

from edge.errors import ConfigError, InputError
from edge.media import (VideoReader, is_image, is_video, iter_video_frames, probe_video, read_image,
                        uniform_indices)


@pytest.fixture(scope="module")
def face_video(tmp_path_factory, london_neutral):
    return write_face_video(tmp_path_factory.mktemp("vid") / "clip.mp4", london_neutral[:3], n_frames=30, fps=10)


@pytest.fixture(scope="module")
def corrupt(tmp_path_factory):
    return write_corrupt_files(tmp_path_factory.mktemp("bad"))


def test_extensions():
    assert is_image("a/B.JPG") and is_image("x.png") and not is_image("x.mp4")
    assert is_video("clip.MOV") and is_video("c.mp4") and not is_video("a.jpg") and not is_video("notes.txt")


@pytest.mark.parametrize("kind", ["grey", "rgba", "grey16"])
def test_read_image_normalises_to_bgr(tmp_path, kind):
    rng = np.random.default_rng(1)
    img = {"grey": rng.integers(0, 255, (40, 60), dtype=np.uint8),
           "rgba": rng.integers(0, 255, (40, 60, 4), dtype=np.uint8),
           "grey16": rng.integers(0, 65535, (40, 60), dtype=np.uint16)}[kind]
    p = tmp_path / f"{kind}.png"
    cv2.imwrite(str(p), img)
    out = read_image(p)
    assert out.dtype == np.uint8 and out.shape == (40, 60, 3) and out.flags.c_contiguous
    if kind == "rgba":
        assert np.array_equal(out, img[..., :3])
    elif kind == "grey":
        assert all(np.array_equal(out[..., c], img) for c in range(3))


def test_read_image_applies_exif_orientation(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    im = pil.fromarray(np.zeros((40, 80, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "o.jpg", exif=exif)
    assert read_image(tmp_path / "o.jpg").shape == (80, 40, 3)


@pytest.mark.parametrize("kind,words", [("zero_jpg", "empty"), ("text_jpg", "cannot decode"),
                                        ("truncated_jpg", "cannot decode")])
def test_read_image_errors_name_the_file(corrupt, kind, words):
    with pytest.raises(InputError) as e:
        read_image(corrupt[kind])
    assert words in e.value.message and e.value.path == str(corrupt[kind]) and e.value.fix


def test_read_image_missing(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "nope.jpg")


@pytest.mark.parametrize("kind", ["zero_mp4", "text_mp4", "truncated_mp4"])
def test_unopenable_videos(decoder, corrupt, kind):
    with pytest.raises(InputError) as e:
        list(iter_video_frames(corrupt[kind], n_frames=4))
    assert e.value.path == str(corrupt[kind])
    with pytest.raises(InputError):
        probe_video(corrupt[kind])


def test_probe_and_uniform_sampling(decoder, face_video):
    info = probe_video(face_video)
    assert (info.frame_count, info.width, info.height) == (30, 640, 480)
    assert info.fps == pytest.approx(10) and info.duration_s == pytest.approx(3.0)
    got = list(iter_video_frames(face_video, n_frames=8))
    idx = [i for i, _, _ in got]
    assert idx == uniform_indices(30, 8) and len(set(idx)) == 8
    assert all(f.shape == (480, 640, 3) and f.dtype == np.uint8 for _, _, f in got)
    assert [t for _, t, _ in got] == pytest.approx([i / 10 for i in idx])


def test_seek_matches_sequential_decode(decoder, face_video):
    """A seeked frame is the same picture as that frame decoded in order."""
    seq = {i: f for i, _, f in iter_video_frames(face_video)}
    assert len(seq) == 30
    for i, _, f in iter_video_frames(face_video, n_frames=5):
        assert np.abs(f.astype(int) - seq[i]).mean() < 1.0


def test_every_kth_frame(decoder, face_video):
    assert [i for i, _, _ in iter_video_frames(face_video, every=7)] == [0, 7, 14, 21, 28]
    with pytest.raises(ConfigError):
        list(iter_video_frames(face_video, n_frames=3, every=2))


def test_truncated_video_falls_back_to_frames_that_decode(decoder, corrupt):
    with VideoReader(corrupt["truncated_avi"]) as r:
        claimed = r.info.frame_count
        idx = [i for i, _, _ in r.frames(n_frames=4)]
        assert r.truncated and 0 < r.decoded < claimed == 20
    assert idx == uniform_indices(r.decoded, 4) and max(idx) < r.decoded


def test_zero_frame_video(decoder, tmp_path):
    p = tmp_path / "empty.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    w.release()
    if not p.exists() or p.stat().st_size == 0:
        p.write_bytes(b"")
    with pytest.raises(InputError):
        list(iter_video_frames(p, n_frames=3))


def test_face_canvas_places_face():
    face = np.full((100, 80, 3), 200, np.uint8)
    c = face_canvas(face, (320, 240), shift=(10, 0))
    assert c.shape == (240, 320, 3) and (c == 200).all(axis=2).sum() > 0.3 * 240 * 0.7 * 240 * 0.8


@given(st.integers(0, 5000), st.integers(1, 64))
def test_uniform_indices(count, n):
    idx = uniform_indices(count, n)
    assert len(idx) == min(count, n)
    assert idx == sorted(set(idx)) and all(0 <= i < count for i in idx)


def test_media_files_skips_hidden_and_other_files(tmp_path):
    from edge.media import media_files

    for rel in ("a/x.jpg", "a/clip.mp4", "b/.hidden/y.png", "._x.jpg", "notes.txt", "z.PNG"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    assert [p.relative_to(tmp_path).as_posix() for p in media_files(tmp_path)] == ["a/clip.mp4", "a/x.jpg", "z.PNG"]
    assert [p.name for p in media_files(tmp_path, videos=False)] == ["x.jpg", "z.PNG"]
