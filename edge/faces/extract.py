"""Face extraction: images, videos and folders -> face crops and ``manifest.csv``.

``extract_faces(src, out)`` finds media under ``src`` (recursively), decodes each file
(:mod:`edge.media`: N uniform frames per video, or every k-th), detects faces with the
spec's detector, crops each face with :func:`edge.faces.crop_face` and writes
``out/crops/<path relative to src, no extension>[_f<frame>][_<face>].png`` plus one
manifest row per crop. ``out/spec.json`` records the :class:`~edge.spec.PreprocessSpec`;
an ``out`` made with another spec is refused. Rows are appended and flushed per source
file, so a killed run loses nothing and a re-run skips every source already in the
manifest. Bad input never stops a run: a file that cannot be read gets one row with the
error (and no ``path``), an image or frame without a face gets a ``no face detected`` row.

Labels come from ``label=`` or from the path: a folder named ``real``/``fake``
(case-insensitive), FaceForensics++ ``original_sequences`` (real) and
``manipulated_sequences/<Method>`` (fake, ``method=<Method>``), Celeb-DF ``Celeb-real``,
``YouTube-real`` and ``Celeb-synthesis``. ``group`` is the video or image stem, so splits can
keep the frames of one video together. Images with a ``<stem>_landmarks.csv`` beside them
(``idx,x,y`` in image pixels, as ``london_faces`` ships) get those points mapped into the crop.
With ``landmark_model`` (the OpenSeeFace ONNX file, :mod:`edge.faces.landmarks`) every other face
gets its 66 decoded points, in crop pixels, in the same ``dense_landmarks`` column (annotated
points beside an image win: they are better). ``out/landmarks.json`` records the source of the
dense landmarks -- ``{"model": file name, "sha256": ..., "points": 66}``, or ``{"model": null,
"reason": ...}`` when none was given or it could not be loaded (a one-line warning, the run goes
on; SBI masks then fall back to the ellipse) -- so training can put it in the model card.

Decoding and detection of one source file happen in :func:`_extract_source`, run in worker
processes each holding its own :class:`~edge.faces.FaceDetector` (``workers=0``: in-process).
"""
from __future__ import annotations

import bisect
import contextlib
import csv
import hashlib
import itertools
import json
import os
import re
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import ConfigError, FfdError, InputError
from ..media import RUN_CHECK_FILES, VideoReader, is_video, read_image
from ..outputs import atomic_write_text
from ..spec import PreprocessSpec
from .crop import crop_face, transform_points
from .detector import FaceDetector
from .landmarks import LandmarkModel, LandmarkWarning

MANIFEST = "manifest.csv"
SPEC_FILE = "spec.json"
LANDMARKS_FILE = "landmarks.json"
SKIPPED_FILE = "skipped.csv"  # path,reason of every file under SRC that is not extracted (this run's listing)
CROPS = "crops"
MANIFEST_COLUMNS = ("path", "label", "method", "group", "source", "frame", "time_s", "face_index", "box",
                    "landmarks", "dense_landmarks", "det_score", "error", "split")
_OLD_COLUMNS = MANIFEST_COLUMNS[:-1]  # manifests written before the split column still resume
LABELS_CSV = "labels.csv"
_CSV_LABELS = {"real": "real", "0": "real", "fake": "fake", "1": "fake"}
NO_FACE = "no face detected"
POLICIES = ("largest", "all")
DEFAULT_FRAMES = 32  # frames per video, as DeepfakeBench samples

_REAL_DIRS = {"real", "original_sequences", "celeb-real", "youtube-real"}
_FAKE_DIRS = {"fake", "celeb-synthesis"}


