"""Calibration sets: real faces, preprocessed exactly as the model's spec says, stored reproducibly.

``build_calibset(model, sources, out)`` reads the model's :class:`~edge.spec.ModelCard` (ONNX
metadata or checkpoint), takes face images from several sources in round-robin order (so
no single source or identity dominates the activation ranges), detects and crops each
face with the spec's own detector and :func:`~edge.faces.crop_face` (``crops=`` folders of
ready face crops are resized with :func:`~edge.spec.resize_crop` instead), adds
self-blended pseudo-fakes when ``train.sbi.self_blend`` is available, and writes

* ``DIR/calib.npy``: float32 NCHW, the output of :func:`~edge.spec.preprocess`;
* ``DIR/manifest.json``: spec JSON and fingerprint, model id, sources and per-source
  counts, seed, and the sha256 of ``calib.npy``.

:func:`load_calibset` refuses a set made with another spec (its fingerprint), a changed
file (its checksum) and an empty set; it warns below :data:`MIN_RECOMMENDED` faces
(entropy/percentile calibration needs a few hundred samples to estimate a histogram's
tail; :data:`DEFAULT_TARGET` is what ``ffd calib build`` aims for). Nothing here ever
invents data: there is no random fallback.
"""
from __future__ import annotations

import json
import os
import random
import time
import warnings
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from edge.errors import CalibrationError, FfdError, ModelError
from edge.runtime.engine_cache import sha256_file
from edge.spec import ModelCard, PreprocessSpec, preprocess

CALIB_FILE = "calib.npy"
MANIFEST_FILE = "manifest.json"
MIN_RECOMMENDED = 128  # below this a calibration set is used with a warning
DEFAULT_TARGET = 512


class SmallCalibrationSetWarning(UserWarning):
    """The calibration set has fewer faces than :data:`MIN_RECOMMENDED`."""


# --- the model's card ---------------------------------------------------------------------
def read_card(model: str | os.PathLike) -> ModelCard:
    """ModelCard of an ``.onnx`` (metadata) or a checkpoint (``train.checkpoint``)."""
    p = Path(model)
    if not p.is_file():
        raise ModelError("model file not found", path=p, fix="pass an .onnx from `ffd export` or a checkpoint")
    if p.suffix == ".onnx":
        from edge.onnx_model import read_card as onnx_card

        return onnx_card(p, required=True)
    from train.checkpoint import read_checkpoint

    return read_checkpoint(p)["card"]


# --- faces from sources -------------------------------------------------------------------
def _images(folder: Path) -> list[Path]:
    from edge.media import iter_image_files

    if not folder.exists():
        raise CalibrationError("calibration source not found", path=folder, fix="check the --data/--crops path")
    return list(iter_image_files([folder]))


def _groups(folder: Path, seed: int) -> list[list[Path]]:
    """Images of a source split by first-level subfolder (real/fake, identities...), each shuffled."""
    by: dict[str, list[Path]] = {}
    for f in _images(folder):
        rel = f.relative_to(folder).parts if folder.is_dir() else (f.name,)
        by.setdefault(rel[0] if len(rel) > 1 else "", []).append(f)
    rng = random.Random(seed)
    out = []
    for k in sorted(by):
        rng.shuffle(by[k])
        out.append(by[k])
    return out


def _round_robin(lists: Sequence[Sequence]) -> Iterator:
    iters = [iter(x) for x in lists]
    while iters:
        alive = []
        for it in iters:
            try:
                yield next(it)
                alive.append(it)
            except StopIteration:
                pass
        iters = alive


def iter_faces(sources: Iterable[str | os.PathLike], spec: PreprocessSpec, *, crops: Iterable = (),
               detector_model=None, seed: int = 0) -> Iterator[tuple[str, Path, np.ndarray, np.ndarray | None]]:
    """Round-robin over sources (and their subfolders): ``(source, file, crop uint8 BGR, landmarks in crop)``.

    Image sources: the largest face per image, detected and cropped per ``spec``; images
    without a face or that cannot be read are skipped. ``crops`` sources: ready face crops,
    resized to ``spec.size`` (landmarks None).
    """
    from edge.faces import FaceDetector, crop_face, transform_points
    from edge.media import read_image
    from edge.spec import resize_crop

    tagged = [(str(s), "img", g) for s in sources for g in _groups(Path(s), seed)]
    tagged += [(str(s), "crop", g) for s in crops for g in _groups(Path(s), seed)]
    detector = None
    for src, kind, f in _round_robin([[(s, k, f) for f in g] for s, k, g in tagged]):
        try:
            img = read_image(f)
        except FfdError:
            continue
        if kind == "crop":
            yield src, f, resize_crop(img, spec), None
            continue
        if detector is None:
            detector = FaceDetector.from_spec(spec, detector_model)
        dets = detector.detect(img)
        if dets:
            crop, m = crop_face(img, dets[0], spec)
            lm = None if dets[0].landmarks is None else transform_points(dets[0].landmarks, m).astype(np.float32)
            yield src, f, crop, lm


def collect_faces(sources, spec: PreprocessSpec, n: int, **kw) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
    """The first ``n`` faces of :func:`iter_faces` -> (crops, [(source, file)])."""
    crops, where = [], []
    for src, f, crop, _ in iter_faces(sources, spec, **kw):
        crops.append(crop)
        where.append((src, str(f)))
        if len(crops) >= n:
            break
    return crops, where


