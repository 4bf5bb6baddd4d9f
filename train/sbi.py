"""Self-Blended Images: pseudo-fakes made from one real face (numpy + OpenCV, no torch).

Re-implemented from the paper -- Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended
Images", CVPR 2022 -- not from its (non-commercial) code. One real crop is both *source* and
*target*. The source gets a colour perturbation (RGB shift, hue/saturation, brightness/contrast)
and a frequency perturbation (downscale-upscale or sharpen), then a small warp (random scale
per axis and translation). The mask starts as the convex hull of the face landmarks (a hull of
the face outline for 189-point WebMorph sets, all points otherwise), or an ellipse fitted to the
5 detector points, or a centred ellipse when there are no landmarks; it is randomly grown or
shrunk, elastically deformed, Gaussian-blurred and scaled by a blend ratio drawn from
{0.25, 0.5, 0.75, 1, 1, 1}. The output is ``mask * source' + (1 - mask) * target``: blending
boundaries and colour/frequency mismatches of a face swap, without any identity change, which
forces a detector to learn generic artefacts (the paper's point).

Mask values below 1/255 are set to zero before blending, so every pixel where the returned
mask is 0 equals the input crop exactly.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.errors import DatasetError

# WebMorph/FRL 189-point template (london_faces): jaw 125..133 and hairline 134..144 outline the
# face between the ears (ear points 109..124, 185..188 and the outer hair 145..157 are left out).
WEBMORPH189_OUTLINE = tuple(range(125, 134)) + tuple(range(144, 133, -1))
_MIN_MASK = 1.0 / 255.0


@dataclass(frozen=True)
class SBIConfig:
    """Knobs of the self-blend; defaults follow the paper's ranges scaled to [0, 1] images."""

    rgb_shift: float = 15.0  # max per-channel shift, in 0..255 units
    hue_shift: float = 4.0  # max hue shift, in OpenCV hue units (0..180)
    sat_shift: float = 0.15  # max relative saturation change
    val_shift: float = 0.15  # max relative value change
    brightness: float = 0.1  # max brightness offset (fraction of 255)
    contrast: float = 0.1  # max relative contrast change
    color_p: float = 1.0  # probability of the colour perturbation
    downscale: tuple[float, float] = (0.5, 0.8)  # downscale-upscale factor (paper: 0.25-0.5 at 380 px; crops here are ~128 px)
    sharpen: tuple[float, float] = (0.2, 0.5)  # unsharp-mask strength range (the other frequency branch)
    freq_p: float = 1.0  # probability of a frequency perturbation (downscale or sharpen, 50/50)
    scale: tuple[float, float] = (0.95, 1.05)  # source warp: per-axis scale range
    translate: float = 0.03  # source warp: max shift as a fraction of the crop side
    hull_scale: tuple[float, float] = (0.9, 1.05)  # mask grown/shrunk about its centroid
    elastic_alpha: float = 0.04  # elastic displacement (fraction of the side)
    elastic_sigma: float = 0.08  # smoothness of the displacement field (fraction of the side)
    blur: tuple[float, float] = (0.01, 0.05)  # Gaussian blur sigma range of the mask (fraction of the side)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # blend ratio choices


# --- masks --------------------------------------------------------------------------------
def _outline(dense: np.ndarray) -> np.ndarray:
    return dense[list(WEBMORPH189_OUTLINE)] if len(dense) == 189 else dense


