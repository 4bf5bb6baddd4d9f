"""train.data.augment: archive degradations (JPEG, H.264-like, resize, blur, noise, colour), seeded and shape-safe."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from train.data.augment import ArchiveAugment, add_noise, affine, color_jitter, down_up, gaussian_blur, h264_like, jpeg


def _image(seed: int = 0, h: int = 64, w: int = 64) -> np.ndarray:
    """Smooth blobs (not aligned to the 8x8 grid) plus fine texture: something every op visibly changes."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.normal(0, 1, (13, 11, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    tex = cv2.GaussianBlur(rng.normal(0, 1, (h, w, 3)).astype(np.float32), (0, 0), 1.0)
    return np.clip(128 + 50 * base + 25 * tex, 0, 255).astype(np.uint8)


def _blockiness(img: np.ndarray) -> float:
    """Mean |step| of the luma across 8x8 block edges over the mean |step| inside blocks (1 = no grid)."""
    y = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    dx, dy = np.abs(np.diff(y, axis=1)), np.abs(np.diff(y, axis=0))
    bx, by = np.arange(dx.shape[1]) % 8 == 7, np.arange(dy.shape[0]) % 8 == 7
    return float((dx[:, bx].mean() + dy[by, :].mean()) / (dx[:, ~bx].mean() + dy[~by, :].mean()))


ALWAYS = ArchiveAugment(strength=100.0)  # every probability clipped to 1 (h264 then always wins over jpeg)


def test_deterministic_per_rng_seed():
    img = _image()
    for aug in (ArchiveAugment(), ALWAYS):
        a = aug(img, np.random.default_rng(7))
        b = aug(img, np.random.default_rng(7))
        assert np.array_equal(a, b)
    outs = [ArchiveAugment()(img, np.random.default_rng(s)) for s in range(8)]
    assert len({o.tobytes() for o in outs}) > 1  # other seeds, other draws


@pytest.mark.parametrize("shape", [(64, 64, 3), (50, 70, 3), (33, 17, 3)])
@pytest.mark.parametrize("aug", [ArchiveAugment(), ALWAYS], ids=["default", "all_ops"])
def test_shape_and_dtype_preserved(shape, aug):
    img = _image(1, shape[0], shape[1])
    for seed in range(6):
        out = aug(img, np.random.default_rng(seed))
        assert out.shape == shape and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]


def test_strength_zero_is_identity():
    img = _image(2)
    aug = ArchiveAugment(strength=0.0)
    for seed in range(20):
        assert np.array_equal(aug(img, np.random.default_rng(seed)), img)


def test_input_is_never_modified_and_read_only_input_is_accepted():
    """The dataset cache hands out read-only arrays; the augmentation must copy, never write in place."""
    img = _image(3)
    ro = img.copy()
    ro.setflags(write=False)
    for aug in (ArchiveAugment(), ALWAYS, ArchiveAugment(flip=0.0, strength=100.0)):
        for seed in range(6):
            out = aug(ro, np.random.default_rng(seed))
            assert out.shape == img.shape
    assert np.array_equal(ro, img)
    # every op on its own, on a read-only array
    rng = np.random.default_rng(0)
    for f in (lambda x: jpeg(x, 40), lambda x: h264_like(x, 30), lambda x: down_up(x, 0.5),
              lambda x: gaussian_blur(x, 1.0), lambda x: add_noise(x, 5.0, rng), lambda x: color_jitter(x, rng)):
        out = f(ro)
        assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(ro, img)


def test_all_ops_chain_changes_the_image():
    img = _image(4)
    assert not np.array_equal(ALWAYS(img, np.random.default_rng(0)), img)


@pytest.mark.parametrize("name", ["jpeg", "h264_like", "down_up", "gaussian_blur", "add_noise", "color_jitter"])
def test_each_op_changes_the_image(name):
    img = _image(5)
    rng = np.random.default_rng(1)
    out = {"jpeg": lambda: jpeg(img, 50), "h264_like": lambda: h264_like(img, 30), "down_up": lambda: down_up(img, 0.5),
           "gaussian_blur": lambda: gaussian_blur(img, 1.0), "add_noise": lambda: add_noise(img, 5.0, rng),
           "color_jitter": lambda: color_jitter(img, rng)}[name]()
    assert out.shape == img.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - img.astype(np.int16))
    assert diff.mean() > 0.5, f"{name} barely changed the image (mean |diff| {diff.mean():.3f})"


def test_blur_and_down_up_remove_detail():
    img = _image(6)

    def detail(x):
        return float(np.abs(np.diff(x.astype(np.float64), axis=1)).mean())

    assert detail(gaussian_blur(img, 1.5)) < 0.8 * detail(img)
    assert detail(down_up(img, 0.4)) < 0.8 * detail(img)


