"""train.sources (named sources: per-source splits, balance, evaluation sets) and the code around it:
the weighted sampler and per-source validation of train.trainer, the person/split columns of the readers
and of ``ffd faces extract``, build_model / build_datasets, the ImageNet dual teacher, per-source reports
and model-card updates.

(Named test_train_sources.py: tests/test_sources.py already tests edge.stream.sources, the video inputs.)
"""
from __future__ import annotations

import csv
import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from media import write_face_png

torch = pytest.importorskip("torch")

from edge.errors import ConfigError, DatasetError, InputError  # noqa: E402
from edge.spec import ModelCard, PreprocessSpec  # noqa: E402
from train.data import FAKE, REAL, Sample, assert_disjoint, group_fraction, split_samples  # noqa: E402
from train.sources import (SBI_SET, EllipseMaskWarning, Source, balance_weights, check_trainable,  # noqa: E402
                           eval_sets, load_sources, parse_source_arg, split_source, video_key)

torch.set_num_threads(1)


def _s(path: str, label: int = REAL, group: str | None = None, *, split: str | None = None, source: str = "",
       method: str = "") -> Sample:
    return Sample(path=path, label=label, group=group if group is not None else Path(path).stem,
                  method=method or ("real" if label == REAL else "fake"), source=source, split=split)


def _png(path: Path, seed: int, size: int = 32) -> Path:
    return write_face_png(path, seed, size, pad=3)


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


# ================================================================================================
# train.sources
# ================================================================================================
def test_parse_source_arg(tmp_path, monkeypatch):
    assert parse_source_arg("ff=/data/ffpp") == ("ff", "/data/ffpp")
    assert parse_source_arg("london=real:/x/neutral") == ("london", "real:/x/neutral")  # real: stays on PATH
    assert parse_source_arg("timit.lq=fake:rel/dir") == ("timit.lq", "fake:rel/dir")
    assert parse_source_arg("real:/x/neutral") == (None, "real:/x/neutral")
    assert parse_source_arg("/x/neutral") == (None, "/x/neutral")
    assert parse_source_arg(Path("rel/dir")) == (None, "rel/dir")
    assert parse_source_arg("1x=/a") == (None, "1x=/a")  # a name starts with a letter
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run=1").mkdir()
    assert parse_source_arg("run=1") == (None, "run=1")  # an existing path with '=' is not split
    assert parse_source_arg("run=2") == ("run", "2")  # ... a missing one is NAME=PATH


def _timit_like(n_train: int = 22, n_val: int = 5, frames: int = 3) -> list[Sample]:
    """DeepfakeTIMIT's labels.csv: people with official train/val, no test; real and fake frames per person."""
    out = []
    for k in range(n_train + n_val):
        person, split = f"p{k:02d}", "train" if k < n_train else "val"
        for lab in (REAL, FAKE):
            for f in range(frames):
                out.append(_s(f"/d/{'real' if lab == REAL else 'fake'}/{person}/sa1/{f:03d}.jpg", lab, person,
                              split=split))
    return out


def test_split_source_official_val_people_become_the_test_part():
    samples = _timit_like()
    parts = split_source(samples, val=0.3, test=0.2, seed=0)
    assert set(parts) == {"train", "val", "test"}
    val_people = {f"p{k:02d}" for k in range(22, 27)}
    assert {s.group for s in parts["test"]} == val_people
    assert parts["test"] == [s for s in samples if s.split == "val"]  # all of them, in order
    # val: a hash share of the official training people, by group
    train_people = {s.group for s in parts["train"] + parts["val"]}
    assert train_people == {f"p{k:02d}" for k in range(22)}
    assert {s.group for s in parts["val"]} == {g for g in train_people if group_fraction(g, 0) < 0.3}
    assert parts["val"] and parts["train"]
    assert sum(map(len, parts.values())) == len(samples)
    assert_disjoint(parts)
    # the training parts no longer carry the official split (they were re-split by hash)
    assert all(s.split is None for s in parts["train"] + parts["val"])
    # another seed moves val people around but never the test people
    other = split_source(samples, val=0.3, test=0.2, seed=5)
    assert {s.group for s in other["test"]} == val_people
    assert_disjoint(other)


@pytest.mark.parametrize("splits", [None, ("train", "val", "test"), ("train", "test")])
def test_split_source_equals_split_samples_otherwise(splits):
    samples = []
    for k in range(40):
        sp = None if splits is None else splits[k % len(splits)]
        samples += [_s(f"/d/v{k}/{f:03d}.png", k % 2, f"v{k}", split=sp) for f in range(2)]
    assert split_source(samples, val=0.2, test=0.3, seed=3) == split_samples(samples, val=0.2, test=0.3, seed=3)