@dataclass
class ExtractSummary:
    """Counts of one run: ``files`` processed now, ``skipped`` already done, ``ignored`` not extracted
    (not media, no decoder, symlink loop...: ``ignored_reasons`` counts them per reason), ``retry``:
    files that timed out or ran out of memory (no row written: the next run retries them)."""

    out: Path
    files: int = 0
    skipped: int = 0
    ignored: int = 0
    faces: int = 0
    no_face: int = 0  # images or video frames without a face
    errors: int = 0  # files that failed (or videos that decoded only in part)
    seconds: float = 0.0
    retry: int = 0
    ignored_reasons: dict = field(default_factory=dict)

    def __str__(self) -> str:
        from ..inputs import printable

        rate = self.files / self.seconds if self.seconds > 0 else 0.0
        why = ", ".join(f"{n} {r.split(' (')[0]}" for r, n in self.ignored_reasons.items())
        return (f"{self.files} files ({rate:.1f} files/s), {self.faces} faces, {self.no_face} without a face, "
                f"{self.errors} errors, " + (f"{self.retry} to retry (timeout or memory), " if self.retry else "")
                + f"{self.skipped} already done, {self.ignored} not media{f' ({why})' if why else ''} -> "
                f"{printable(self.out / MANIFEST)}")


def infer_label(path: str | os.PathLike) -> tuple[str, str]:
    """(label, method) from the nearest folder that names one; ("", "") when none does."""
    parts = Path(path).absolute().parts[:-1]
    for i in range(len(parts) - 1, -1, -1):
        name = parts[i].lower()
        if name == "manipulated_sequences":
            return "fake", (parts[i + 1] if i + 1 < len(parts) else "")
        if name in _REAL_DIRS:
            return "real", ""
        if name in _FAKE_DIRS:
            return "fake", ""
    return "", ""


def find_media(src: Path, exclude: Path | None = None):
    """``(files, listing)``: the image and video files under ``src`` (sorted; symlinked folders followed
    once; OUT = ``exclude`` not walked) and the :class:`edge.inputs.Listing` that says why every other
    file is left out (landmark sidecars are read with their images: not listed)."""
    from ..inputs import list_inputs

    src_abs = src.absolute()

    def sidecar(p: Path) -> bool:
        return p.name.endswith("_landmarks.csv")

    if not src.exists() and not src.is_symlink():
        raise InputError("source not found", path=src, fix="pass an image, a video or a folder")
    listing = list_inputs([src], exclude=[] if exclude is None or exclude.absolute() == src_abs else [exclude],
                          sidecar=sidecar)
    return [p for p, _ in listing.files], listing


def _crop_keys(files: list[Path], src: Path, reserved: Iterable[str] = ()) -> list[str]:
    """Crop-name stem per file: its path relative to src without extension, unique by construction.

    ``reserved``: crop stems an earlier run of this OUT already wrote (its manifest); a stem that is one
    of them, or a prefix of one (``v`` of ``v_f000003``), is a clash too."""
    rels = [Path(f.name) if src.is_file() else f.relative_to(src) for f in files]
    # a name that is not UTF-8 or too long for a crop name (+ frame, face and hash suffixes) gets a
    # clean, short stem and always the hash: crop names are UTF-8 text in manifest.csv and fit NAME_MAX
    odd = [_odd_name(r) for r in rels]
    stems = [_clean_stem(r) if o else r.with_suffix("").as_posix() for r, o in zip(rels, odd)]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    # unique by construction: a stem shared by two files (a.jpg, a.png), or one that could be another
    # file's crop name (an image "v_f000003.jpg" beside the video "v.mp4", "two_1.jpg" beside "two.jpg"
    # with --policy all), gets a short hash of its whole relative path, extension included
    taken = set(stems)
    old = sorted(set(reserved))
    old_set = set(old)

    def used(s: str) -> bool:  # an earlier run wrote crops/<s>.png or crops/<s>_<suffix>.png
        i = bisect.bisect_left(old, s + "_")
        return s in old_set or (i < len(old) and old[i].startswith(s + "_"))

    def clash(s: str) -> bool:
        base = _SUFFIXED.match(s)
        return counts[s] > 1 or (base is not None and base.group(1) in taken) or (bool(old) and used(s))

    keys = [f"{s}_{hashlib.sha1(r.as_posix().encode('utf-8', 'surrogateescape')).hexdigest()[:10]}"
            if o or clash(s) else s for s, r, o in zip(stems, rels, odd)]
    assert len(set(keys)) == len(keys), "crop names must be unique"
    return keys


_MAX_STEM_BYTES = 200  # NAME_MAX is 255 bytes: room for _f000000_NNN, a 10-digit hash and .png


