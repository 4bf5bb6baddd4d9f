"""Self-blended pseudo-fakes: change only inside the mask, every landmark mode, seeded, CLI."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from train.sbi import SBIConfig, blend_mask, self_blend, write_blends

SEEDS = range(12)


@pytest.fixture(scope="module")
def crops(shared, yunet_model, tmp_path_factory):
    """Three london faces through the real extraction: crops with 5-point and 189-point landmarks."""
    from edge.faces.extract import extract_faces
    from train.data import load_samples

    src = tmp_path_factory.mktemp("london")
    for stem in ("001_03", "002_03", "005_03"):
        for suffix in (".jpg", "_landmarks.csv"):
            (src / f"{stem}{suffix}").symlink_to(shared / "data" / "london_faces" / "neutral" / f"{stem}{suffix}")
    out = tmp_path_factory.mktemp("ext")
    extract_faces(src, out, detector_model=yunet_model, label="real", workers=1, progress=False)
    samples = load_samples(out)
    assert len(samples) == 3
    return [(cv2.imread(s.path), s) for s in samples]


@pytest.mark.parametrize("mode", ["dense", "five", "none"])
def test_fake_differs_from_source_only_inside_mask(crops, mode):
    changed_total = 0
    for img, s in crops:
        lm = s.landmarks if mode == "five" else None
        dense = s.dense_landmarks if mode == "dense" else None
        assert (lm is not None) == (mode == "five") and (dense is not None) == (mode == "dense")
        for seed in SEEDS:
            fake, mask = self_blend(img, lm, dense, rng=np.random.default_rng(seed))
            assert fake.dtype == np.uint8 and fake.shape == img.shape
            assert mask.dtype == np.float32 and mask.shape == img.shape[:2]
            assert 0.0 <= mask.min() and mask.max() <= 1.0 and mask.max() > 0
            outside = mask == 0
            assert outside.any()  # the face does not fill the 1.3x crop
            np.testing.assert_array_equal(fake[outside], img[outside])
            changed = np.any(fake != img, axis=-1)
            assert not (changed & outside).any()
            changed_total += int(changed.sum())
    assert changed_total > 0


def test_mask_follows_landmarks(crops):
    img, s = crops[0]
    shape = img.shape[:2]
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    cfg = SBIConfig(elastic_alpha=0.0, hull_scale=(1.0, 1.0))
    dense = blend_mask(shape, rng(), cfg, dense_landmarks=s.dense_landmarks)
    five = blend_mask(shape, rng(), cfg, landmarks=s.landmarks)
    centred = blend_mask(shape, rng(), cfg)
    assert not np.array_equal(dense, five) and not np.array_equal(five, centred)
    for m in (dense, five):  # eyes, nose and mouth of the 5 detector points lie well inside the face mask
        for x, y in s.landmarks:
            assert m[int(round(y)), int(round(x))] > 0.5
    ys, xs = np.nonzero(dense > 0.5)
    cx, cy = np.mean(s.dense_landmarks, axis=0)
    assert abs(xs.mean() - cx) < 0.1 * shape[1] and abs(ys.mean() - cy) < 0.15 * shape[0]


def test_reproducible_and_seed_dependent(crops):
    img, s = crops[1]
    a = self_blend(img, s.landmarks, s.dense_landmarks, rng=np.random.default_rng(7))
    b = self_blend(img, s.landmarks, s.dense_landmarks, rng=np.random.default_rng(7))
    c = self_blend(img, s.landmarks, s.dense_landmarks, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_blend_ratio_drawn_from_config(crops):
    img, s = crops[2]
    peaks = set()
    for seed in range(40):
        _, mask = self_blend(img, dense_landmarks=s.dense_landmarks, rng=np.random.default_rng(seed))
        peaks.add(round(float(mask.max()), 4))
    assert peaks <= {0.25, 0.5, 0.75, 1.0} and len(peaks) >= 3
    _, mask = self_blend(img, rng=np.random.default_rng(0), cfg=SBIConfig(ratios=(0.5,)))
    assert mask.max() == pytest.approx(0.5)


def test_landmarks_outside_the_crop_fall_back_and_grey_input_works(tmp_path):
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (96, 80), dtype=np.uint8)
    far = [(500.0, 500.0), (520.0, 500.0), (510.0, 510.0), (505.0, 520.0), (515.0, 520.0)]
    fake, mask = self_blend(grey, landmarks=far, rng=np.random.default_rng(1))
    assert fake.shape == (96, 80, 3) and mask.max() > 0
    img3 = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    np.testing.assert_array_equal(fake[mask == 0], img3[mask == 0])


def test_write_blends_and_cli(crops, tmp_path):
    from typer.testing import CliRunner

    from ffd.cli import app
    from train.data import load_samples

    src = tmp_path / "crops"
    src.mkdir()
    for i, (_, s) in enumerate(crops):
        shutil.copyfile(s.path, src / f"face{i}.png")
    res = CliRunner().invoke(app, ["faces", "blend", str(src), str(tmp_path / "a"), "--n", "2", "--seed", "3"])
    assert res.exit_code == 0, res.output
    write_blends(src, tmp_path / "b", n=2, seed=3)
    fakes = sorted((tmp_path / "a").glob("*_sbi.png"))
    masks = sorted((tmp_path / "a").glob("*_mask.png"))
    assert len(fakes) == 2 and len(masks) == 2
    for f in fakes:  # same seed, same files
        np.testing.assert_array_equal(cv2.imread(str(f)), cv2.imread(str(tmp_path / "b" / f.name)))
    for f, m in zip(fakes, masks):
        src_name = f.name.split("_", 1)[1].replace("_sbi.png", ".png")
        fake, orig, mask = cv2.imread(str(f)), cv2.imread(str(src / src_name)), cv2.imread(str(m), 0)
        np.testing.assert_array_equal(fake[mask == 0], orig[mask == 0])
        assert mask.max() > 0
    out = load_samples(tmp_path / "a")
    assert len(out) == 2 and {s.label for s in out} == {1} and {s.method for s in out} == {"sbi"}
    res = CliRunner().invoke(app, ["faces", "blend", str(tmp_path / "empty"), str(tmp_path / "c")])
    assert res.exit_code != 0