def test_load_sources_names(tmp_path):
    a = [_s(f"/d/a{k}.png", k % 2) for k in range(10)]
    with pytest.raises(ConfigError, match="two datasets are named 'x'"):
        load_sources([("x", a), ("x", a)])
    with pytest.raises(ConfigError, match="self-blend"):
        load_sources([("sbi", a)])
    for d in ("one/faces", "two/faces"):
        for k in range(3):
            _png(tmp_path / d / f"f{k}.png", k)
    with pytest.raises(ConfigError, match="sbi"):
        load_sources([f"sbi=real:{tmp_path / 'one/faces'}"])
    # two folders of one name: the default names collide
    with pytest.raises(ConfigError, match="two datasets are named 'faces'"):
        load_sources([f"real:{tmp_path / 'one/faces'}", f"real:{tmp_path / 'two/faces'}"])
    srcs = load_sources([f"real:{tmp_path / 'one/faces'}", f"b=real:{tmp_path / 'two/faces'}", ("c", a)], seed=1)
    assert [s.name for s in srcs] == ["faces", "b", "c"]
    assert srcs[1].arg == f"real:{tmp_path / 'two/faces'}"
    assert all(set(s.parts) == {"train", "val", "test"} for s in srcs)
    assert sum(map(len, srcs[2].parts.values())) == 10
    assert all(x.label == REAL for p in srcs[0].parts.values() for x in p)
    assert srcs[2].counts()["train"]["real"] + srcs[2].counts()["val"]["real"] + srcs[2].counts()["test"]["real"] == 5
    with pytest.raises(ConfigError, match="no dataset"):
        load_sources([])


def _src(name: str, train: list[Sample], val: list[Sample] = (), test: list[Sample] = ()) -> Source:
    return Source(name, name, {"train": list(train), "val": list(val), "test": list(test)})


def test_check_trainable():
    reals = [_s(f"/r{k}.png", REAL) for k in range(3)]
    fakes = [_s(f"/f{k}.png", FAKE) for k in range(3)]
    with pytest.raises(DatasetError, match="empty"):
        check_trainable([_src("a", [], reals)], sbi=True)
    with pytest.raises(DatasetError, match="no real"):
        check_trainable([_src("a", fakes)], sbi=True)
    with pytest.raises(DatasetError, match="only real"):
        check_trainable([_src("a", reals)], sbi=False)
    check_trainable([_src("a", reals)], sbi=True)  # self-blends are the fakes
    check_trainable([_src("a", fakes), _src("b", reals)], sbi=False)  # classes may come from two sources
    check_trainable([_src("a", reals + fakes)], sbi=False)


def _units(sizes: list[tuple[int, int]], sbi: bool = True):
    """Items as build_datasets lays them out: every source's train items, then one self-blend per real."""
    source_of, labels = [], []
    for k, (n_real, n_fake) in enumerate(sizes):
        source_of += [k] * (n_real + n_fake)
        labels += [REAL] * n_real + [FAKE] * n_fake
    is_sbi = [False] * len(labels)
    if sbi:
        reals = [i for i, y in enumerate(labels) if y == REAL]
        source_of += [source_of[i] for i in reals]
        labels += [FAKE] * len(reals)
        is_sbi += [True] * len(reals)
    return np.array(source_of), np.array(labels), np.array(is_sbi)


def test_balance_weights_big_source_does_not_dominate():
    """1000 items against 10: three units (two sources with fakes, the self-blends), one third each,
    half real and half fake inside each."""
    src, y, sb = _units([(500, 500), (5, 5)])
    w = balance_weights(src.tolist(), y.tolist(), sb.tolist(), 2)
    assert w.shape == (len(y),) and (w >= 0).all() and w.sum() == pytest.approx(1.0)
    n_reals = 505
    third = 1 / 3
    fake0, fake1 = (src == 0) & (y == FAKE) & ~sb, (src == 1) & (y == FAKE) & ~sb
    assert w[fake0].sum() == pytest.approx(third / 2) and w[fake1].sum() == pytest.approx(third / 2)
    assert w[sb].sum() == pytest.approx(third / 2)
    # a real of source k: half its source unit's share over its reals, plus half the SBI unit's over all reals
    r0, r1 = (src == 0) & (y == REAL) & ~sb, (src == 1) & (y == REAL) & ~sb
    assert np.allclose(w[r0], third / 2 / 500 + third / 2 / n_reals)
    assert np.allclose(w[r1], third / 2 / 5 + third / 2 / n_reals)
    assert w[y == REAL].sum() == pytest.approx(0.5) and w[y == FAKE].sum() == pytest.approx(0.5)
    # the small source (1 % of the genuine items) gets at least a third of the draws
    assert w[(src == 1) & ~sb].sum() >= third
    assert w[(src == 0) & ~sb].sum() <= 2 * third
    # uniform within each (source, class, sbi) cell
    for m in (fake0, fake1, sb & (src == 0), sb & (src == 1)):
        assert np.ptp(w[m]) < 1e-15


