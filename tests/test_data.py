"""Dataset readers, group-wise splits and the torch FaceDataset."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.errors import DatasetError, InputError
from train.data import (FAKE, REAL, assert_disjoint, detect_layout, load_samples, overlapping_groups,
                        split_samples)
from train.data.samples import Sample
from media import write_face_png


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")


def _face_png(path: Path, seed: int, size: int = 96) -> Path:
    return write_face_png(path, seed, size)


def test_import_is_torch_free():
    code = "import sys, train.data, train.sbi; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- readers on the shared data ------------------------------------------------------------
def test_real_fake_folder_ciplab(shared):
    root = shared / "data" / "ciplab_real_fake_160" / "face_crops"
    assert detect_layout(root) == "real_fake"
    samples = load_samples(root, min_classes=2)
    n_real, n_fake = (len(list((root / c).glob("*.jpg"))) for c in ("real", "fake"))
    assert sum(s.label == REAL for s in samples) == n_real > 0
    assert sum(s.label == FAKE for s in samples) == n_fake > 0
    for s in samples:
        assert Path(s.path).parent.name == ("real" if s.label == REAL else "fake")
        assert s.group == Path(s.path).stem
    assert load_samples(root / "real", label="real")[0].method == "real"


def test_csv_manifest_ciplab_keeps_variants_together(shared):
    csv_path = shared / "data" / "ciplab_real_fake_160" / "labels.csv"
    samples = load_samples(csv_path)
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(samples) == len(rows)
    assert [s.label for s in samples] == [REAL if r["label"] == "REAL" else FAKE for r in rows]
    assert all(Path(s.path).is_file() for s in samples[:20])
    # the same image in full_160/ and face_crops/ shares a group, hence a split
    splits = split_samples(samples, seed=1)
    assert_disjoint(splits)
    side: dict[str, set[str]] = {}
    for name, items in splits.items():
        for s in items:
            side.setdefault(Path(s.path).name, set()).add(name)
    assert sum(s.label == REAL for s in samples) > len(side) / 2  # both variants listed
    assert all(len(names) == 1 for names in side.values())


def test_london_folder_needs_label_and_attaches_189_landmarks(shared):
    root = shared / "data" / "london_faces" / "neutral"
    with pytest.raises(DatasetError, match="no labels") as e:
        load_samples(root)
    assert "label=" in e.value.fix
    samples = load_samples(root, label="real")
    assert len(samples) == len(list(root.glob("*.jpg"))) and {s.label for s in samples} == {REAL}
    with_lm = [s for s in samples if s.dense_landmarks is not None]
    assert with_lm and all(len(s.dense_landmarks) == 189 for s in with_lm)
    first = np.loadtxt(Path(with_lm[0].path).with_name(Path(with_lm[0].path).stem + "_landmarks.csv"),
                       delimiter=",", skiprows=1)
    np.testing.assert_allclose(np.array(with_lm[0].dense_landmarks), first[:, 1:])
    with pytest.raises(DatasetError, match="only real"):
        load_samples(root, label="real", min_classes=2)


def test_extraction_folder(tmp_path):
    from edge.faces.extract import MANIFEST_COLUMNS

    rows = [
        {"path": "crops/v1_f0.png", "label": "real", "group": "v1", "source": "v1.mp4", "frame": "0",
         "landmarks": json.dumps([[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]]), "dense_landmarks": ""},
        {"path": "crops/v1_f9.png", "label": "real", "group": "v1", "source": "v1.mp4", "frame": "9"},
        {"path": "", "label": "fake", "group": "v2", "source": "v2.mp4", "error": "cannot decode video"},
        {"path": "crops/v3.png", "label": "fake", "method": "Deepfakes", "group": "", "source": "v3.jpg",
         "dense_landmarks": json.dumps([[1, 2], [3, 4], [5, 6]])},
    ]
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    samples = load_samples(tmp_path, min_classes=2)
    assert [Path(s.path).name for s in samples] == ["v1_f0.png", "v1_f9.png", "v3.png"]  # error row skipped
    assert samples[0].path == str(tmp_path / "crops" / "v1_f0.png")
    assert [s.label for s in samples] == [REAL, REAL, FAKE]
    assert [s.frame for s in samples] == [0, 9, None]
    assert samples[0].landmarks[3] == (45.0, 90.0) and samples[1].landmarks is None
    assert samples[2].group == "v3.jpg" and samples[2].method == "Deepfakes"  # empty group -> source
    assert samples[2].dense_landmarks == ((1.0, 2.0), (3.0, 4.0), (5.0, 6.0))


# --- FF++ and Celeb-DF layouts --------------------------------------------------------------
def _ffpp(root: Path, splits: bool) -> None:
    ids = ["000", "003", "001", "002", "004", "005"]
    _touch(root, *(f"original_sequences/youtube/{c}/videos/{i}.mp4" for c in ("c23", "c40") for i in ids))
    pairs = [("000", "003"), ("001", "002"), ("004", "005")]
    for m in ("Deepfakes", "Face2Face"):
        _touch(root, *(f"manipulated_sequences/{m}/{c}/videos/{a}_{b}.mp4"
                       for c in ("c23", "c40") for p in pairs for a, b in (p, p[::-1])))
    _touch(root, "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4")
    if splits:
        (root / "splits").mkdir()
        for name, ps in (("train", pairs[:1]), ("val", pairs[1:2]), ("test", pairs[2:])):
            (root / "splits" / f"{name}.json").write_text(json.dumps([list(p) for p in ps]))


def test_ffpp_layout_groups_pairs(tmp_path):
    _ffpp(tmp_path, splits=False)
    assert detect_layout(tmp_path) == "ffpp"
    samples = load_samples(tmp_path, min_classes=2)
    assert len(samples) == 6 + 2 * 6  # c23 only, masks ignored
    assert all("/c23/" in s.path for s in samples)
    by_name = {(s.method, Path(s.path).stem): s for s in samples}
    assert by_name[("original", "000")].label == REAL and by_name[("Deepfakes", "000_003")].label == FAKE
    g = {by_name[k].group for k in [("original", "000"), ("original", "003"), ("Deepfakes", "000_003"),
                                    ("Face2Face", "003_000")]}
    assert len(g) == 1
    assert len({s.group for s in samples}) == 3
    assert all(s.is_video and s.split is None for s in samples)
    assert len(load_samples(tmp_path, compression="c40")) == 18
    for seed in range(5):
        assert_disjoint(split_samples(samples, val=0.3, test=0.3, seed=seed))


def test_ffpp_official_split_overrides(tmp_path):
    _ffpp(tmp_path, splits=True)
    splits = split_samples(load_samples(tmp_path), seed=123)
    names = {k: sorted({Path(s.path).stem for s in v}) for k, v in splits.items()}
    assert names["train"] == ["000", "000_003", "003", "003_000"]
    assert names["val"] == ["001", "001_002", "002", "002_001"]
    assert names["test"] == ["004", "004_005", "005", "005_004"]
    assert_disjoint(splits)


def test_extracted_ffpp_crops_keep_identity_groups_and_official_split(tmp_path):
    """Extraction groups by video stem; reading the crops back re-joins FF++ identities."""
    from edge.faces.extract import MANIFEST_COLUMNS

    root = tmp_path / "ffpp"
    _ffpp(root, splits=True)
    out = tmp_path / "ext"
    out.mkdir()
    vids = [s for s in load_samples(root) if Path(s.path).stem in ("000", "003_000", "001", "001_002")
            and s.method in ("original", "Deepfakes")]
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, restval="")
        w.writeheader()
        for v in vids:
            for k in range(2):
                w.writerow({"path": f"crops/{Path(v.path).stem}_f{k}.png",
                            "label": "real" if v.label == REAL else "fake",
                            "method": v.method, "group": Path(v.path).stem, "source": v.source, "frame": k})
    crops = load_samples(out)
    assert len(crops) == 8
    group = {Path(s.path).stem: s.group for s in crops}
    assert group["000_f0"] == group["003_000_f1"] != group["001_f0"] == group["001_002_f0"]
    split = {Path(s.path).stem: s.split for s in crops}
    assert split["000_f0"] == split["003_000_f0"] == "train" and split["001_002_f1"] == "val"


def test_celebdf_layout(tmp_path):
    _touch(tmp_path, "Celeb-real/id0_0000.mp4", "Celeb-real/id0_0001.mp4", "Celeb-real/id1_0000.mp4",
           "YouTube-real/00000.mp4", "YouTube-real/00001.mp4",
           "Celeb-synthesis/id0_id1_0000.mp4", "Celeb-synthesis/id1_id0_0000.mp4")
    (tmp_path / "List_of_testing_videos.txt").write_text(
        "1 YouTube-real/00001.mp4\n1 Celeb-real/id1_0000.mp4\n0 Celeb-synthesis/id1_id0_0000.mp4\n")
    assert detect_layout(tmp_path) == "celebdf"
    samples = {Path(s.path).name: s for s in load_samples(tmp_path, min_classes=2)}
    assert samples["id0_id1_0000.mp4"].label == FAKE and samples["00000.mp4"].label == REAL
    assert samples["id0_0001.mp4"].group == samples["id0_id1_0000.mp4"].group != samples["id1_0000.mp4"].group
    assert samples["00000.mp4"].group != samples["00001.mp4"].group
    splits = split_samples(list(samples.values()), val=0.5, test=0.2)
    assert sorted(Path(s.path).name for s in splits["test"]) == ["00001.mp4", "id1_0000.mp4", "id1_id0_0000.mp4"]
    assert len(splits["train"]) + len(splits["val"]) == 4


# --- errors -----------------------------------------------------------------------------------
def test_dataset_errors(tmp_path):
    (tmp_path / "empty" / "real").mkdir(parents=True)
    (tmp_path / "empty" / "fake").mkdir()
    with pytest.raises(DatasetError, match="empty") as e:
        load_samples(tmp_path / "empty")
    assert e.value.path == str(tmp_path / "empty")
    _face_png(tmp_path / "onlyfake" / "fake" / "a.png", 0)
    assert len(load_samples(tmp_path / "onlyfake")) == 1
    with pytest.raises(DatasetError, match="only fake"):
        load_samples(tmp_path / "onlyfake", min_classes=2)
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="unknown dataset layout") as e:
        load_samples(tmp_path / "odd")
    assert "real/ and fake/" in e.value.fix and "Celeb-DF" in e.value.fix
    with pytest.raises(DatasetError, match="does not exist"):
        load_samples(tmp_path / "missing")
    (tmp_path / "bad.csv").write_text("file,y\na.png,1\n")
    with pytest.raises(DatasetError, match="path,label"):
        load_samples(tmp_path / "bad.csv")
    (tmp_path / "badlabel.csv").write_text("path,label\na.png,maybe\n")
    with pytest.raises(DatasetError, match="unknown label"):
        load_samples(tmp_path / "badlabel.csv")


# --- splits -----------------------------------------------------------------------------------
def _frames(n_groups: int, per: int = 3, start: int = 0) -> list[Sample]:
    return [Sample(path=f"v{g}/{k}.png", label=g % 2, group=f"v{g}", method="m", frame=k)
            for g in range(start, start + n_groups) for k in range(per)]


def test_split_by_group_stable_and_proportional():
    samples = _frames(3000)
    splits = split_samples(samples, val=0.1, test=0.2, seed=0)
    assert sum(map(len, splits.values())) == len(samples) and not overlapping_groups(splits)
    frac = {k: len(v) / len(samples) for k, v in splits.items()}
    assert abs(frac["test"] - 0.2) < 0.03 and abs(frac["val"] - 0.1) < 0.03
    before = {s.path: k for k, v in splits.items() for s in v}
    grown = split_samples(_frames(500, start=3000) + samples[::-1], val=0.1, test=0.2, seed=0)
    after = {s.path: k for k, v in grown.items() for s in v}
    assert all(after[p] == k for p, k in before.items())  # adding files moves nothing
    other = split_samples(samples, val=0.1, test=0.2, seed=1)
    assert {s.path for s in other["test"]} != {s.path for s in splits["test"]}
    with pytest.raises(DatasetError, match="straddle"):
        assert_disjoint({"train": samples[:2], "test": samples[1:3]})


# --- FaceDataset ------------------------------------------------------------------------------
@pytest.fixture
def crop_dir(tmp_path) -> Path:
    for i in range(3):
        _face_png(tmp_path / "real" / f"r{i}.png", i, size=96 + 16 * i)
    for i in range(2):
        _face_png(tmp_path / "fake" / f"f{i}.png", 10 + i)
    return tmp_path


def test_face_dataset_shapes_labels_and_sbi(crop_dir):
    import torch

    from edge.spec import PreprocessSpec, preprocess, resize_crop
    from train.data import FaceDataset
    from train.sbi import SBIConfig
    from train.trainer import make_loader

    spec = PreprocessSpec(size=64)
    samples = load_samples(crop_dir, min_classes=2)
    plain = FaceDataset(samples, spec)
    assert len(plain) == 5
    x, y = plain[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (3, 64, 64) and y == samples[0].label
    # exactly edge.spec.preprocess of the resized crop: the one preprocessing path
    ref = preprocess([resize_crop(cv2.imread(samples[0].path), spec)], spec)[0]
    np.testing.assert_array_equal(x.numpy(), ref)

    ds = FaceDataset(samples, spec, sbi=SBIConfig(), seed=5)
    n_real = sum(s.label == REAL for s in samples)
    assert len(ds) == len(samples) + n_real and ds.labels == [s.label for s in samples] + [FAKE] * n_real
    k = len(samples)  # first pseudo-fake
    assert ds.sample(k).method == "sbi" and ds.sample(k).path == samples[0].path
    a, b = ds[k], ds[k]
    assert a[1] == FAKE and torch.equal(a[0], b[0]) and not torch.equal(a[0], ds[0][0])
    ds.set_epoch(1)
    assert not torch.equal(ds[k][0], a[0])  # new blends each epoch
    ds.set_epoch(0)
    assert torch.equal(ds[k][0], a[0])

    aug = FaceDataset(samples, spec, augment=True)
    assert tuple(aug[1][0].shape) == (3, 64, 64)
    xb, yb = next(iter(make_loader(ds, batch_size=4, train=True, seed=0)))
    assert tuple(xb.shape) == (4, 3, 64, 64) and yb.dtype == torch.int64


def test_face_dataset_bad_inputs(crop_dir):
    from edge.spec import PreprocessSpec
    from train.data import FaceDataset

    bad = crop_dir / "real" / "broken.png"
    bad.write_bytes(b"not a png")
    ds = FaceDataset(load_samples(crop_dir), PreprocessSpec(size=32))
    idx = [i for i in range(len(ds)) if ds.sample(i).path == str(bad)][0]
    with pytest.raises(InputError) as e:
        ds[idx]
    assert e.value.path == str(bad)
    with pytest.raises(DatasetError, match="no real/fake label"):
        FaceDataset([Sample(path=str(bad), label=-1, group="g", method="")], PreprocessSpec())
    with pytest.raises(DatasetError, match="videos"):
        FaceDataset([Sample(path="a.mp4", label=0, group="g", method="")], PreprocessSpec())