def _hull_mask(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    m = np.zeros(shape, np.uint8)
    hull = cv2.convexHull(np.round(points).astype(np.int32).reshape(-1, 1, 2))
    cv2.fillConvexPoly(m, hull, 1)
    return m.astype(np.float32)


def _ellipse_points(center, axes, angle_deg: float, n: int = 48) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    a = np.deg2rad(angle_deg)
    x, y = axes[0] * np.cos(t), axes[1] * np.sin(t)
    return np.stack([center[0] + x * np.cos(a) - y * np.sin(a), center[1] + x * np.sin(a) + y * np.cos(a)], 1)


def _ellipse_from_5(lm: np.ndarray) -> np.ndarray:
    """Face ellipse from (left eye, right eye, nose, left mouth, right mouth): rotated with the
    eye line, ~2.2 eye distances wide, from the brows to the chin."""
    eyes, mouth = lm[:2].mean(0), lm[3:5].mean(0)
    d_eye = max(float(np.linalg.norm(lm[1] - lm[0])), 1.0)
    angle = float(np.degrees(np.arctan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0])))
    down = mouth - eyes
    d_em = max(float(np.linalg.norm(down)), 0.5 * d_eye)
    u = down / max(float(np.linalg.norm(down)), 1e-6)
    top, bottom = eyes - 0.9 * d_em * u, mouth + 0.7 * d_em * u
    return _ellipse_points((top + bottom) / 2, (1.1 * d_eye, float(np.linalg.norm(bottom - top)) / 2), angle)


def face_points(shape: tuple[int, int], landmarks=None, dense_landmarks=None) -> np.ndarray:
    """The polygon whose hull is the initial mask: dense outline, 5-point ellipse, or centred ellipse."""
    h, w = shape
    if dense_landmarks is not None and len(dense_landmarks) >= 3:
        return _outline(np.asarray(dense_landmarks, np.float64))
    if landmarks is not None and len(landmarks) == 5:
        return _ellipse_from_5(np.asarray(landmarks, np.float64))
    # crops are the detector box grown 1.3x: the face fills roughly the middle 3/4
    return _ellipse_points((w * 0.5, h * 0.52), (w * 0.33, h * 0.41), 0.0)


def _elastic(mask: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    import cv2

    h, w = mask.shape
    side = float(max(h, w))
    sigma = max(cfg.elastic_sigma * side, 1.0)
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (0, 0), sigma)
    # normalise the smoothed noise so alpha is the max displacement in pixels
    k = cfg.elastic_alpha * side / max(float(np.abs(dx).max()), float(np.abs(dy).max()), 1e-6)
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, gx + dx * k, gy + dy * k, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def blend_mask(shape: tuple[int, int], rng: np.random.Generator, cfg: SBIConfig = SBIConfig(),
               landmarks=None, dense_landmarks=None) -> np.ndarray:
    """The deformed, blurred mask in [0, 1] *before* the blend ratio (float32 HxW)."""
    import cv2

    pts = face_points(shape, landmarks, dense_landmarks)
    c = pts.mean(0)
    pts = c + (pts - c) * rng.uniform(*cfg.hull_scale)
    mask = _elastic(_hull_mask(pts, shape), rng, cfg)
    sigma = rng.uniform(*cfg.blur) * max(shape)
    mask = cv2.GaussianBlur(mask, (0, 0), max(sigma, 0.5))
    peak = float(mask.max())
    if peak <= 0:  # landmarks outside the crop: fall back to the centred ellipse
        return blend_mask(shape, rng, cfg) if (landmarks is not None or dense_landmarks is not None) else mask
    return np.clip(mask / peak, 0, 1).astype(np.float32)