def test_balance_weights_real_only_source_counts_only_through_sbi():
    src, y, sb = _units([(20, 30), (40, 0)])
    w = balance_weights(src.tolist(), y.tolist(), sb.tolist(), 2)
    assert w.sum() == pytest.approx(1.0)
    # units: source 0 (genuine fakes) and the self-blends: a half each
    assert w[(y == FAKE) & ~sb].sum() == pytest.approx(0.25)
    assert w[sb].sum() == pytest.approx(0.25)
    r1 = (src == 1) & (y == REAL)
    assert np.allclose(w[r1], 0.25 / 60)  # only the SBI unit's real half, over all 60 reals
    assert np.allclose(w[(src == 0) & (y == REAL)], 0.25 / 20 + 0.25 / 60)
    assert w[y == REAL].sum() == pytest.approx(0.5)


def test_balance_weights_without_sbi_and_errors():
    src, y, sb = _units([(100, 10), (3, 300)], sbi=False)
    w = balance_weights(src.tolist(), y.tolist(), sb.tolist(), 2)
    for k in (0, 1):
        for lab in (REAL, FAKE):
            assert w[(src == k) & (y == lab)].sum() == pytest.approx(0.25)
    # item order does not matter: the weights follow the items
    perm = np.random.default_rng(0).permutation(len(y))
    assert np.allclose(balance_weights(src[perm].tolist(), y[perm].tolist(), sb[perm].tolist(), 2), w[perm])
    with pytest.raises(DatasetError):
        balance_weights([], [], [], 0)
    with pytest.raises(DatasetError):  # only reals and no self-blends: nothing to draw against
        balance_weights([0, 0], [REAL, REAL], [False, False], 1)


def test_video_key():
    # numbered frames in a folder -> the folder (from the source, else the path)
    crop = _s("/out/crops/real/fadg0/sa1/001.png", source="/d/real/fadg0/sa1/001.jpg", group="fadg0")
    assert video_key(crop) == "/d/real/fadg0/sa1"
    assert video_key(_s("/d/real/fadg0/sa1/002.jpg", group="fadg0")) == "/d/real/fadg0/sa1"
    # a video file -> itself (crops of its frames, or the video sample)
    assert video_key(_s("/out/crops/v_f000003.png", FAKE, "v", source="/d/v.mp4")) == "/d/v.mp4"
    assert video_key(_s("/d/clip.MP4", FAKE)) == "/d/clip.MP4"
    # a named image -> itself
    assert video_key(_s("/out/crops/alice.png", source="/d/alice.jpg", group="alice")) == "/d/alice.jpg"
    assert video_key(_s("/d/bob.jpg")) == "/d/bob.jpg"  # no source: the image itself
    # two named images -> two videos; frames of one folder -> one
    keys = {video_key(_s(f"/d/x/{n}.jpg")) for n in ("a", "b")}
    assert len(keys) == 2
    assert len({video_key(_s(f"/d/x/{f:03d}.jpg")) for f in range(3)}) == 1


def test_video_key_named_images_of_one_person_stay_apart():
    a = _s("/d/real/p1_smile.jpg", group="p1")
    b = _s("/d/real/p1_frown.jpg", group="p1")
    assert video_key(a) != video_key(b)


def test_eval_sets():
    both = _src("both", [], val=[_s("/a/r.png", REAL), _s("/a/f.png", FAKE)])
    reals = _src("reals", [], val=[_s("/b/r1.png", REAL), _s("/b/r2.png", REAL)])
    fakes = _src("fakes", [], val=[_s("/c/f.png", FAKE)])
    out = eval_sets([both, reals, fakes], "val")
    assert list(out) == ["both", SBI_SET]
    assert out["both"] == both.parts["val"]
    assert [s.path for s in out[SBI_SET]] == ["/a/r.png", "/b/r1.png", "/b/r2.png"]  # all reals of the part
    assert list(eval_sets([both, reals, fakes], "val", sbi=False)) == ["both"]
    assert eval_sets([both, reals], "test") == {}
    assert list(eval_sets([fakes], "val")) == []


# ================================================================================================
# train.trainer: WeightedEpochSampler, per-source validate
# ================================================================================================
def test_weighted_epoch_sampler_seeding():
    from train.trainer import WeightedEpochSampler

    w = [0.1, 0.2, 0.3, 0.4]
    a, b = WeightedEpochSampler(w, 50, seed=3), WeightedEpochSampler(w, 50, seed=3)
    assert len(a) == 50 and list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first
    b.set_epoch(5)
    b.set_epoch(1)  # depends on (seed, epoch) only, not on what came before
    assert list(b) == list(a)
    assert list(WeightedEpochSampler(w, 50, seed=4)) != first


def test_weighted_epoch_sampler_follows_the_weights():
    from train.trainer import WeightedEpochSampler

    w = np.array([1.0, 2.0, 7.0, 0.0])  # need not sum to 1
    draws = np.array(list(WeightedEpochSampler(w, 40_000, seed=0)))
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(freq, w / w.sum(), atol=0.01)
    assert freq[3] == 0  # weight 0: never drawn


@pytest.mark.parametrize("bad", [[], [0.0, 0.0], [-1.0, 2.0], [float("nan"), 1.0], [float("inf"), 1.0],
                                 [[1.0, 2.0]]])
def test_weighted_epoch_sampler_bad_weights(bad):
    from train.trainer import WeightedEpochSampler

    with pytest.raises(DatasetError):
        WeightedEpochSampler(bad, 10)