def _odd_name(rel: Path) -> bool:
    """A relative path whose crop name cannot be written as is: not UTF-8, or a last part too long."""
    try:
        rel.as_posix().encode("utf-8")
    except UnicodeEncodeError:
        return True
    return len(os.fsencode(rel.stem)) > _MAX_STEM_BYTES


def _clean_stem(rel: Path) -> str:
    """``rel`` without extension, undecodable bytes as ``_`` and the last part cut to fit (a hash follows)."""
    from ..inputs import safe_text

    parts = [safe_text(p).replace("\\", "_") for p in rel.with_suffix("").parts]
    last = parts[-1].encode("utf-8")[:_MAX_STEM_BYTES].decode("utf-8", "ignore")
    return "/".join([*parts[:-1], last])


_SUFFIXED = re.compile(r"^(.*)_(?:f\d{6}|\d+|[0-9a-f]{10})(?:_\d+)?$")  # a frame, face or hash suffix


def read_dense_landmarks(image_path: Path) -> np.ndarray | None:
    """(K, 2) points from ``<stem>_landmarks.csv`` beside an image (``idx,x,y``), or None."""
    side = image_path.with_name(f"{image_path.stem}_landmarks.csv")
    try:
        if not side.is_file():
            return None
    except OSError:  # a name too long for a sidecar (a 250-byte image name): there can be none
        return None
    try:
        pts = np.loadtxt(side, delimiter=",", skiprows=1, usecols=(1, 2), ndmin=2)
    except ValueError as e:
        raise InputError(f"landmark file is malformed: {e}", path=side, fix="fix or remove the file") from e
    return pts if pts.size else None


def _json(points) -> str:
    return "" if points is None else json.dumps(np.round(np.asarray(points, np.float64), 2).tolist(),
                                                separators=(",", ":"))


# --- per-file work (runs in a worker process) ----------------------------------------------------
_STATE: dict = {}


def _init_worker(spec_json: str, model_path: str | None, out: str, policy: str, n_frames: int | None,
                 every: int | None, landmark_path: str | None = None, landmark_refine: bool = False) -> None:
    """Worker-process initializer: one OpenCV thread, no FFmpeg chatter, its own detector (and landmark model)."""
    import cv2

    from ..signals import worker_signals

    worker_signals()  # Ctrl-C is the parent's to handle: no worker traceback
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    cv2.setNumThreads(1)
    spec = PreprocessSpec.from_json(spec_json)
    _STATE.update(spec=spec, detector=FaceDetector.from_spec(spec, model_path), out=Path(out), policy=policy,
                  n_frames=n_frames, every=every,
                  landmarks=LandmarkModel(landmark_path, threads=1, refine=landmark_refine) if landmark_path else None)


def _face_rows(image: np.ndarray, stem: str, base: dict, dense: np.ndarray | None = None,
               frame: int | str = "", time_s: float | str = "") -> list[dict]:
    import cv2

    spec, out = _STATE["spec"], _STATE["out"]
    where = {"frame": frame, "time_s": "" if time_s == "" else round(float(time_s), 3)}
    dets = _STATE["detector"].detect(image)  # its failure is a ModelError (the run stops) or an OutOfMemoryError
    if not dets:
        return [{**base, **where, "error": NO_FACE}]
    if _STATE["policy"] == "largest":
        dets = dets[:1]
    centre = None if dense is None else dense.mean(axis=0)
    rows = []
    for i, det in enumerate(dets):
        crop, m = crop_face(image, det, spec)
        rel = f"{CROPS}/{stem}{'' if _STATE['policy'] == 'largest' else f'_{i}'}.png"
        ok, png = cv2.imencode(".png", crop)
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a crop for {rel}")
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(png.tobytes())
        x, y, w, h = det.box
        mine = centre is not None and x <= centre[0] <= x + w and y <= centre[1] <= y + h
        points = dense if mine else None  # annotated points beside the image win over decoded ones
        if points is None and _STATE.get("landmarks") is not None:
            points = _STATE["landmarks"](image, det.box).points
        rows.append({**base, **where, "path": rel, "face_index": i, "box": _json(det.box),
                     "landmarks": "" if det.landmarks is None else _json(transform_points(det.landmarks, m)),
                     "dense_landmarks": "" if points is None else _json(transform_points(points, m)),
                     "det_score": round(float(det.score), 4), "error": ""})
    return rows