# --- source perturbations -------------------------------------------------------------------
def _color(img: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    import cv2

    x = img.astype(np.float32) + rng.uniform(-cfg.rgb_shift, cfg.rgb_shift, 3).astype(np.float32)
    hsv = cv2.cvtColor(np.clip(x, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue_shift, cfg.hue_shift)) % 180
    hsv[..., 1] *= 1 + rng.uniform(-cfg.sat_shift, cfg.sat_shift)
    hsv[..., 2] *= 1 + rng.uniform(-cfg.val_shift, cfg.val_shift)
    x = cv2.cvtColor(np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    mean = x.mean()
    x = (x - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean + 255 * rng.uniform(-cfg.brightness, cfg.brightness)
    return np.clip(x, 0, 255).astype(np.uint8)


def _frequency(img: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if rng.random() < 0.5:
        f = rng.uniform(*cfg.downscale)
        small = cv2.resize(img, (max(1, round(w * f)), max(1, round(h * f))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    a = rng.uniform(*cfg.sharpen)
    blur = cv2.GaussianBlur(img, (0, 0), 1.0)
    return cv2.addWeighted(img, 1 + a, blur, -a, 0)


def _warp(img: np.ndarray, rng: np.random.Generator, cfg: SBIConfig) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    sx, sy = rng.uniform(*cfg.scale, size=2)
    tx, ty = rng.uniform(-cfg.translate, cfg.translate, size=2) * (w, h)
    cx, cy = w / 2.0, h / 2.0
    m = np.array([[sx, 0, cx - sx * cx + tx], [0, sy, cy - sy * cy + ty]], np.float64)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def self_blend(crop_bgr: np.ndarray, landmarks=None, dense_landmarks=None, *, rng: np.random.Generator,
               cfg: SBIConfig = SBIConfig()) -> tuple[np.ndarray, np.ndarray]:
    """One real crop (uint8 BGR, landmarks in its pixels) -> (pseudo-fake uint8 BGR, mask float32 HxW).

    The mask is the final one (deformed, blurred, times the blend ratio), so
    ``fake == mask * source' + (1 - mask) * crop`` and ``fake[mask == 0] == crop[mask == 0]``.
    Same ``rng`` state -> same output.
    """
    from edge.faces import as_bgr

    tgt = as_bgr(crop_bgr)
    src = tgt
    if rng.random() < cfg.color_p:
        src = _color(src, rng, cfg)
    if rng.random() < cfg.freq_p:
        src = _frequency(src, rng, cfg)
    src = _warp(src, rng, cfg)
    mask = blend_mask(tgt.shape[:2], rng, cfg, landmarks, dense_landmarks)
    mask *= np.float32(rng.choice(cfg.ratios))
    mask[mask < _MIN_MASK] = 0.0
    t = tgt.astype(np.float32)
    out = t + mask[..., None] * (src.astype(np.float32) - t)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), mask


# --- writing samples for inspection ------------------------------------------------------------
def write_blends(src: str | os.PathLike, out: str | os.PathLike, n: int = 16, seed: int = 0,
                 cfg: SBIConfig = SBIConfig()) -> Path:
    """Write ``n`` pseudo-fakes (``*_sbi.png``) and their masks (``*_mask.png``) from the real crops
    of ``src`` (an extraction folder, a real/fake folder or a folder of crops) into ``out``, with a
    ``manifest.csv`` in the extraction format (label fake, method sbi), so ``out`` loads as a dataset.
    Sample i uses ``np.random.default_rng([seed, i])``. Returns the manifest path."""
    import cv2

    from edge.faces.extract import MANIFEST_COLUMNS
    from edge.media import read_image
    from train.data.samples import REAL, UNLABELLED, detect_layout, load_samples

    label = "real" if detect_layout(src) == "images" else None
    reals = [s for s in load_samples(src, label=label) if s.label in (REAL, UNLABELLED) and not s.is_video]
    if not reals:
        raise DatasetError("no real face crops to blend", path=src,
                           fix="pass an extraction folder or a folder of real face crops")
    order = np.random.default_rng(seed).permutation(len(reals))[:n]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (Path(src) / "spec.json").is_file():
        shutil.copyfile(Path(src) / "spec.json", out / "spec.json")
    rows = []
    for i, k in enumerate(order):
        s = reals[int(k)]
        fake, mask = self_blend(read_image(s.path), s.landmarks, s.dense_landmarks, rng=np.random.default_rng([seed, i]), cfg=cfg)
        stem = f"{i:04d}_{Path(s.path).stem}"
        cv2.imwrite(str(out / f"{stem}_sbi.png"), fake)
        cv2.imwrite(str(out / f"{stem}_mask.png"), np.rint(mask * 255).astype(np.uint8))
        rows.append({"path": f"{stem}_sbi.png", "label": "fake", "method": "sbi", "group": s.group,
                     "source": s.path, "frame": "" if s.frame is None else s.frame,
                     "landmarks": json.dumps(s.landmarks) if s.landmarks else "",
                     "dense_landmarks": json.dumps(s.dense_landmarks) if s.dense_landmarks else ""})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS, restval="")
        w.writeheader()
        w.writerows(rows)
    return manifest