def _score_loader(scores, labels):
    from torch.utils.data import TensorDataset

    from train.trainer import make_loader

    x = torch.logit(torch.tensor(scores, dtype=torch.float64)).float()
    return make_loader(TensorDataset(x, torch.tensor(labels)), batch_size=3, train=False)


def _predict(x):  # logits (0, z): softmax[:, 1] = sigmoid(z) = the score the loader encoded
    return torch.stack([torch.zeros_like(x), x], dim=1)


def test_validate_mean_of_per_source_aucs_not_pooled():
    from train.metrics import auc
    from train.trainer import validate

    a = ([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])  # AUC 1
    b = ([0.8, 0.9, 0.85, 0.95], [0, 0, 1, 1])  # AUC 3/4
    c = ([0.5, 0.6], [0, 0])  # one class: no AUC, left out of the mean
    loaders = {"a": _score_loader(*a), "b": _score_loader(*b), "c": _score_loader(*c)}
    m, scores, labels = validate(_predict, loaders, torch.device("cpu"), threshold=0.5)
    assert m["val_auc_a"] == pytest.approx(1.0) and m["val_auc_b"] == pytest.approx(0.75)
    assert math.isnan(m["val_auc_c"])
    assert m["val_auc"] == pytest.approx(0.875) and m["val_min_auc"] == pytest.approx(0.75)
    pooled = auc(scores, labels)
    assert pooled == pytest.approx(15 / 24) and abs(pooled - m["val_auc"]) > 0.2  # not the pooled AUC
    assert m["val_n"] == 10 and len(scores) == 10
    assert np.allclose(scores, a[0] + b[0] + c[0], atol=1e-6) and labels.tolist() == a[1] + b[1] + c[1]
    assert m["val_acc_a"] == pytest.approx(0.5) and m["val_acc_b"] == pytest.approx(0.5)
    assert m["val_acc_c"] == pytest.approx(0.0)
    # a single loader: the plain keys
    m1, _, _ = validate(_predict, _score_loader(*b), torch.device("cpu"), threshold=0.5)
    assert m1["val_auc"] == pytest.approx(0.75) and m1["val_n"] == 4 and "val_auc_b" not in m1


# ================================================================================================
# train.data.samples: person / split columns
# ================================================================================================
def test_csv_manifest_person_group_and_split(tmp_path):
    from train.data.samples import read_csv_manifest

    f = _write_csv(tmp_path / "labels.csv", ["path", "label", "person", "group", "split"], [
        ["fake/fadg0/sa1/001.jpg", "fake", "fadg0", "", "train"],
        ["real/fadg0/sa1/001.jpg", "REAL", "fadg0", "", "Train"],
        ["real/mwbt0/sa1/001.jpg", "0", "mwbt0", "", "val"],
        ["real/x/1.jpg", "real", "px", "vid9", "test"],  # group wins over person
        ["real/y.jpg", "real", "", "", ""],  # neither: the stem; no split
    ])
    s = read_csv_manifest(f)
    assert [x.group for x in s] == ["fadg0", "fadg0", "mwbt0", "vid9", "y"]
    assert [x.split for x in s] == ["train", "train", "val", "test", None]
    assert [x.label for x in s] == [FAKE, REAL, REAL, REAL, REAL]
    assert s[0].path == str(tmp_path / "fake/fadg0/sa1/001.jpg")
    _write_csv(tmp_path / "bad.csv", ["path", "label", "person", "split"], [["a.jpg", "real", "p", "dev"]])
    with pytest.raises(DatasetError, match="dev"):
        read_csv_manifest(tmp_path / "bad.csv")
    # no person/split columns: as before
    _write_csv(tmp_path / "old.csv", ["path", "label"], [["a/b.jpg", "fake"]])
    (old,) = read_csv_manifest(tmp_path / "old.csv")
    assert old.group == "b" and old.split is None


