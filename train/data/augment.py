"""Augmentations that real archives need, applied to real and fake crops alike (numpy + OpenCV).

A detector that is deployed on video archives sees faces that went through a codec, a
resize and a camera: JPEG blocking, the smoother block artefacts of video codecs, low
resolution, blur, sensor noise and colour casts. Training on clean crops teaches a model
that "clean" means real and "degraded" means fake (DeepfakeTIMIT's LQ swaps are blurry, for
one). Every op here is applied with the same probability to both classes, so the only
signal left is the forgery.

* ``jpeg``: re-encoding at quality 30-95;
* ``h264_like``: an approximation of a video codec's intra blocks without a video encoder:
  4:2:0 chroma subsampling, 8x8 DCT quantisation at a coarse step (JPEG at quality 15-50 on
  a 2x-downscaled chroma) followed by a light deblocking blur, as H.264's in-loop filter
  smooths block edges; a real encoder is used for the archive benchmarks, not here;
* ``downscale``: down to 35-90 % and back up (a small face in a big frame);
* ``blur``: Gaussian, sigma 0.3-1.5 px at 128 px;
* ``noise``: Gaussian sensor noise, sigma 2-8 grey levels;
* ``color``: brightness, contrast, saturation and per-channel gain jitter;
* ``flip``: horizontal;
* ``geometric``: a small rotation (up to 12 degrees), zoom (0.9-1.1) and shift (up to 5 % of the side),
  borders reflected: faces in archives are tilted and framed by a detector, and a model that only saw
  upright, centred crops treats a tilted real face as out of distribution (self-blend-only students
  scored tilted ciplab portraits as fakes). Applied first, as a framing step. Off in
  ``ArchiveAugment()``; the training recipes leave it off too (``train.recipes.GEOMETRIC_STUDENT``/``_TEACHER``; it cut
  the transfer to unseen face swaps, docs/training.md); ``--geometric P`` turns it on.

``ArchiveAugment(p=...)`` draws everything from the ``rng`` it is given, so a seeded dataset
reproduces exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArchiveAugment:
    """Probabilities and ranges; ``strength`` scales every probability (0 = off)."""

    flip: float = 0.5
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 95)
    h264: float = 0.2
    h264_quality: tuple[int, int] = (15, 50)
    downscale: float = 0.25
    downscale_range: tuple[float, float] = (0.35, 0.9)
    blur: float = 0.15
    blur_sigma: tuple[float, float] = (0.3, 1.5)  # at 128 px; scaled with the crop side
    noise: float = 0.15
    noise_sigma: tuple[float, float] = (2.0, 8.0)
    color: float = 0.4
    geometric: float = 0.0  # off; the recipes' defaults are train.recipes.GEOMETRIC_STUDENT/_TEACHER
    rotate_deg: float = 12.0
    zoom_range: tuple[float, float] = (0.9, 1.1)
    shift: float = 0.05
    strength: float = 1.0

    def _p(self, p: float) -> float:
        return min(1.0, p * self.strength)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """uint8 BGR HxWx3 -> uint8 BGR of the same size."""
        if rng.random() < self._p(self.flip):
            img = img[:, ::-1]
        img = np.ascontiguousarray(img)
        if self.geometric > 0 and rng.random() < self._p(self.geometric):  # no draw when off: seeded runs as before
            img = affine(img, rng.uniform(-self.rotate_deg, self.rotate_deg), rng.uniform(*self.zoom_range),
                         rng.uniform(-self.shift, self.shift, 2))
        # degradations in the order a camera + codec chain applies them
        if rng.random() < self._p(self.color):
            img = color_jitter(img, rng)
        if rng.random() < self._p(self.blur):
            img = gaussian_blur(img, rng.uniform(*self.blur_sigma) * img.shape[0] / 128.0)
        if rng.random() < self._p(self.downscale):
            img = down_up(img, rng.uniform(*self.downscale_range))
        if rng.random() < self._p(self.noise):
            img = add_noise(img, rng.uniform(*self.noise_sigma), rng)
        if rng.random() < self._p(self.h264):
            img = h264_like(img, int(rng.integers(self.h264_quality[0], self.h264_quality[1] + 1)))
        elif rng.random() < self._p(self.jpeg):
            img = jpeg(img, int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1)))
        return np.ascontiguousarray(img)


def affine(img: np.ndarray, angle_deg: float, zoom: float, shift_frac) -> np.ndarray:
    """Rotate by ``angle_deg`` and zoom by ``zoom`` about the centre, then shift by ``shift_frac`` (x, y) of the
    side; borders are reflected, so no constant-colour corner becomes a cue."""
    import cv2

    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), float(angle_deg), float(zoom))
    m[:, 2] += (float(shift_frac[0]) * w, float(shift_frac[1]) * h)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import cv2

    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


def h264_like(img: np.ndarray, quality: int) -> np.ndarray:
    """4:2:0 chroma, coarse 8x8 DCT quantisation, then a deblocking blur across block edges."""
    import cv2

    ycc = cv2.cvtColor(img, cv2.COLOR_BGR2YCrCb)
    h, w = img.shape[:2]
    chroma = cv2.resize(ycc[..., 1:], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    ycc[..., 1:] = cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR)
    out = jpeg(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2BGR), quality)
    # in-loop deblocking: smooth only near the 8x8 grid, where block edges are
    smooth = cv2.GaussianBlur(out, (3, 3), 0.8)
    grid = np.zeros((h, w), bool)
    grid[np.arange(h) % 8 >= 7, :] = True
    grid[np.arange(h) % 8 == 0, :] = True
    grid[:, np.arange(w) % 8 >= 7] = True
    grid[:, np.arange(w) % 8 == 0] = True
    out[grid] = smooth[grid]
    return out


def down_up(img: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    small = cv2.resize(img, (max(4, round(w * factor)), max(4, round(h * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(img, (0, 0), max(0.1, float(sigma)))


def add_noise(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    n = rng.normal(0.0, sigma, img.shape).astype(np.float32)
    return np.clip(img.astype(np.float32) + n, 0, 255).astype(np.uint8)


def color_jitter(img: np.ndarray, rng: np.random.Generator, brightness: float = 0.15, contrast: float = 0.15,
                 saturation: float = 0.2, gain: float = 0.05) -> np.ndarray:
    x = img.astype(np.float32)
    x *= 1.0 + rng.uniform(-gain, gain, 3).astype(np.float32)  # white balance
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * (1.0 + rng.uniform(-saturation, saturation))
    m = x.mean()
    x = (x - m) * (1.0 + rng.uniform(-contrast, contrast)) + m + 255.0 * rng.uniform(-brightness, brightness)
    return np.clip(x, 0, 255).astype(np.uint8)
