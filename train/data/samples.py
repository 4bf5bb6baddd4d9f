"""Dataset readers: one list of :class:`Sample` from any supported layout (pure Python, no torch).

``load_samples(path)`` recognises, in this order:

* an **extraction folder** written by ``ffd faces extract`` (``manifest.csv`` + ``spec.json``;
  error rows are skipped; crops keep their 5-point and dense landmarks in crop pixels);
* a **CSV manifest** (``path,label[,group,method,...]``; labels ``real/fake``, ``REAL/FAKE`` or
  ``0/1``; paths relative to the CSV) -- e.g. ``ciplab_real_fake_160/labels.csv``;
* **FaceForensics++** (Rössler et al., ICCV 2019): ``original_sequences/youtube/<comp>/videos``,
  ``manipulated_sequences/<Method>/<comp>/videos`` and the official ``splits/{train,val,test}.json``;
* **Celeb-DF v2** (Li et al., CVPR 2020): ``Celeb-real``, ``YouTube-real``, ``Celeb-synthesis`` and
  ``List_of_testing_videos.txt``;
* a folder with ``real/`` and ``fake/`` subfolders of images;
* a plain folder of images when ``label=`` says what they are (e.g. real faces for SBI training).

Every sample carries a ``group``: the unit that must never straddle a train/val/test split
(a video, or an identity where the layout tells it; see :mod:`train.data.split`). FF++ and
Celeb-DF samples are videos (``source`` = video path) still to be extracted with
``ffd faces extract``. Class convention: 0 = real, 1 = fake, -1 = unlabelled.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable

from edge.errors import DatasetError
from edge.media import IMAGE_EXTS, VIDEO_EXTS

REAL, FAKE, UNLABELLED = 0, 1, -1
LAYOUTS = ("extraction folder (manifest.csv + spec.json from `ffd faces extract`)",
           "CSV manifest (path,label[,group,method])",
           "FaceForensics++ (original_sequences/, manipulated_sequences/)",
           "Celeb-DF v2 (Celeb-real/, YouTube-real/, Celeb-synthesis/)",
           "folder with real/ and fake/ subfolders of images",
           "folder of images with label='real' or label='fake'")
_LAYOUT_HINT = "use one of: " + "; ".join(LAYOUTS)
_FFPP_COMPRESSIONS = ("c23", "raw", "c40")  # preference order when compression=None
_LABELS = {"real": REAL, "0": REAL, "fake": FAKE, "1": FAKE, "": UNLABELLED, "-1": UNLABELLED}


@dataclass(frozen=True)
class Sample:
    """One face crop (or a video still to be extracted) with its label and split group.

    ``landmarks`` (5 points) and ``dense_landmarks`` (e.g. 189 WebMorph points) are in the
    pixel coordinates of the file at ``path``. ``split`` is set only where the dataset ships
    an official split (FF++ JSONs, Celeb-DF's test list); it overrides the hash split.
    """

    path: str
    label: int
    group: str
    method: str
    source: str = ""
    frame: int | None = None
    landmarks: tuple | None = None
    dense_landmarks: tuple | None = None
    split: str | None = None

    @property
    def is_video(self) -> bool:
        return Path(self.path).suffix.lower() in VIDEO_EXTS


def parse_label(value: str | int, *, path: str | Path | None = None) -> int:
    """``real``/``fake`` (any case), ``0``/``1`` or empty (unlabelled) -> 0, 1 or -1."""
    key = str(value).strip().lower()
    if key not in _LABELS:
        raise DatasetError(f"unknown label {value!r}", path=path,
                           fix="labels must be real/fake or 0/1 (0 = real, 1 = fake)")
    return _LABELS[key]


def parse_data_arg(arg: str | os.PathLike) -> tuple[Path, str | None]:
    """A data argument (``ffd train --data``) -> (path, forced label): ``real:DIR``/``fake:DIR``
    name a plain folder of one class; anything else is a path with its own labels."""
    s = str(arg)
    for lab in ("real", "fake"):
        if s.startswith(lab + ":"):
            return Path(s[len(lab) + 1:]), lab
    return Path(s), None


def _points(text: str | None) -> tuple | None:
    if not text or not text.strip():
        return None
    pts = json.loads(text)
    if not pts:
        return None
    return tuple(tuple(float(v) for v in p) for p in pts)


def _int_or_none(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(float(text)) if text else None


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [{(k or "").strip(): (v or "") for k, v in row.items()} for row in csv.DictReader(f)]


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file())


def _dense_landmarks_beside(image: Path) -> tuple | None:
    """``<stem>_landmarks.csv`` (``idx,x,y`` rows, as in london_faces) next to an image, if any."""
    from edge.faces.extract import read_dense_landmarks

    pts = read_dense_landmarks(image)
    return None if pts is None else tuple(map(tuple, pts.tolist()))


# --- (a) extraction folder ----------------------------------------------------------------
def read_extraction(root: Path) -> list[Sample]:
    """Crops listed in ``root/manifest.csv``; rows with an error or no crop are skipped. Crops of
    FF++/Celeb-DF videos get the identity groups and official splits of their source videos."""
    out = []
    for row in _read_csv(root / "manifest.csv"):
        if row.get("error", "").strip() or not row.get("path", "").strip():
            continue
        rel = row["path"].strip()
        source = row.get("source", "").strip()
        group = row.get("group", "").strip() or source or Path(rel).stem
        out.append(Sample(
            path=str(root / rel), label=parse_label(row.get("label", ""), path=root / "manifest.csv"),
            group=group, method=row.get("method", "").strip(), source=source,
            frame=_int_or_none(row.get("frame")), landmarks=_points(row.get("landmarks")),
            dense_landmarks=_points(row.get("dense_landmarks")), split=_row_split(row, root / "manifest.csv")))
    return assign_identity_groups(out)


# --- (b) CSV manifest ---------------------------------------------------------------------
def read_csv_manifest(csv_path: Path) -> list[Sample]:
    """``path,label[,group,method,source,frame,split]``; without ``group`` (or ``person``) each file stem is its own
    group (so one image listed in two variants, like ciplab's ``full_160``/``face_crops``,
    stays on one side). Add a ``group`` column when several files come from one video."""
    from edge.faces.extract import listed_group

    rows = _read_csv(csv_path)
    if rows and not {"path", "label"} <= set(rows[0]):
        raise DatasetError(f"CSV manifest needs columns path,label; found {sorted(rows[0])}",
                           path=csv_path, fix="add a header line 'path,label[,group,method]'")
    out = []
    for row in rows:
        rel = row["path"].strip()
        p = Path(rel) if os.path.isabs(rel) else csv_path.parent / rel
        label = parse_label(row["label"], path=csv_path)
        method = row.get("method", "").strip() or ("real" if label == REAL else "fake" if label == FAKE else "")
        out.append(Sample(path=str(p), label=label, group=listed_group(row) or Path(rel).stem,
                          method=method, source=row.get("source", "").strip(),
                          frame=_int_or_none(row.get("frame")), split=_row_split(row, csv_path)))
    return out


def _row_split(row: dict[str, str], where: Path) -> str | None:
    """An official split from a ``split`` column (train/val/test), else None (hash split)."""
    from edge.faces.extract import listed_split

    try:
        return listed_split(row) or None
    except ValueError as e:
        raise DatasetError(str(e), path=where, fix="use train, val or test") from e


# --- (c) real/ fake/ folders and plain image folders ----------------------------------------
def _folder_group(image: Path, class_root: Path) -> str:
    """``real/vid7/0001.png`` -> ``vid7`` (frames of a video in a subfolder); ``real/a.jpg`` -> ``a``."""
    rel = image.relative_to(class_root)
    return rel.parts[0] if len(rel.parts) > 1 else image.stem


def read_image_folder(folder: Path, label: int, method: str) -> list[Sample]:
    """Every image under ``folder`` with one label; london-style ``*_landmarks.csv`` are attached."""
    return [Sample(path=str(p), label=label, group=_folder_group(p, folder), method=method,
                   dense_landmarks=_dense_landmarks_beside(p)) for p in _images_under(folder)]


def read_real_fake(root: Path) -> list[Sample]:
    return read_image_folder(root / "real", REAL, "real") + read_image_folder(root / "fake", FAKE, "fake")


# --- (d) FaceForensics++ and (e) Celeb-DF: identity groups and official splits ---------------
def _ffpp_ids(stem: str) -> list[str]:
    """``000`` -> [000]; ``000_003`` -> [000, 003]; DFD ``01_02__scene__X`` -> [01, 02]."""
    return [s for s in stem.split("__")[0].split("_") if s]


def _pick_compression(method_dir: Path, compression: str | None) -> Path | None:
    order = (compression,) if compression else _FFPP_COMPRESSIONS
    for c in order:
        if (method_dir / c / "videos").is_dir():
            return method_dir / c / "videos"
    return None


def _ffpp_official_split(root: Path) -> dict[str, str]:
    """id -> split from ``splits/{train,val,test}.json`` (lists of id pairs), if present."""
    out: dict[str, str] = {}
    for name in ("train", "val", "test"):
        for cand in (root / "splits" / f"{name}.json", root / f"{name}.json"):
            if cand.is_file():
                try:
                    pairs = json.loads(cand.read_text())
                except json.JSONDecodeError as e:
                    raise DatasetError(f"official split file is not valid JSON: {e}", path=cand,
                                       fix="restore the FF++ split JSON (a list of [id, id] pairs)") from e
                for pair in pairs:
                    for i in (pair if isinstance(pair, list) else [pair]):
                        out[str(i)] = name
                break
    return out


def _celebdf_test_list(root: Path) -> set[str] | None:
    listing = root / "List_of_testing_videos.txt"
    if not listing.is_file():
        return None
    return {line.split()[-1].replace("\\", "/") for line in listing.read_text().splitlines() if len(line.split()) >= 2}


class _UnionFind:
    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:  # the smaller id names the component: stable when unrelated files are added
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo


_CELEB_ID = re.compile(r"^(id\d+)_")
_CELEB_DIRS = ("Celeb-real", "YouTube-real", "Celeb-synthesis")


def _video_identity(source: str) -> tuple[str, Path, list[str]] | None:
    """For a video inside FF++ or Celeb-DF: (dataset, root, identity keys); None otherwise."""
    if not source:
        return None
    p = Path(source)
    parts = p.parts
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("original_sequences", "manipulated_sequences") and i + 1 < len(parts) - 1:
            sub = parts[i + 1]
            actors = sub in ("actors", "DeepFakeDetection")
            original = sub == "youtube" or parts[i] == "manipulated_sequences"
            ns = "ff-actors" if actors else "ff" if original else f"ff-{sub}"
            return "ffpp", Path(*parts[:i]) if i else Path("."), [f"{ns}:{x}" for x in _ffpp_ids(p.stem)]
    if len(parts) >= 2 and parts[-2] in _CELEB_DIRS:
        m = _CELEB_ID.match(p.stem)
        return "celebdf", p.parent.parent, [f"celebdf:{m.group(1)}" if m else f"celebdf-yt:{p.stem}"]
    return None


def assign_identity_groups(samples: list[Sample]) -> list[Sample]:
    """Re-group samples whose ``source`` is an FF++ or Celeb-DF video by identity and set official splits.

    FF++: a fake ``000_003`` involves identities ``000`` (target) and ``003`` (source); groups are the
    connected components of "appear in one video", named by the smallest id, so ``000``, ``003``,
    ``000_003`` and ``003_000`` never straddle splits. Official ``splits/*.json`` set ``split``.
    Celeb-DF: the target celebrity (``id0`` for ``id0_0001`` and ``id0_id1_0001``, made from it);
    ``List_of_testing_videos.txt`` marks test, everything else train. Other samples are unchanged.
    """
    info = [_video_identity(s.source) for s in samples]
    uf = _UnionFind()
    for it in info:
        if it and it[0] == "ffpp" and it[2]:
            for k in it[2][1:]:
                uf.union(it[2][0], k)
    ff_splits: dict[Path, dict[str, str]] = {}
    celeb_tests: dict[Path, set[str] | None] = {}
    out = []
    for s, it in zip(samples, info):
        if it is None or not it[2]:
            out.append(s)
            continue
        kind, root, keys = it
        if kind == "ffpp":
            official = ff_splits.setdefault(root, _ffpp_official_split(root))
            names = {official.get(k.split(":", 1)[1]) for k in keys if k.startswith("ff:")}
            split = names.pop() if len(names) == 1 else None
            out.append(replace(s, group=uf.find(keys[0]), split=split or s.split))
        else:
            test = celeb_tests.setdefault(root, _celebdf_test_list(root))
            rel = "/".join(Path(s.source).parts[-2:])
            split = None if test is None else "test" if rel in test else "train"
            out.append(replace(s, group=keys[0], split=split or s.split))
    return out


def read_ffpp(root: Path, compression: str | None = None) -> list[Sample]:
    """FF++ videos: ``original_sequences/<youtube|actors>/<comp>/videos`` (real) and
    ``manipulated_sequences/<Method>/<comp>/videos`` (fake), grouped by identity."""
    out = []
    for top, label in (("original_sequences", REAL), ("manipulated_sequences", FAKE)):
        d = root / top
        for sub in (sorted(p for p in d.iterdir() if p.is_dir()) if d.is_dir() else []):
            videos = _pick_compression(sub, compression)
            method = ("original" if sub.name == "youtube" else sub.name) if label == REAL else sub.name
            out += [Sample(path=str(v), label=label, group=v.stem, method=method, source=str(v))
                    for v in (sorted(videos.glob("*.mp4")) if videos else [])]
    return assign_identity_groups(out)


def read_celebdf(root: Path) -> list[Sample]:
    """Celeb-DF v2 videos, grouped by target celebrity. ``List_of_testing_videos.txt`` uses
    1 = real (the opposite of ours), so labels come from the folder names."""
    out = []
    for folder, label in zip(_CELEB_DIRS, (REAL, REAL, FAKE)):
        out += [Sample(path=str(v), label=label, group=v.stem, method=folder, source=str(v))
                for v in (sorted((root / folder).glob("*.mp4")) if (root / folder).is_dir() else [])]
    return assign_identity_groups(out)


# --- detection and checks -------------------------------------------------------------------
def detect_layout(path: str | os.PathLike) -> str:
    """``extraction``, ``csv``, ``ffpp``, ``celebdf``, ``real_fake`` or ``images``; DatasetError otherwise."""
    p = Path(path)
    if not p.exists():
        raise DatasetError("dataset path does not exist", path=p, fix=_LAYOUT_HINT)
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv"
        raise DatasetError("a dataset file must be a CSV manifest", path=p, fix=_LAYOUT_HINT)
    if (p / "manifest.csv").is_file():
        return "extraction"
    if (p / "original_sequences").is_dir() or (p / "manipulated_sequences").is_dir():
        return "ffpp"
    if any((p / d).is_dir() for d in ("Celeb-real", "Celeb-synthesis", "YouTube-real")):
        return "celebdf"
    if (p / "real").is_dir() or (p / "fake").is_dir():
        return "real_fake"
    if (p / "labels.csv").is_file():
        return "csv"
    if any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir()):
        return "images"
    raise DatasetError("unknown dataset layout", path=p, fix=_LAYOUT_HINT)


def check_samples(samples: list[Sample], path: str | os.PathLike, *, min_classes: int = 1) -> list[Sample]:
    """Raise DatasetError if ``samples`` is empty or has fewer than ``min_classes`` labelled classes."""
    if not samples:
        raise DatasetError("dataset is empty (no readable samples found)", path=path, fix=_LAYOUT_HINT)
    if min_classes >= 2:
        labels = {s.label for s in samples}
        if UNLABELLED in labels:
            n = sum(s.label == UNLABELLED for s in samples)
            raise DatasetError(f"{n} samples have no label but training needs real and fake", path=path,
                               fix="label them (real/fake) or pass label= for a folder of one class")
        if labels != {REAL, FAKE}:
            have = "real" if REAL in labels else "fake"
            raise DatasetError(f"dataset has only {have} samples but training needs both classes", path=path,
                               fix="add the other class, or train with self-blended pseudo-fakes (sbi) "
                                   "from real faces")
    return samples


def load_samples(path: str | os.PathLike, *, label: str | int | None = None, compression: str | None = None,
                 min_classes: int = 1) -> list[Sample]:
    """Read any supported layout (see the module docstring) into a list of samples.

    ``label`` forces one label for every sample (required for a plain folder of images);
    ``compression`` picks FF++'s ``c23``/``c40``/``raw`` (default: first of c23, raw, c40 present);
    ``min_classes=2`` raises unless both real and fake samples are present.
    """
    p = Path(path)
    layout = detect_layout(p)
    if layout == "images" and label is None:
        raise DatasetError("a plain folder of images has no labels", path=p,
                           fix="pass label='real' (or 'fake'), or put the images in real/ and fake/ subfolders")
    readers = {"extraction": lambda: read_extraction(p),
               "csv": lambda: read_csv_manifest(p if p.is_file() else p / "labels.csv"),
               "ffpp": lambda: read_ffpp(p, compression),
               "celebdf": lambda: read_celebdf(p),
               "real_fake": lambda: read_real_fake(p),
               "images": lambda: read_image_folder(p, parse_label(label), str(label).lower())}
    samples = readers[layout]()
    if label is not None:
        forced = parse_label(label)
        samples = [replace(s, label=forced) for s in samples]
    return check_samples(samples, p, min_classes=min_classes)


def summarize(samples: Iterable[Sample]) -> dict[str, int]:
    """Counts per label name and number of groups (for logs and docs)."""
    samples = list(samples)
    names = {REAL: "real", FAKE: "fake", UNLABELLED: "unlabelled"}
    out = {names[k]: sum(s.label == k for s in samples) for k in names}
    out["groups"] = len({s.group for s in samples})
    return out