def test_read_extraction_split_column(tmp_path):
    from edge.faces.extract import _OLD_COLUMNS, MANIFEST_COLUMNS
    from train.data.samples import read_extraction

    rows = [{"path": "crops/a.png", "label": "real", "group": "p1", "source": "/d/a.jpg", "split": "train"},
            {"path": "crops/b.png", "label": "fake", "group": "p2", "source": "/d/b.jpg", "split": "VAL"},
            {"path": "crops/c.png", "label": "fake", "group": "p2", "source": "/d/c.jpg", "split": ""},
            {"path": "", "label": "real", "group": "p3", "source": "/d/e.jpg", "error": "no face detected",
             "split": "bogus-but-skipped"}]

    def write(d: Path, columns, rs):
        d.mkdir()
        with open(d / "manifest.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="", extrasaction="ignore")
            w.writeheader()
            w.writerows(rs)
        return d

    s = read_extraction(write(tmp_path / "new", MANIFEST_COLUMNS, rows))
    assert [x.split for x in s] == ["train", "val", None] and [x.group for x in s] == ["p1", "p2", "p2"]
    old = read_extraction(write(tmp_path / "old", _OLD_COLUMNS, rows))  # before the split column
    assert [x.split for x in old] == [None, None, None]
    with pytest.raises(DatasetError, match="holdout"):
        read_extraction(write(tmp_path / "bad", MANIFEST_COLUMNS, [{**rows[0], "split": "holdout"}]))


# ================================================================================================
# edge.faces.extract: labels.csv beside the media, old manifests
# ================================================================================================
def test_source_labels(tmp_path):
    from edge.faces.extract import source_labels

    assert source_labels(tmp_path) == {}  # no labels.csv
    _write_csv(tmp_path / "labels.csv", ["path", "label", "person", "method", "split"], [
        ["real/a.jpg", "REAL", "p1", "", "train"],
        ["./b.jpg", "1", "p2", "FaceSwap", "VAL"],
        ["c.jpg", "fake", "", "", ""]])
    got = source_labels(tmp_path)
    a, b, c = (str((tmp_path / r).absolute()) for r in ("real/a.jpg", "b.jpg", "c.jpg"))
    assert got == {a: {"label": "real", "group": "p1", "split": "train", "method": ""},
                   b: {"label": "fake", "group": "p2", "split": "val", "method": "FaceSwap"},
                   c: {"label": "fake", "group": "", "split": "", "method": ""}}
    assert source_labels(tmp_path / "labels.csv") == {}  # a file, not a folder
    _write_csv(tmp_path / "x" / "labels.csv", ["file", "class"], [["a.jpg", "real"]])
    assert source_labels(tmp_path / "x") == {}  # not a path,label manifest
    _write_csv(tmp_path / "y" / "labels.csv", ["path", "label"], [["a.jpg", "real"], ["b.jpg", "maybe"]])
    with pytest.raises(InputError, match="line 3"):
        source_labels(tmp_path / "y")
    _write_csv(tmp_path / "z" / "labels.csv", ["path", "label", "split"], [["a.jpg", "real", "dev"]])
    with pytest.raises(InputError, match="dev"):
        source_labels(tmp_path / "z")


def test_source_labels_reads_what_read_csv_manifest_reads(tmp_path):
    from edge.faces.extract import source_labels
    from train.data.samples import read_csv_manifest

    (tmp_path / "labels.csv").write_text("path, label, person, split\na.jpg, real, p1, val\n")
    (s,) = read_csv_manifest(tmp_path / "labels.csv")
    assert (s.group, s.split) == ("p1", "val")
    assert source_labels(tmp_path)[str((tmp_path / "a.jpg").absolute())]["group"] == "p1"


def _small_face(src: Path, dst: Path, side: int = 256) -> Path:
    img = cv2.resize(cv2.imread(str(src)), (side, side), interpolation=cv2.INTER_AREA)
    dst.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst), img)
    return dst


def _manifest(out: Path) -> tuple[tuple[str, ...], list[dict]]:
    with open(out / "manifest.csv", newline="") as f:
        r = csv.DictReader(f)
        return tuple(r.fieldnames), list(r)


def test_extract_with_labels_csv(tmp_path, london_neutral, yunet_model):
    from edge.faces.extract import MANIFEST_COLUMNS, extract_faces
    from train.data.samples import load_samples

    src = tmp_path / "src"
    _small_face(london_neutral[0], src / "real" / "a.jpg")  # the CSV says fake: it wins over the folder name
    _small_face(london_neutral[1], src / "b.jpg")
    _small_face(london_neutral[2], src / "c.jpg")
    _write_csv(src / "labels.csv", ["path", "label", "person", "split"], [
        ["real/a.jpg", "fake", "p1", "train"], ["b.jpg", "real", "p2", "val"], ["c.jpg", "0", "p1", ""]])
    out = tmp_path / "out"
    summary = extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False)
    assert summary.files == 3 and summary.faces == 3 and summary.ignored == 1  # labels.csv is not media
    header, rows = _manifest(out)
    assert header == MANIFEST_COLUMNS
    by = {Path(r["source"]).name: r for r in rows}
    assert {k: (v["label"], v["group"], v["split"]) for k, v in by.items()} == {
        "a.jpg": ("fake", "p1", "train"), "b.jpg": ("real", "p2", "val"), "c.jpg": ("real", "p1", "")}
    samples = {Path(s.source).name: s for s in load_samples(out)}
    assert {k: (s.label, s.group, s.split) for k, s in samples.items()} == {
        "a.jpg": (FAKE, "p1", "train"), "b.jpg": (REAL, "p2", "val"), "c.jpg": (REAL, "p1", None)}
    # label= still overrides the CSV's label; the CSV's person and split stay
    out2 = tmp_path / "out2"
    extract_faces(src, out2, detector_model=yunet_model, workers=0, progress=False, label="real")
    _, rows2 = _manifest(out2)
    assert {(r["label"], r["group"], r["split"]) for r in rows2} == {("real", "p1", "train"), ("real", "p2", "val"),
                                                                    ("real", "p1", "")}


