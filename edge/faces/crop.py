"""Cropping a detected face exactly as the model's :class:`~edge.spec.PreprocessSpec` says.

``crop_face`` is the one crop used by extraction (training data), calibration and every
runtime. It returns the crop and the 2x3 affine matrix that maps image coordinates into
crop coordinates, so landmarks (5 detector points or a dataset's 189 points) can follow
the face into the crop (self-blended pseudo-fakes need them there).

* ``square``: the detector box's centre, a square of side ``margin * max(w, h)``, resized to
  ``size``; pixels outside the image are black (DeepfakeBench/SBI use 1.3x).
* ``align5``: a similarity transform (rotation, scale, shift) that puts the 5 landmarks on
  the ArcFace template, widened by ``margin``; falls back to ``square`` without landmarks.
"""
from __future__ import annotations

import numpy as np

from ..spec import INTERPOLATION_FLAGS, PreprocessSpec
from .detector import Detection

# ArcFace 112x112 reference landmarks (image-left eye, image-right eye, nose, mouth corners)
_ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                         [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)


def crop_matrix(det: Detection, spec: PreprocessSpec) -> np.ndarray:
    """2x3 affine matrix mapping image pixels to crop pixels for this detection and spec."""
    import cv2

    s = spec.size
    if spec.crop_mode == "align5" and det.landmarks is not None:
        # the ArcFace template fills a ~1.0x box; shrink it towards the centre by 1/margin
        dst = (0.5 + (_ARCFACE_112 / 112.0 - 0.5) / spec.margin * 1.0) * s
        m, _ = cv2.estimateAffinePartial2D(det.landmarks.astype(np.float32), dst.astype(np.float32),
                                           method=cv2.LMEDS)
        if m is not None:
            return m.astype(np.float64)
    x, y, w, h = det.box
    side = max(w, h) * spec.margin
    cx, cy = x + w / 2.0, y + h / 2.0
    k = s / max(side, 1e-6)
    return np.array([[k, 0.0, s / 2.0 - k * cx], [0.0, k, s / 2.0 - k * cy]], np.float64)


def crop_face(image_bgr: np.ndarray, det: Detection, spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """-> (crop uint8 BGR of ``spec.size``, 2x3 matrix image->crop)."""
    import cv2

    m = crop_matrix(det, spec)
    crop = cv2.warpAffine(image_bgr, m, (spec.size, spec.size), flags=INTERPOLATION_FLAGS[spec.interpolation],
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, m


def transform_points(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (K, 2) points."""
    p = np.asarray(points, np.float64)
    return p @ m[:, :2].T + m[:, 2]