def test_flip_only_mirrors():
    img = _image(7)
    aug = ArchiveAugment(flip=1.0, jpeg=0, h264=0, downscale=0, blur=0, noise=0, color=0, geometric=0)
    assert np.array_equal(aug(img, np.random.default_rng(0)), img[:, ::-1])


@pytest.mark.parametrize("quality", [15, 30, 50])
def test_h264_like_smooths_the_block_grid_more_than_jpeg(quality):
    """The deblocking step: the luma step across 8x8 block edges (relative to steps inside blocks) is
    clearly lower than plain JPEG's at the same quality, on every test image (measured: 0.55-0.75 x)."""
    for seed in range(4):
        img = _image(seed, 128, 128)
        b_jpeg, b_h264 = _blockiness(jpeg(img, quality)), _blockiness(h264_like(img, quality))
        assert b_jpeg > 1.2  # plain JPEG at these qualities shows its grid
        assert b_h264 < 0.85 * b_jpeg, (seed, b_jpeg, b_h264)


def test_h264_like_subsamples_chroma():
    """4:2:0: a one-pixel chroma checkerboard (constant luma-ish) does not survive."""
    img = np.full((64, 64, 3), 128, np.uint8)
    img[::2, ::2] = (128, 100, 160)
    img[1::2, 1::2] = (128, 100, 160)
    out = h264_like(img, 50)
    ycc_in = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb).astype(np.float64)
    ycc_out = cv2.cvtColor(out, cv2.COLOR_BGR2YCrCb).astype(np.float64)
    assert ycc_in[..., 1].std() > 10  # the input's Cr really alternates pixel by pixel
    assert (ycc_out[..., 1:].std(axis=(0, 1)) < 0.25 * ycc_in[..., 1:].std(axis=(0, 1)) + 0.5).all()


def test_face_dataset_cache_hands_read_only_crops_to_the_augmentation(tmp_path):
    """FaceDataset(cache=True) keeps read-only crops; a strong ArchiveAugment must work on them, epoch after epoch,
    and leave the cached crop as it was."""
    pytest.importorskip("torch")
    from edge.spec import PreprocessSpec
    from train.data import REAL, FaceDataset, Sample

    samples = []
    for k in range(3):
        p = tmp_path / f"r{k}.png"
        cv2.imwrite(str(p), _image(10 + k, 32, 32))
        samples.append(Sample(path=str(p), label=REAL, group=p.stem, method="real"))
    ds = FaceDataset(samples, PreprocessSpec(size=32), augment=ArchiveAugment(strength=100.0), cache=True)
    first = [ds.load(i)[0] for i in range(len(ds))]
    cached = {j: ds._cache[j][0].copy() for j in ds._cache}
    assert all(not ds._cache[j][0].flags.writeable for j in ds._cache)
    ds.set_epoch(1)
    second = [ds.load(i)[0] for i in range(len(ds))]
    assert all(a.shape == (32, 32, 3) and a.dtype == np.uint8 for a in first + second)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))  # other epoch, other draws
    assert all(np.array_equal(ds._cache[j][0], cached[j]) for j in cached)
    x, y = ds[0]
    assert tuple(x.shape) == (3, 32, 32) and y == REAL


def test_affine_identity_and_rotation():
    img = _image(3, 64, 64)
    assert np.array_equal(affine(img, 0.0, 1.0, (0.0, 0.0)), img)
    out = affine(img, 90.0, 1.0, (0.0, 0.0))
    assert out.shape == img.shape and out.dtype == np.uint8
    # a quarter turn about (w/2, h/2): on an even side that is half a pixel off the array's centre, so the
    # result is np.rot90 shifted down by one row
    assert np.array_equal(out[2:-2, 2:-2], np.roll(np.rot90(img), 1, axis=0)[2:-2, 2:-2])


def test_geometric_reflects_borders_instead_of_black_corners():
    """A rotated crop must not gain constant black corners (a cue that only augmented crops would have)."""
    img = np.full((64, 64, 3), 200, np.uint8)
    out = affine(img, 12.0, 0.9, (0.05, -0.05))
    assert out.min() == 200


def test_geometric_only_moves_pixels_when_drawn():
    img = _image(5, 64, 64)
    geo = ArchiveAugment(flip=0, jpeg=0, h264=0, downscale=0, blur=0, noise=0, color=0, geometric=1.0)
    outs = [geo(img, np.random.default_rng(s)) for s in range(4)]
    assert all(o.shape == img.shape for o in outs)
    assert all(not np.array_equal(o, img) for o in outs)
    assert not np.array_equal(outs[0], outs[1])  # drawn per call, seeded by the rng
    off = ArchiveAugment(flip=0, jpeg=0, h264=0, downscale=0, blur=0, noise=0, color=0, geometric=0.0)
    assert np.array_equal(off(img, np.random.default_rng(0)), img)