def test_extract_resumes_an_old_manifest_without_split(tmp_path, london_neutral, yunet_model):
    from edge.faces.extract import _OLD_COLUMNS, extract_faces
    from train.data.samples import read_extraction

    src, out = tmp_path / "src", tmp_path / "out"
    _small_face(london_neutral[0], src / "real" / "a.jpg")
    _small_face(london_neutral[1], src / "real" / "b.jpg")
    extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False)
    _, rows = _manifest(out)
    with open(out / "manifest.csv", "w", newline="") as f:  # as an older ffd wrote it
        w = csv.DictWriter(f, fieldnames=_OLD_COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    _small_face(london_neutral[2], src / "real" / "c.jpg")
    _write_csv(src / "labels.csv", ["path", "label", "person", "split"], [["real/c.jpg", "real", "p9", "val"]])
    summary = extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False)
    assert summary.skipped == 2 and summary.files == 1 and summary.faces == 1
    header, rows = _manifest(out)
    assert header == _OLD_COLUMNS  # unchanged: appended rows fit it
    with open(out / "manifest.csv", newline="") as f:
        assert {len(r) for r in csv.reader(f)} == {len(_OLD_COLUMNS)}
    assert [Path(r["source"]).name for r in rows] == ["a.jpg", "b.jpg", "c.jpg"]
    assert rows[2]["group"] == "p9" and rows[2]["label"] == "real"
    samples = read_extraction(out)
    assert len(samples) == 3 and all(s.split is None for s in samples)


# ================================================================================================
# train.recipes: build_model, build_datasets
# ================================================================================================
def test_build_model_without_pretrained_weights(no_downloads, tmp_path):
    from train.recipes import build_model

    for p in ("none", None, False, "", "no", "auto"):
        net, init = build_model("student_tiny", {}, p)
        assert init == "random" and isinstance(net, torch.nn.Module)
    for p in (True, "some/file.pth", str(tmp_path)):
        with pytest.raises(ConfigError, match="no pretrained weights"):
            build_model("student_tiny", {}, p)
    with pytest.raises(ConfigError, match="model_kwargs"):
        build_model("student_tiny", {"pretrained": False}, "none")


def _mnv2_file(shared: Path) -> Path:
    from train.pretrained import get_pretrained_cfg

    f = shared / "models" / get_pretrained_cfg("mobilenetv2_100").file_name
    if not f.is_file():
        pytest.skip(f"{f.name} missing in {f.parent}")
    return f


def test_build_model_mobilenetv2_pretrained(no_downloads, shared, monkeypatch):
    import os

    from train.recipes import build_model

    f = _mnv2_file(shared)
    ref = torch.load(f, map_location="cpu", weights_only=True)["features.0.0.weight"]
    net, init = build_model("mobilenetv2_100", {}, str(f.parent))  # a folder of weight files
    assert "imagenet" in init and str(f.parent) in init
    assert torch.equal(net.state_dict()["features.0.0.weight"], ref)
    assert "FFD_WEIGHTS" not in os.environ  # the folder was only borrowed
    net, init = build_model("mobilenetv2_100", {}, str(f))  # the file itself
    assert init == f"imagenet ({f.name})" and torch.equal(net.state_dict()["features.0.0.weight"], ref)
    net, init = build_model("mobilenetv2_100", {}, "none")
    assert init == "random" and not torch.equal(net.state_dict()["features.0.0.weight"], ref)
    monkeypatch.setenv("FFD_WEIGHTS", str(f.parent))
    for p in (True, "auto"):
        net, init = build_model("mobilenetv2_100", {}, p)
        assert init == "imagenet" and torch.equal(net.state_dict()["features.0.0.weight"], ref)
    with pytest.raises(ConfigError, match="model_kwargs"):
        build_model("mobilenetv2_100", {"pretrained": True})