def _self_blend():
    """``train.sbi.self_blend(crop, landmarks, rng=) -> (fake, mask)`` when SBI exists, else None."""
    try:
        from train.sbi import self_blend
    except ImportError:
        return None
    return self_blend


# --- build / load ---------------------------------------------------------------------------
def build_calibset(model: str | os.PathLike, sources: Sequence[str | os.PathLike], out: str | os.PathLike, *,
                   n: int = DEFAULT_TARGET, crops: Sequence[str | os.PathLike] = (), pseudo_fake: float = 0.25,
                   detector_model=None, seed: int = 0) -> dict:
    """Select up to ``n`` faces (``pseudo_fake`` of them self-blended when SBI exists); write calib.npy + manifest."""
    if not sources and not crops:
        raise CalibrationError("no calibration data given", fix="pass --data FOLDER (images) and/or --crops FOLDER")
    card = read_card(model)
    spec = card.spec
    blend = _self_blend() if pseudo_fake > 0 else None
    n_fake = int(round(n * pseudo_fake)) if blend else 0
    faces, lms, where, per_source = [], [], [], {}
    rng = np.random.default_rng(seed)
    for src, f, crop, lm in iter_faces(sources, spec, crops=crops, detector_model=detector_model, seed=seed):
        faces.append(crop)
        lms.append(lm)
        where.append(str(f))
        per_source[src] = per_source.get(src, 0) + 1
        if len(faces) >= n - n_fake:
            break
    if not faces:
        raise CalibrationError("no face found in the calibration sources", path=", ".join(map(str, [*sources, *crops])),
                               fix="pass folders of face images (or --crops for ready crops) the detector can read")
    n_blended = 0
    if blend and n_fake:
        for i in rng.permutation(len(faces))[:n_fake]:
            faces.append(blend(faces[i], lms[i], rng=rng)[0])
            n_blended += 1
    x = preprocess(faces, spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / CALIB_FILE, x)
    manifest = {
        "format": "ffd-calib-1",
        "spec": spec.to_dict(),
        "fingerprint": spec.fingerprint(),
        "model": card.model_id(),
        "count": int(x.shape[0]),
        "shape": list(x.shape),
        "real": len(where),
        "pseudo_fake": n_blended,
        "pseudo_fake_note": None if blend else "train.sbi.self_blend not available: real faces only",
        "sources": [str(s) for s in sources],
        "crops": [str(s) for s in crops],
        "per_source": per_source,
        "files": where,
        "seed": seed,
        "min_recommended": MIN_RECOMMENDED,
        "sha256": sha256_file(out / CALIB_FILE),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    if x.shape[0] < MIN_RECOMMENDED:
        warnings.warn(f"calibration set has only {x.shape[0]} faces (< {MIN_RECOMMENDED} recommended, "
                      f"{DEFAULT_TARGET} is the default target); add more --data", SmallCalibrationSetWarning,
                      stacklevel=2)
    return manifest


def load_calibset(path: str | os.PathLike, spec: PreprocessSpec | None = None) -> tuple[np.ndarray, dict]:
    """-> (float32 NCHW array, manifest). Refuses another spec, a changed file or an empty set."""
    d = Path(path)
    fix_build = "build one with `ffd calib build --model MODEL --data FOLDER -o DIR`"
    if not (d / MANIFEST_FILE).is_file() or not (d / CALIB_FILE).is_file():
        raise CalibrationError(f"not a calibration set (needs {CALIB_FILE} and {MANIFEST_FILE})", path=d, fix=fix_build)
    try:
        manifest = json.loads((d / MANIFEST_FILE).read_text())
        set_spec = PreprocessSpec.from_dict(manifest["spec"])
    except (json.JSONDecodeError, KeyError, TypeError, FfdError) as e:
        raise CalibrationError(f"calibration manifest is unreadable: {e}", path=d / MANIFEST_FILE, fix=fix_build) from e
    if spec is not None and set_spec.fingerprint() != spec.fingerprint():
        diff = {k: (v, spec.to_dict()[k]) for k, v in set_spec.to_dict().items() if spec.to_dict()[k] != v}
        raise CalibrationError(f"calibration set was preprocessed with another spec (set vs model: {diff})", path=d,
                               fix="rebuild it for this model: `ffd calib build --model THIS_MODEL ...`")
    if manifest.get("sha256") != sha256_file(d / CALIB_FILE):
        raise CalibrationError("calib.npy does not match the checksum in its manifest (changed or corrupt)", path=d,
                               fix=fix_build)
    x = np.load(d / CALIB_FILE, allow_pickle=False)
    s = set_spec.size
    if x.ndim != 4 or x.shape[1:] != (3, s, s) or x.dtype != np.float32:
        raise CalibrationError(f"calib.npy has shape {x.shape} {x.dtype}, expected (N,3,{s},{s}) float32", path=d,
                               fix=fix_build)
    if x.shape[0] == 0:
        raise CalibrationError("calibration set is empty", path=d, fix=fix_build)
    if x.shape[0] < MIN_RECOMMENDED:
        warnings.warn(f"calibration set {d} has only {x.shape[0]} faces (< {MIN_RECOMMENDED} recommended); "
                      f"INT8 ranges may be poor: rebuild with more --data", SmallCalibrationSetWarning, stacklevel=2)
    return x, manifest
