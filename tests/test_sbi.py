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


# --- cross-identity blends and part subsets ---------------------------------------------------
def test_align_donor_puts_the_donor_face_on_the_target_landmarks(crops):
    """A target made by a known similarity transform of the donor: aligning the donor on the
    target's landmarks reproduces the target inside the face."""
    from train.sbi import align_donor

    img, s = crops[0]
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 12.0, 0.9)
    m[:, 2] += (5.0, -4.0)
    target = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    pts = np.asarray(s.dense_landmarks, np.float64)
    tpts = pts @ m[:, :2].T + m[:, 2]
    out = align_donor(img, pts, tpts, (h, w))
    face = blend_mask((h, w), np.random.default_rng(0), SBIConfig(elastic_alpha=0.0, hull_scale=(1.0, 1.0)),
                      dense_landmarks=tpts) > 0.99
    assert face.sum() > 0.1 * h * w
    err = np.abs(out.astype(np.int16) - target.astype(np.int16))[face].mean()
    assert err < 3.0, err
    # without the transform the donor is far from the target: the check above can fail
    assert np.abs(img.astype(np.int16) - target.astype(np.int16))[face].mean() > 4 * err
    assert align_donor(img, pts[:2], tpts[:2], (h, w)) is None  # too few points
    assert align_donor(img, pts, tpts[:5], (h, w)) is None  # layouts differ


def test_cross_blend_takes_the_source_from_the_donor_and_only_inside_the_mask(crops):
    from train.sbi import align_donor

    (img, s), (dimg, d) = crops[0], crops[1]
    donor = align_donor(dimg, d.dense_landmarks, s.dense_landmarks, img.shape[:2])
    cfg = SBIConfig(cross_p=1.0, color_p=0.0, freq_p=0.0, color_match_p=0.0, ratios=(1.0,),
                    scale=(1.0, 1.0), translate=0.0)
    fake, mask = self_blend(img, s.landmarks, s.dense_landmarks, rng=np.random.default_rng(3), cfg=cfg, donor=donor)
    own, _ = self_blend(img, s.landmarks, s.dense_landmarks, rng=np.random.default_rng(3), cfg=cfg)
    outside, inside = mask == 0, mask >= 0.999
    np.testing.assert_array_equal(fake[outside], img[outside])
    np.testing.assert_array_equal(fake[inside], donor[inside])  # no perturbation, ratio 1: the donor's pixels
    assert np.abs(own.astype(np.int16) - img.astype(np.int16))[inside].mean() < 1.0  # a plain self-blend: ~ no change
    with pytest.raises(Exception, match="donor shape"):
        self_blend(img, s.landmarks, s.dense_landmarks, rng=np.random.default_rng(0), cfg=cfg, donor=donor[:-1])


def test_components_blend_random_non_empty_subsets_of_parts(crops):
    img, s = crops[0]
    shape = img.shape[:2]
    cfg = SBIConfig(parts_p=1.0, elastic_alpha=0.0, hull_scale=(1.0, 1.0), blur=(0.001, 0.001))
    all_parts = blend_mask(shape, np.random.default_rng(0), SBIConfig(parts_p=0.0, elastic_alpha=0.0,
                           hull_scale=(1.0, 1.0), blur=(0.001, 0.001)), dense_landmarks=s.dense_landmarks,
                           variant="components") > 0.5
    areas = []
    for seed in range(16):
        m = blend_mask(shape, np.random.default_rng(seed), cfg, dense_landmarks=s.dense_landmarks,
                       variant="components") > 0.5
        assert m.any() and not (m & ~all_parts).any()  # never empty, never outside the parts
        areas.append(int(m.sum()))
    assert min(areas) < 0.8 * all_parts.sum()  # some draws leave parts out
    with pytest.raises(Exception, match="probability"):
        SBIConfig(cross_p=1.5)


def test_dataset_cross_blends_use_another_person(crops, tmp_path):
    """cross_p=1: every pseudo-fake takes its source from a real of another group; with a single
    group there is no donor and the item is an ordinary self-blend."""
    from dataclasses import replace

    from edge.spec import PreprocessSpec
    from train.data import FaceDataset

    samples = [s for _, s in crops]
    spec = PreprocessSpec(size=96)
    base = FaceDataset(samples, spec, sbi=SBIConfig(), seed=0)
    cross = FaceDataset(samples, spec, sbi=SBIConfig(cross_p=1.0, color_match_p=0.0), seed=0)
    n = len(samples)
    for i in range(n, 2 * n):
        a, la = base.load(i)
        b, lb = cross.load(i)
        assert la == lb == 1
        assert not np.array_equal(a, b)
        assert np.array_equal(b, cross.load(i)[0])  # seeded
    one = [replace(s, group="same") for s in samples]
    solo = FaceDataset(one, spec, sbi=SBIConfig(cross_p=1.0), seed=0)
    assert solo._donor(0, solo._crop(0)[0], *solo._crop(0)[1:], np.random.default_rng(0)) is None
    assert solo.load(n)[1] == 1