def test_build_datasets_per_source(tmp_path):
    """Two sources: a CSV manifest with official person splits (real and fake) and a real-only folder."""
    from train.recipes import TrainData, build_datasets

    rows = []
    for k, (lab, split) in enumerate([("real", "train"), ("fake", "train"), ("real", "train"), ("fake", "train"),
                                      ("real", "val"), ("fake", "val"), ("real", "test"), ("fake", "test")]):
        for f in range(2):
            rel = f"{lab}/p{k}/{f:03d}.png"
            _png(tmp_path / "alpha" / rel, 10 * k + f)
            rows.append([rel, lab, f"p{k}", split])
    csv_path = _write_csv(tmp_path / "alpha" / "labels.csv", ["path", "label", "person", "split"], rows)
    for k in range(6):
        _png(tmp_path / "bee" / f"face{k}.png", 100 + k)
    data = [f"alpha={csv_path}", f"bee=real:{tmp_path / 'bee'}"]
    with pytest.warns(EllipseMaskWarning):
        td = build_datasets(data, PreprocessSpec(size=32), sbi=True, seed=0, val=0.1, test=0.2, cache=False,
                            augment=False)
    assert isinstance(td, TrainData) and [s.name for s in td.sources] == ["alpha", "bee"]
    alpha, bee = td.sources
    assert {s.group for s in alpha.parts["test"]} == {"p6", "p7"}
    assert {s.group for s in alpha.parts["val"]} == {"p4", "p5"}
    # per-source validation sets: alpha (both classes) and the self-blends of every val real; bee has no fakes
    assert "alpha" in td.val and SBI_SET in td.val and "bee" not in td.val
    assert len(td.val["alpha"]) == 4
    n_val_reals = sum(s.label == REAL for src in td.sources for s in src.parts["val"])
    assert len(td.val[SBI_SET]) == 2 * n_val_reals
    # weights: one per training item (genuine items, then a self-blend per real), balanced per unit
    n_train = sum(len(s.parts["train"]) for s in td.sources)
    n_reals = sum(s.label == REAL for src in td.sources for s in src.parts["train"])
    assert len(td.train) == n_train + n_reals and td.weights.shape == (len(td.train),)
    assert td.weights.sum() == pytest.approx(1.0) and (td.weights > 0).all()
    labels = np.array(td.train.labels)
    genuine_fake = np.zeros(len(labels), bool)
    genuine_fake[:n_train] = labels[:n_train] == FAKE
    assert td.weights[genuine_fake].sum() == pytest.approx(0.25)  # units: alpha and the self-blends
    assert td.weights[n_train:].sum() == pytest.approx(0.25)
    bee_items = np.arange(len(alpha.parts["train"]), n_train)
    assert len(bee_items) and np.allclose(td.weights[bee_items], 0.25 / n_reals)  # only through the SBI unit
    # summary and the old (train, val, summary) unpacking
    assert set(td.summary["sources"]) == {"alpha", "bee"} and td.summary["val_sets"]["alpha"] == 4
    train, val, summary = td
    assert train is td.train and val is td.val and summary is td.summary
    x, y = td.val["alpha"][0]
    assert tuple(x.shape) == (3, 32, 32) and y in (REAL, FAKE)
    x, y = td.train[len(td.train) - 1]  # a self-blend
    assert tuple(x.shape) == (3, 32, 32) and y == FAKE


# ================================================================================================
# train.models.teacher: teacher_dual_lite2
# ================================================================================================
@pytest.fixture(scope="module")
def lite2_teacher():
    from train.registry import create_model

    torch.manual_seed(0)
    return create_model("teacher_dual_lite2").eval()


def test_teacher_dual_lite2_size_and_features(lite2_teacher):
    from train.registry import create_model

    t = lite2_teacher
    n_t = sum(p.numel() for p in t.parameters())
    n_s = sum(p.numel() for p in create_model("mobilenetv2_100").parameters())
    assert n_s <= n_t / 3, (n_s, n_t)
    assert t.feature_dims == {"spatial": 1280, "freq": 1280} and t.num_features == 2560
    assert t.feature_reduction == 32


def test_teacher_dual_lite2_forward_64px(lite2_teacher):
    t = lite2_teacher
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = t.forward_features(x)
        logits = t(x)
        heads = t.forward_branch_heads(feats)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {"spatial": (2, 1280, 2, 2), "freq": (2, 1280, 2, 2)}
    assert tuple(logits.shape) == (2, 2) and torch.isfinite(logits).all()
    assert {k: tuple(v.shape) for k, v in heads.items()} == {"spatial": (2, 2), "freq": (2, 2)}
    assert torch.allclose(t.forward_head(feats), logits)


def test_teacher_dual_lite2_refuses_one_weight_file(no_downloads):
    from train.recipes import build_model
    from train.registry import create_model

    with pytest.raises(ConfigError, match="two weight files"):
        create_model("teacher_dual_lite2", pretrained="some/file.pth")
    with pytest.raises(ConfigError, match="two weight files"):
        build_model("teacher_dual_lite2", {}, "some/file.pth")
    with pytest.raises(ConfigError, match="freq"):
        create_model("teacher_dual_lite2", freq="wavelet")


# ================================================================================================
# train.evaluate report_sets / format_table, train.checkpoint update_card
# ================================================================================================
def _scored():
    """Two real and two fake videos of 3 numbered frames; frame AUC < 1, video AUC = 1."""
    frames = {("real", "v1"): [0.1, 0.6, 0.2], ("real", "v2"): [0.3, 0.3, 0.3],
              ("fake", "v3"): [0.5, 0.9, 0.4], ("fake", "v4"): [0.7, 0.2, 0.9]}
    samples, scores = [], []
    for (lab, v), ss in frames.items():
        for f, s in enumerate(ss):
            samples.append(_s(f"/out/crops/{lab}/{v}/{f:03d}.png", REAL if lab == "real" else FAKE, v,
                              source=f"/d/{lab}/{v}/{f:03d}.jpg", method="" if lab == "real" else "Deepfakes"))
            scores.append(s)
    return np.array(scores), np.array([s.label for s in samples]), samples