def default_group(path: Path, src: Path) -> str:
    """The split unit of a file without a listed group: a video or named image is its own
    (its stem); numbered frames (``vid7/0001.png``) belong to their folder, so the frames of one
    video never straddle train and test."""
    if path.stem.isdigit() and path.parent != src:
        try:
            return path.parent.relative_to(src).as_posix()
        except ValueError:
            return path.parent.name
    return path.stem


GROUP_COLUMNS = ("group", "person", "identity")  # the split unit of a listed file, first non-empty wins
SPLIT_NAMES = ("train", "val", "test")


def listed_group(row: dict[str, str]) -> str:
    """A CSV row's group: ``group``, else ``person``/``identity`` (DeepfakeTIMIT's labels.csv); "" when none."""
    return next(((row.get(k) or "").strip() for k in GROUP_COLUMNS if (row.get(k) or "").strip()), "")


def listed_split(row: dict[str, str]) -> str:
    """A CSV row's official split (train/val/test) or ""; ValueError for another value."""
    v = (row.get("split") or "").strip().lower()
    if v and v not in SPLIT_NAMES:
        raise ValueError(f"unknown split {v!r} in the split column")
    return v


def source_labels(src: Path) -> dict[str, dict[str, str]]:
    """Per-file label, group, method and official split from ``src/labels.csv`` (a CSV manifest
    ``path,label[,group|person,method,split]`` beside the media, as DeepfakeTIMIT ships it), keyed
    by absolute path; empty when there is none. Person groups and official splits then reach the
    crops' manifest, so training splits by person, not by frame."""
    f = src / LABELS_CSV
    if not (src.is_dir() and f.is_file()):
        return {}
    with open(f, newline="", encoding="utf-8-sig") as fh:  # -sig: a byte-order mark is not part of the header
        rows = [{(k or "").strip(): v for k, v in row.items()} for row in csv.DictReader(fh)]
    if not rows or not {"path", "label"} <= set(rows[0]):
        return {}
    out = {}
    for i, row in enumerate(rows, start=2):
        lab = _CSV_LABELS.get((row.get("label") or "").strip().lower())
        if lab is None:
            raise InputError(f"line {i}: unknown label {row.get('label')!r}", path=f, fix="labels are real/fake or 0/1")
        try:
            split = listed_split(row)
        except ValueError as e:
            raise InputError(f"line {i}: {e}", path=f, fix="use train, val or test") from e
        out[str((src / row["path"].strip()).absolute())] = {"label": lab, "group": listed_group(row), "split": split,
                                                             "method": (row.get("method") or "").strip()}
    return out


def _extract_source(task: tuple[str, ...]) -> list[dict]:
    """Decode one file, detect and crop its faces: manifest rows (an error row if it fails)."""
    import cv2

    from ..inputs import name_error, safe_text
    from ..media import is_alloc_failure

    source, key, label, method, group, split = task
    path = Path(source)
    base = {"label": label, "method": method, "group": safe_text(group), "source": safe_text(source), "split": split}
    rows: list[dict] = []
    try:
        if is_video(path):
            with VideoReader(path) as reader:
                for idx, t, frame in reader.frames(n_frames=_STATE["n_frames"], every=_STATE["every"]):
                    rows += _face_rows(frame, f"{key}_f{idx:06d}", base, frame=idx, time_s=t)
                if reader.truncated:
                    rows.append({**base, "error": f"video truncated: {reader.decoded} of "
                                                  f"{reader.info.frame_count} frames decode"})
        else:
            image = read_image(path)
            rows += _face_rows(image, key, base, dense=read_dense_landmarks(path))
    except InputError as e:  # bad input: record it, the run goes on
        if e.transient:  # a timeout or an allocation failure: no row, so the next run retries the file
            return [{**base, "error": e.message, TRANSIENT: type(e).__name__}]
        rows.append({**base, "error": safe_text(e.message)})
    except FfdError:  # the run's own detector or settings: the run stops
        raise
    except MemoryError:
        return [{**base, "error": "out of memory", TRANSIENT: "OutOfMemoryError"}]
    except cv2.error as e:
        if is_alloc_failure(e):
            return [{**base, "error": "out of memory", TRANSIENT: "OutOfMemoryError"}]
        rows.append({**base, "error": safe_text(f"OpenCV error: {(str(e).strip().splitlines() or [''])[-1]}")})
    except OSError as e:  # a crop that cannot be written (a name too long, a path over PATH_MAX): this file's
        rows.append({**base, "error": safe_text(name_error(e.filename or path, e).message)})
    return rows


