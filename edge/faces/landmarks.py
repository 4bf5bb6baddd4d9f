"""66-point face landmarks from the OpenSeeFace landmark model (ONNX; numpy, OpenCV, ONNX Runtime).

The model (``lm_model0_opt.onnx`` of github.com/emilianavt/OpenSeeFace, BSD-2-Clause) takes a
face crop ``(N, 3, 224, 224)`` and returns ``(N, 198, 28, 28)``: 66 heatmaps, then 66 maps of the
*row* (y) offset, then 66 maps of the *column* (x) offset. Decoding, written from OpenSeeFace's
``tracker.py`` description and checked on annotated faces (``tests/test_landmarks.py``):

* **input**: the face box grown by 10 % of its width left and right and 12.5 % of its height
  above and below (OpenSeeFace's rule; measured on YuNet boxes of london_faces it beats square
  crops of 1.1-1.4x), pixels outside the image black, resized (not aspect-preserving) to 224x224
  with bilinear interpolation, BGR -> RGB, ``(v / 255 - mean) / std`` with the ImageNet
  mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), channels first;
* **decode**: per point the argmax cell ``(r, c)`` of its 28x28 heatmap (the value there is the
  point's confidence, about 0.6-1.1 on clear faces); offsets are read at that cell and mapped
  through ``logit(p) / 16``; in the 224 px input the point is at
  ``y = 223 * (r / 27 + logit(off_row) / 16)``, ``x = 223 * (c / 27 + logit(off_col) / 16)``,
  then mapped back through the crop (pixel centres kept: ``x_img = x1 + (x + 0.5) * w / 224 - 0.5``).

Measured on all 102 london_faces/neutral images (512 px, YuNet boxes; 8 points matched to the
annotations: eye and mouth corners, chin, subnasale): median error 2.8 % of the inter-pupil
distance (2.1 px at a median IOD of 76 px), max 10.0 % (7.1 px, a chin); 20 ms per face on one
CPU core. ``refine=True`` gave 2.7 % / 10.7 % there (and 3.2 % vs 3.4 % median on the larger
canada faces) at twice the cost, so it is off by default. ``tests/test_landmarks.py`` checks 11.

The 66 points are iBUG-68's without the two inner mouth corners: indices 0-47 as in iBUG, the
mouth ordered differently (corners at 58 and 62, not 48 and 54; checked on the images). Image-left
comes first (the subject's right), so the groups below are in image terms: jaw 0-16 from image-left to
image-right through the chin (8), brows 17-21 and 22-26 (outer to inner, then inner to outer),
nose bridge 27-30 (30 = tip), lower nose 31-35 (33 = subnasale), eyes 36-41 and 42-47 (36 and 45
outer corners, 39 and 42 inner), outer lip 48-52 (upper, between the corners) and 53-57 (lower,
right to left) with the mouth corners at 58 (image-left) and 62, inner lip 59-61 (upper) and
63-65 (lower, right to left).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np

from ..errors import InputError, ModelError
from ..runtime.engine_cache import sha256_file

LANDMARK_ENV = "FFD_LANDMARK_MODEL"
LANDMARK_FILENAME = "openseeface_lm_model0_opt.onnx"
N_POINTS = 66
INPUT_SIZE = 224
GRID = 28
LOGIT_FACTOR = 16.0
BOX_GROW = (0.10, 0.125)  # fraction of the box width (each side) and height (above and below)
_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
_STD = np.array([0.229, 0.224, 0.225], np.float32)

# --- index groups of the 66 points (image-left = the subject's right) -------------------------------
JAW = tuple(range(0, 17))
CHIN = 8
BROW_LEFT_IMAGE = tuple(range(17, 22))
BROW_RIGHT_IMAGE = tuple(range(22, 27))
BROWS = BROW_LEFT_IMAGE + BROW_RIGHT_IMAGE
NOSE_BRIDGE = tuple(range(27, 31))
NOSE_LOWER = tuple(range(31, 36))
NOSE = NOSE_BRIDGE + NOSE_LOWER
NOSE_TIP = 30
SUBNASALE = 33
EYE_LEFT_IMAGE = tuple(range(36, 42))
EYE_RIGHT_IMAGE = tuple(range(42, 48))
EYES = EYE_LEFT_IMAGE + EYE_RIGHT_IMAGE
EYE_CORNERS = (36, 39, 42, 45)  # outer, inner (image-left eye), inner, outer (image-right eye)
MOUTH_CORNERS = (58, 62)
MOUTH_OUTER = (58, 48, 49, 50, 51, 52, 62, 53, 54, 55, 56, 57)  # a closed polygon, clockwise on screen
MOUTH_INNER = (58, 59, 60, 61, 62, 63, 64, 65)
MOUTH = tuple(range(48, 66))
GROUPS = {"jaw": JAW, "brows": BROWS, "nose": NOSE, "eyes": EYES, "mouth": MOUTH}


class LandmarkWarning(UserWarning):
    """Landmarks were asked for but cannot be made (the model is missing or unreadable): the run goes on without."""


class Landmarks(NamedTuple):
    """``points`` (66, 2) float64 in image pixels (x, y); ``confidence`` (66,) heatmap peaks."""

    points: np.ndarray
    confidence: np.ndarray

    @property
    def score(self) -> float:
        return float(np.mean(self.confidence))


def find_landmark_model(path: str | os.PathLike | None = None) -> Path:
    """Resolve the landmark ONNX file: an explicit path, else ``$FFD_LANDMARK_MODEL``; else ModelError."""
    where = path if path else os.environ.get(LANDMARK_ENV)
    if where and Path(where).is_file():
        return Path(where)
    raise ModelError("the face-landmark model was not found" if where else "no face-landmark model was given",
                     path=where or None,
                     fix=f"pass --landmarks PATH/{LANDMARK_FILENAME} or set {LANDMARK_ENV}")


def crop_box(box: Sequence[float]) -> tuple[int, int, int, int]:
    """The model's input region (x1, y1, x2, y2) for a detector box (x, y, w, h): grown by BOX_GROW."""
    x, y, w, h = (float(v) for v in box)
    gx, gy = BOX_GROW[0] * w, BOX_GROW[1] * h
    x1, y1 = int(round(x - gx)), int(round(y - gy))
    x2, y2 = int(round(x + w + gx)), int(round(y + h + gy))
    return x1, y1, max(x2, x1 + 4), max(y2, y1 + 4)