def test_report_sets_and_format_table():
    from train.evaluate import format_table, report_sets, summary_figures

    s, y, samples = _scored()
    reals = [x for x in samples if x.label == REAL]
    sbi_samples = reals + [replace(x, label=FAKE, method="sbi") for x in reals]
    sbi_scores = np.concatenate([s[y == REAL], s[y == REAL] + 0.05])
    rep = report_sets({"alpha": (s, y, samples), SBI_SET: (sbi_scores, np.array([x.label for x in sbi_samples]),
                                                            sbi_samples)}, threshold=0.5)
    pos, neg = s[y == 1], s[y == 0]
    brute = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    a = rep["alpha"]
    assert a["frame"]["auc"] == pytest.approx(brute) and brute < 1
    assert a["video"]["auc"] == pytest.approx(1.0)  # frames of a folder average into one video
    assert (a["n_real"], a["n_fake"], a["n_videos"]) == (6, 6, 4)
    assert set(a["per_method"]) == {"Deepfakes"}
    b = rep[SBI_SET]
    assert (b["n_real"], b["n_fake"], b["n_videos"]) == (6, 6, 4)  # a real video and its blends: two videos
    assert b["video"]["auc"] == pytest.approx(1.0) and set(b["per_method"]) == {"sbi"}
    table = format_table(rep).splitlines()
    assert len(table) == 3 and table[0].split()[0] == "source"
    assert table[1].split()[:3] == ["alpha", "12", "4"] and f"{brute:.4f}" in table[1]
    assert table[2].split()[0] == SBI_SET
    figs = summary_figures(rep)
    assert figs["alpha"] == {"frame_auc": round(brute, 4), "video_auc": 1.0, "n_real": 6, "n_fake": 6}


def test_update_card_round_trip(tmp_path):
    from train.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, update_card
    from train.evaluate import record_in_checkpoint, report_sets, summary_figures
    from train.registry import create_model

    torch.manual_seed(0)
    net = create_model("student_tiny")
    card = ModelCard("student_tiny", spec=PreprocessSpec(size=32), threshold=0.4, extra={"role": "student"})
    path = save_checkpoint(tmp_path / "best.pt", net, card, metrics={"val_auc": 0.9}, config={"lr": 0.01},
                           train_state={"epoch": 2})
    new = update_card(path, lambda e: {**e, "note": "hello"})
    assert new.extra == {"role": "student", "note": "hello"}
    blob = read_checkpoint(path)
    assert blob["card"] == new and blob["card"].threshold == 0.4 and blob["card"].spec == PreprocessSpec(size=32)
    assert blob["metrics"] == {"val_auc": 0.9} and blob["config"] == {"lr": 0.01}
    assert blob["train_state"] == {"epoch": 2}
    assert not list(tmp_path.glob("*.tmp"))
    s, y, samples = _scored()
    report = report_sets({"alpha": (s, y, samples)}, 0.5)
    record_in_checkpoint(path, report)
    record_in_checkpoint(path, report, key="val")
    model, card2, _ = load_checkpoint(path)
    assert card2.extra["eval"] == {"test": summary_figures(report), "val": summary_figures(report)}
    assert card2.extra["note"] == "hello" and card2.extra["role"] == "student"
    for k, v in net.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)


def test_teacher_dual_lite2_from_a_weights_folder(no_downloads, shared):
    """build_model with the shared weights folder initialises both bodies; the 12-channel freq stem is adapted."""
    from train.pretrained import get_pretrained_cfg
    from train.recipes import build_model

    files = [shared / "models" / get_pretrained_cfg(n).file_name for n in ("efficientnet_lite2", "mobilenetv2_100")]
    if not all(f.is_file() for f in files):
        pytest.skip(f"weights missing in {shared / 'models'}")
    net, init = build_model("teacher_dual_lite2", {}, str(shared / "models"))
    assert "imagenet" in init
    mnv2 = torch.load(files[1], map_location="cpu", weights_only=True)
    sd = net.state_dict()
    assert torch.equal(sd["freq.features.1.conv.1.weight"], mnv2["features.1.conv.1.weight"])  # a deeper layer
    stem = sd["freq.features.0.0.weight"]
    assert tuple(stem.shape[:2]) == (32, 12)
    assert torch.allclose(stem[:, :3], mnv2["features.0.0.weight"] * 3 / 12)  # RGB filters repeated, scaled
    with torch.no_grad():
        assert tuple(net.eval()(torch.randn(1, 3, 64, 64)).shape) == (1, 2)


def test_extract_groups_numbered_frames_by_their_folder(tmp_path, london_neutral, yunet_model):
    from edge.faces.extract import extract_faces

    src, out = tmp_path / "src", tmp_path / "out"
    _small_face(london_neutral[0], src / "real" / "vid1" / "001.jpg")
    _small_face(london_neutral[1], src / "real" / "vid1" / "002.jpg")
    _small_face(london_neutral[2], src / "real" / "vid2" / "001.jpg")
    extract_faces(src, out, detector_model=yunet_model, workers=0, progress=False)
    _, rows = _manifest(out)
    g = {str(Path(r["source"]).relative_to(src.absolute())): r["group"] for r in rows}
    assert g["real/vid1/001.jpg"] == g["real/vid1/002.jpg"]
    assert g["real/vid1/001.jpg"] != g["real/vid2/001.jpg"]
