"""Property-based fuzzing (hypothesis, bounded examples) of the decode -> detect -> preprocess entry:
random bytes as image/video files, random arrays of any shape/dtype/values as frames, random crop
sizes. Every input gives a well-formed result or an FfdError (InputError) -- nothing else."""
from __future__ import annotations

import importlib.util
import itertools

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.errors import FfdError, InputError
from rel_fixtures import rel_model  # noqa: F401 - fixtures

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True,
                database=None)
_counter = itertools.count()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def seeds(london_neutral):
    """Valid encodings to mutate: a face as JPEG, PNG, BMP, WEBP, and a short MP4/AVI."""
    face = cv2.resize(cv2.imread(str(london_neutral[0])), (96, 96))
    out = {ext: cv2.imencode(ext, face)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp")}
    return out


@pytest.fixture(scope="module")
def fd(rel_model, yunet_model):
    from edge.forgery import ForgeryDetector

    with ForgeryDetector(rel_model, intra_op_threads=1) as d:
        yield d


def _file(work, data: bytes, ext: str):
    p = work / f"f{next(_counter)}{ext}"
    p.write_bytes(data)
    return p


def _check_image(img):
    assert isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.flags["C_CONTIGUOUS"] and img.size > 0


@FUZZ
@given(data=st.binary(max_size=4096), ext=st.sampled_from([".jpg", ".png", ".bmp", ".webp", ".tif", ".pgm"]))
def test_read_image_random_bytes(work, data, ext):
    from edge.media import read_image

    try:
        _check_image(read_image(_file(work, data, ext)))
    except InputError as e:
        assert e.path and e.message


@FUZZ
@given(fmt=st.sampled_from([".jpg", ".png", ".bmp", ".webp"]), cut=st.floats(0.0, 1.0),
       flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=12))
def test_read_image_mutated_valid_files(work, seeds, fmt, cut, flips):
    """Valid images truncated at a random point and with random byte flips."""
    from edge.media import read_image

    data = bytearray(seeds[fmt])
    for pos, x in flips:
        data[int(pos * (len(data) - 1))] ^= x
    data = bytes(data[: max(1, int(len(data) * (0.5 + cut / 2)))])
    try:
        _check_image(read_image(_file(work, data, fmt)))
    except InputError:
        pass


@pytest.fixture(scope="module")
def seed_video(work, london_neutral):
    from media import write_face_video

    return write_face_video(work / "seed.mp4", london_neutral[:2], n_frames=6, size=(160, 120)).read_bytes()


DECODERS = ["pyav", "opencv"] if importlib.util.find_spec("av") else ["opencv"]  # both back-ends where PyAV is


@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(cut=st.floats(0.05, 1.0), flips=st.lists(st.tuples(st.floats(0.0, 1.0), st.integers(1, 255)), max_size=16),
       ext=st.sampled_from([".mp4", ".mkv", ".avi"]), dec=st.sampled_from(DECODERS))
def test_video_reader_mutated_mp4(work, seed_video, cut, flips, ext, dec):
    from edge.media import VideoReader

    data = bytearray(seed_video)
    for pos, x in flips:
        data[int(pos * (len(data) - 1))] ^= x
    p = _file(work, bytes(data[: max(1, int(len(data) * cut))]), ext)
    try:
        with VideoReader(p, timeout_s=30, decoder=dec) as r:  # both decoding back-ends
            for idx, t, frame in r.frames(n_frames=3):
                _check_image(frame)
                assert idx >= 0 and t >= 0
    except InputError as e:
        assert e.message


DTYPES = [np.uint8, np.uint16, np.float32, np.float64, np.int8, np.int32, np.float16, np.bool_]


@st.composite
def arrays(draw):
    h, w = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    ch = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    dtype = draw(st.sampled_from(DTYPES))
    shape = (h, w) if ch is None else (h, w, ch)
    if draw(st.booleans()) and draw(st.booleans()):
        shape = draw(st.sampled_from([(0, 5, 3), (5, 0, 3), (3,), (2, 2, 2, 3), (1, 1, 3), (1, 4000, 3)]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["random", "const", "extreme"]))
    if np.issubdtype(dtype, np.floating):
        a = rng.standard_normal(shape) * draw(st.sampled_from([1.0, 255.0, 1e6]))
        if kind == "extreme" and a.size:
            a.flat[rng.integers(0, a.size, max(1, a.size // 10))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        elif kind == "const":
            a = np.full(shape, draw(st.sampled_from([0.0, 1.0, 255.0, -3.0])))
        return a.astype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) > 0.5
    info = np.iinfo(dtype)
    if kind == "const":
        return np.full(shape, draw(st.sampled_from([info.min, info.max, 0])), dtype)
    return rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@FUZZ
@given(frame=arrays())
def test_detect_any_array(fd, frame):
    """ForgeryDetector.process on anything array-like: face results or an InputError."""
    try:
        faces = fd.process(frame)
    except InputError as e:
        assert e.message
        return
    for f in faces:
        assert 0.0 <= f.score <= 1.0 and all(np.isfinite(f.box)) and f.box[2] > 0 and f.box[3] > 0
        assert f.label in ("real", "fake", "uncertain")


@FUZZ
@given(sizes=st.lists(st.tuples(st.integers(1, 400), st.integers(1, 400)), min_size=1, max_size=6),
       seed=st.integers(0, 2**31))
def test_preprocess_any_crop_size(fd, sizes, seed):
    from edge.spec import preprocess

    rng = np.random.default_rng(seed)
    crops = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    x = preprocess(crops, fd.spec)
    s = fd.spec.size
    assert x.shape == (len(crops), 3, s, s) and x.dtype == np.float32 and np.isfinite(x).all()
    scores = fd.classify_crops(crops)
    assert scores.shape == (len(crops),) and ((scores >= 0) & (scores <= 1)).all()


def test_fuzz_catches_what_it_should(fd):
    """The properties can fail: a 5-channel frame and an int32 frame are refused, not accepted silently."""
    with pytest.raises(FfdError):
        fd.process(np.zeros((32, 32, 5), np.uint8))
    with pytest.raises(InputError):
        fd.process(np.zeros((32, 32, 3), np.int32))