def _region(image: np.ndarray, x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    """``image[y1:y2, x1:x2]`` with black where the region leaves the image."""
    import cv2

    h, w = image.shape[:2]
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if cx1 >= cx2 or cy1 >= cy2:
        return np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
    part = image[cy1:cy2, cx1:cx2]
    if (cx1, cy1, cx2, cy2) == (x1, y1, x2, y2):
        return part
    return cv2.copyMakeBorder(part, cy1 - y1, y2 - cy2, cx1 - x1, x2 - cx2, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def preprocess(image_bgr: np.ndarray, box: Sequence[float]) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """-> (float32 (3, 224, 224) model input, the region (x1, y1, x2, y2) it shows)."""
    import cv2

    from ..media import as_bgr

    reg = crop_box(box)
    crop = _region(as_bgr(image_bgr), *reg)
    rgb = cv2.resize(crop[:, :, ::-1], (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    x = (rgb.astype(np.float32) / np.float32(255.0) - _MEAN) / _STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)), reg


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p)) / LOGIT_FACTOR


def decode(output: np.ndarray, regions: Sequence[tuple[int, int, int, int]]) -> list[Landmarks]:
    """Model output (N, 198, 28, 28) and the input regions -> N Landmarks in image pixels."""
    out = np.asarray(output, np.float32)
    n = out.shape[0]
    if out.shape[1:] != (3 * N_POINTS, GRID, GRID):
        raise ModelError(f"landmark model output has shape {out.shape}, expected (N, {3 * N_POINTS}, {GRID}, {GRID})",
                         fix=f"use OpenSeeFace's lm_model0_opt.onnx ({LANDMARK_FILENAME})")
    flat = out.reshape(n, 3, N_POINTS, GRID * GRID)
    cell = flat[:, 0].argmax(-1)  # (n, 66)
    take = lambda k: np.take_along_axis(flat[:, k], cell[..., None], -1)[..., 0]  # noqa: E731
    conf, off_r, off_c = take(0), take(1), take(2)
    last = INPUT_SIZE - 1.0
    y_in = last * (cell // GRID / (GRID - 1.0) + _logit(off_r))
    x_in = last * (cell % GRID / (GRID - 1.0) + _logit(off_c))
    res = []
    for i, (x1, y1, x2, y2) in enumerate(regions):
        sx, sy = (x2 - x1) / INPUT_SIZE, (y2 - y1) / INPUT_SIZE
        pts = np.stack([x1 + (x_in[i] + 0.5) * sx - 0.5, y1 + (y_in[i] + 0.5) * sy - 0.5], 1)
        res.append(Landmarks(pts, conf[i].astype(np.float64)))
    return res


class LandmarkModel:
    """``model(image_bgr, box) -> Landmarks(points (66, 2) image px, confidence (66,))``.

    ``box`` is a detector box (x, y, w, h) in image pixels (``Detection.box``). ``refine`` runs a
    second pass on the box of the first pass's points (OpenSeeFace's tracking step; measured:
    no gain on frontal london_faces, a little on larger canada faces, twice the cost).
    One instance per thread or process; ``threads`` sets ONNX Runtime's intra-op threads.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, threads: int | None = None, refine: bool = False,
                 batch_size: int = 16):
        import onnxruntime as ort

        self.path = find_landmark_model(path)
        self.refine = refine
        self.batch_size = max(1, int(batch_size))
        so = ort.SessionOptions()
        so.log_severity_level = 3
        if threads:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        fix = f"point --landmarks (or {LANDMARK_ENV}) at OpenSeeFace's {LANDMARK_FILENAME}"
        try:
            self._sess = ort.InferenceSession(str(self.path), sess_options=so, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - ORT raises its own Fail/InvalidProtobuf types
            raise ModelError(f"ONNX Runtime could not load the landmark model: {str(e).strip().splitlines()[-1]}",
                             path=self.path, fix=fix) from e
        inp, outs = self._sess.get_inputs(), self._sess.get_outputs()
        shape = tuple(inp[0].shape) if inp else ()
        if len(inp) != 1 or len(shape) != 4 or tuple(shape[1:]) != (3, INPUT_SIZE, INPUT_SIZE) or len(outs) != 1:
            raise ModelError(f"not the OpenSeeFace landmark model (input {shape}, {len(outs)} outputs)",
                             path=self.path, fix=fix)
        self._input = inp[0].name
        self._sha256: str | None = None

    @property
    def sha256(self) -> str:
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    def describe(self) -> dict:
        """What ``landmarks.json`` records: model file name, its sha256 and the number of points."""
        return {"model": self.path.name, "sha256": self.sha256, "points": N_POINTS}

    def _infer(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[Landmarks]:
        res: list[Landmarks] = []
        for s in range(0, len(boxes), self.batch_size):
            xs, regs = zip(*(preprocess(im, b) for im, b in zip(images[s:s + self.batch_size],
                                                                  boxes[s:s + self.batch_size])))
            out = self._sess.run(None, {self._input: np.stack(xs)})[0]
            res += decode(out, regs)
        return res

    def batch(self, images: Sequence[np.ndarray], boxes: Sequence[Sequence[float]]) -> list[Landmarks]:
        """Landmarks of ``boxes[i]`` in ``images[i]`` (the same image may repeat), run in batches."""
        if len(images) != len(boxes):
            raise InputError(f"{len(images)} images but {len(boxes)} boxes", fix="pass one box per image")
        if not boxes:
            return []
        res = self._infer(images, boxes)
        if self.refine:
            tight = []
            for lm in res:
                lo, hi = lm.points.min(0), lm.points.max(0)
                tight.append((lo[0], lo[1], max(hi[0] - lo[0], 4.0), max(hi[1] - lo[1], 4.0)))
            res = self._infer(images, tight)
        return res

    def __call__(self, image_bgr: np.ndarray, box: Sequence[float]) -> Landmarks:
        return self.batch([image_bgr], [box])[0]

    def __repr__(self) -> str:
        return f"LandmarkModel({str(self.path)!r}, refine={self.refine})"