TRANSIENT = "_transient"  # key of the one row of a file that failed transiently (not written: retried next run)


def _imap_unordered(pool: ProcessPoolExecutor, fn, items: Iterable, max_pending: int) -> Iterator:
    """pool.map without order and with at most ``max_pending`` tasks queued (bounded memory)."""
    from ..signals import submit  # SIGINT blocked while a worker may start: Ctrl-C reaches the parent only

    it = iter(items)
    pending = {submit(pool, fn, x) for x in itertools.islice(it, max_pending)}
    while pending:
        done, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in done:
            for x in itertools.islice(it, 1):
                pending.add(submit(pool, fn, x))
            yield fut.result()


# --- the run ------------------------------------------------------------------------------------------
def _prepare_out(out: Path, spec: PreprocessSpec, overwrite: bool) -> set[str]:
    """Check/refresh ``out``; return the sources its manifest already holds."""
    spec_file, manifest = out / SPEC_FILE, out / MANIFEST
    if overwrite:  # remove what an earlier run made (the crops its manifest lists), never anything else
        _remove_own_crops(out, manifest)
        for p in (spec_file, manifest, out / LANDMARKS_FILE, out / SKIPPED_FILE):
            p.unlink(missing_ok=True)
    if spec_file.is_file():
        try:
            old = PreprocessSpec.from_json(spec_file.read_text())
        except (ValueError, TypeError, FfdError) as e:
            raise ConfigError(f"{SPEC_FILE} is unreadable: {e}", path=spec_file,
                              fix="choose a new OUT folder or pass --overwrite") from e
        if old.fingerprint() != spec.fingerprint():
            diff = {k: (v, spec.to_dict()[k]) for k, v in old.to_dict().items() if spec.to_dict()[k] != v}
            raise ConfigError(f"OUT was extracted with another preprocessing spec (was, now: {diff})", path=out,
                              fix="choose a new OUT folder, or pass --overwrite to start it again")
    elif manifest.is_file():
        raise ConfigError(f"OUT has a {MANIFEST} but no {SPEC_FILE}", path=out,
                          fix="choose a new OUT folder or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(spec_file, json.dumps(spec.to_dict(), indent=2, sort_keys=True) + "\n")
    if not manifest.is_file():
        return set()
    with manifest.open(newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) not in (MANIFEST_COLUMNS, _OLD_COLUMNS):
            raise ConfigError(f"{MANIFEST} has other columns than {list(MANIFEST_COLUMNS)}", path=manifest,
                              fix="choose a new OUT folder or pass --overwrite")
        return {row["source"] for row in reader}


def _listed_crops(manifest: Path) -> set[str]:
    """Crop stems (``crops/<stem>.png``) the manifest already lists."""
    with manifest.open(newline="") as f:
        paths = (row.get("path") or "" for row in csv.DictReader(f))
        return {p[len(CROPS) + 1:-4] for p in paths if p.startswith(f"{CROPS}/") and p.endswith(".png")}


def _remove_own_crops(out: Path, manifest: Path) -> None:
    """Delete the crops ``manifest`` lists (inside ``out/crops`` only), then the folders left empty."""
    if not manifest.is_file():
        return
    crops = (out / CROPS).resolve()
    try:
        with manifest.open(newline="") as f:
            paths = [row.get("path") or "" for row in csv.DictReader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ConfigError(f"{MANIFEST} is unreadable, so --overwrite cannot tell the crops it made: {e}",
                          path=manifest, fix="choose a new OUT folder") from e
    dirs = set()
    for rel in paths:
        if not rel:
            continue
        p = (out / rel).resolve()
        if crops in p.parents and p.suffix.lower() == ".png":
            p.unlink(missing_ok=True)
            dirs.update(d for d in p.parents if crops in d.parents or d == crops)
    for d in sorted(dirs, key=lambda d: len(d.parts), reverse=True):
        with contextlib.suppress(OSError):
            d.rmdir()  # only when empty


def _write_skipped(path: Path, listing) -> None:
    """``OUT/skipped.csv``: every file under SRC that is not extracted, with its reason (names in safe_text form)."""
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(("path", "reason"))
    w.writerows((d["path"], d["reason"]) for d in listing.describe(limit=len(listing.skipped)))
    atomic_write_text(path, buf.getvalue())


def _open_landmarks(landmark_model) -> tuple[LandmarkModel | None, dict]:
    """(model or None, its landmarks.json record); a model that cannot be loaded warns and records why."""
    if landmark_model is None:
        return None, {"model": None, "reason": "no landmark model given"}
    try:
        lmk = landmark_model if isinstance(landmark_model, LandmarkModel) else LandmarkModel(landmark_model)
    except FfdError as e:
        where = f" ({e.path})" if e.path and e.path not in e.message else ""
        warnings.warn(f"no landmark model: {e.message}{where}; SBI masks fall back to the ellipse "
                      "for faces without a landmark file", LandmarkWarning, stacklevel=3)
        return None, {"model": None, "reason": f"{e.message}{where}"}
    return lmk, lmk.describe()


def _record_landmarks(out: Path, record: dict, resumed: bool) -> None:
    """Write ``landmarks.json``; resuming an OUT made with another landmark source keeps the old record
    under ``previous`` (and warns)."""
    path = out / LANDMARKS_FILE
    old = None
    if resumed and path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = None
    if isinstance(old, dict):
        previous = old.pop("previous", [])
        if old != record:
            warnings.warn(f"OUT was partly extracted with another landmark source ({old.get('model')}); "
                          f"{LANDMARKS_FILE} records both", LandmarkWarning, stacklevel=3)
            record = {**record, "previous": previous + [old]}
        elif previous:
            record = {**record, "previous": previous}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def extract_faces(src: str | os.PathLike, out: str | os.PathLike, *, spec: PreprocessSpec = PreprocessSpec(),
                  detector_model: str | os.PathLike | None = None, label: str | None = None,
                  n_frames: int | None = DEFAULT_FRAMES, every: int | None = None, policy: str = "largest",
                  workers: int | None = None, progress: bool = True, overwrite: bool = False,
                  landmark_model: str | os.PathLike | LandmarkModel | None = None) -> ExtractSummary:
    """Extract face crops from an image, a video or a folder into ``out`` (crops, manifest, spec).

    ``every`` (every k-th frame) replaces ``n_frames`` (N uniform frames per video);
    ``policy``: "largest" face per image/frame, or "all" faces (crop names get ``_<index>``);
    ``workers``: decoding/detection processes (default ``min(4, cpus)``; 0 runs in-process);
    ``landmark_model``: the OpenSeeFace landmark ONNX (a path or a :class:`LandmarkModel`) for 66
    dense points per face; one that cannot be loaded warns (:class:`LandmarkWarning`) and the run
    goes on without; ``out/landmarks.json`` records which.
    """
    from tqdm import tqdm

    from ..signals import Interrupted, deferred, stop_pool

    t0 = time.perf_counter()
    src, out = Path(src), Path(out)
    if every is not None:
        n_frames = None
    if policy not in POLICIES:
        raise ConfigError(f"policy must be one of {POLICIES}, got {policy!r}")
    if label not in (None, "", "real", "fake"):
        raise ConfigError(f"label must be real or fake, got {label!r}")
    if (n_frames is not None and n_frames < 1) or (every is not None and every < 1):
        raise ConfigError("frames per video and every-k must be >= 1")
    from ..media import decode_timeout_s
    from ..settings import RANGES, check

    check("n_frames", n_frames, *RANGES["frames"])
    check("every", every, *RANGES["every"])
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    check("workers", workers, allow_none=False)
    decode_timeout_s()  # a bad FFD_DECODE_TIMEOUT_S stops the run here, not once per file
    from ..outputs import check_outputs

    check_outputs([src, detector_model, landmark_model if isinstance(landmark_model, (str, os.PathLike)) else None],
                  {"OUT": out}, folders=("OUT",))  # OUT inside SRC (or around it): crops of crops, lost files
    files, listing = find_media(src, exclude=out)
    detector = FaceDetector.from_spec(spec, detector_model)  # fails here, once, if the model is missing
    done = _prepare_out(out, spec, overwrite)
    lmk, lm_record = _open_landmarks(landmark_model)
    _record_landmarks(out, lm_record, resumed=bool(done))
    _write_skipped(out / SKIPPED_FILE, listing)

    from ..inputs import safe_text

    listed = source_labels(src)
    tasks = []
    for f, key in zip(files, _crop_keys(files, src, _listed_crops(out / MANIFEST) if done else ())):
        source = str(f.absolute())
        if safe_text(source) in done:  # the manifest holds names in their safe_text form
            continue
        row = listed.get(source, {})
        lab, method = (label, "") if label else (row["label"], row["method"]) if row else infer_label(f)
        tasks.append((source, key, lab, method, row.get("group") or default_group(f, src), row.get("split", "")))
    summary = ExtractSummary(out=out, skipped=len(files) - len(tasks), ignored=len(listing.skipped),
                             ignored_reasons=listing.counts())
    init = (spec.to_json(), str(detector.model_path) if spec.detector == "yunet" else None, str(out), policy,
            n_frames, every, None if lmk is None else str(lmk.path), lmk is not None and lmk.refine)
    workers = min(workers, len(tasks))
    manifest = out / MANIFEST
    new = not manifest.is_file()
    columns = MANIFEST_COLUMNS
    if not new:
        with manifest.open(newline="") as f:
            columns = tuple(next(csv.reader(f), MANIFEST_COLUMNS))
    pool = None
    try:
        if workers <= 1:
            _STATE.update(spec=spec, detector=detector, out=out, policy=policy, n_frames=n_frames, every=every,
                          landmarks=lmk)
            results: Iterator[list[dict]] = map(_extract_source, tasks)
        else:
            import multiprocessing

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=init)
            results = _imap_unordered(pool, _extract_source, tasks, max_pending=4 * workers)
        with manifest.open("a", newline="") as fh, tqdm(total=len(tasks), unit="file", disable=not progress,
                                                        dynamic_ncols=True) as bar:
            writer = csv.DictWriter(fh, fieldnames=columns, restval="", extrasaction="ignore")
            if new:
                writer.writeheader()
            trusted = False  # a file of this run got a real result (then timeouts are the files', not the run's)
            for rows in results:
                if rows and rows[0].get(TRANSIENT):  # timed out / out of memory: no row, retried next run
                    summary.retry += 1
                    if not trusted and summary.retry >= min(RUN_CHECK_FILES, len(tasks)):
                        from ..media import transient_run_error

                        raise transient_run_error({rows[0][TRANSIENT]}, summary.retry)
                    bar.update(1)
                    continue
                trusted = True
                with deferred():  # SIGTERM/Ctrl-C: a file's rows are written whole or not at all
                    writer.writerows(rows)
                    fh.flush()  # per source file: a killed run loses nothing
                    summary.files += 1
                summary.faces += sum(1 for r in rows if r.get("path"))
                summary.no_face += sum(1 for r in rows if r["error"] == NO_FACE)
                summary.errors += any(r["error"] and r["error"] != NO_FACE for r in rows)
                bar.set_postfix(faces=summary.faces, errors=summary.errors, refresh=False)
                bar.update(1)
    except BrokenProcessPool as e:  # a decoder crashed a worker: which file is unknown here
        raise InputError("a worker process died while decoding (a crashing decoder on some file?)", path=src,
                         fix="re-run to resume (finished files are kept); -j 0 shows the file that crashes") from e
    except Interrupted as e:  # SIGTERM/Ctrl-C: the finished files' rows are in the manifest
        e.add_note(f"{summary.files} of {len(tasks)} files extracted this run, listed in {manifest}; re-run the "
                   "same command to resume")
        if pool is not None:
            stop_pool(pool)  # the files in flight are abandoned, not waited for
        raise
    except BaseException:
        if pool is not None:
            stop_pool(pool)
        raise
    finally:
        _STATE.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    summary.seconds = time.perf_counter() - t0
    return summary
