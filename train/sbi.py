"""Self-Blended Images: pseudo-fakes made from one real face (numpy + OpenCV, no torch).

Re-implemented from the paper -- Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended
Images", CVPR 2022 -- not from its (non-commercial) code. One real crop is both *source* and
*target*. The source gets a colour perturbation (RGB shift, hue/saturation, brightness/contrast)
and a frequency perturbation (downscale-upscale or sharpen), then a small warp (random scale
per axis and translation). The mask starts from the face landmarks, or an ellipse fitted to the
5 detector points, or a centred ellipse when there are no landmarks; it is randomly grown or
shrunk, elastically deformed, Gaussian-blurred and scaled by a blend ratio drawn from
{0.25, 0.5, 0.75, 1, 1, 1}. The output is ``mask * source' + (1 - mask) * target``: blending
boundaries and colour/frequency mismatches of a face swap, without any identity change, which
forces a detector to learn generic artefacts (the paper's point).

**Mask variants** (the paper blends inside a landmark hull and, after Face X-ray, varies the
region that is swapped; written here from that idea). For dense landmarks in a known layout --
66 points of the OpenSeeFace decoder (:mod:`edge.faces.landmarks`), iBUG-68, or the 189-point
WebMorph template of ``london_faces`` -- :func:`self_blend` draws one variant per sample from
``SBIConfig.mask_variants`` with ``mask_variant_p``:

* ``full``: hull of the face from the brows to the chin (66/68: all points; 189: jaw and the
  brow, eye, nose and mouth points);
* ``extended``: ``full`` reaching up into the forehead (66/68: the brow points pushed away from
  the chin by ``SBIConfig.extend`` x the chin-to-brow height; 189: the jaw and the annotated
  hairline, the outline this module used before variants existed);
* ``inner``: hull of brows, eyes, nose and mouth (no jaw, no cheeks);
* ``lower``: jaw and nose, below the eyes (66/68: jaw points 1-15 and nose 28-35);
* ``components``: the union of separate hulls of each eye with its brow, the nose and the mouth
  (each grown or shrunk about its own centroid); with ``SBIConfig.parts_p`` only a random
  non-empty subset of them, as a part-level edit (one eye, the nose and mouth...) would be.

**Cross-identity blends** (Face X-ray's idea, Li et al., CVPR 2020, written from the paper): with
``SBIConfig.cross_p`` the training set (:class:`train.data.FaceDataset`) takes the source from
*another* person's real face, aligned on the target's landmarks by a similarity transform
(:func:`align_donor`) and colour-matched with ``color_match_p``; the mask, perturbations and blend
are the same. A self-blend changes no identity; a face swap or a pasted eye from a stranger does,
with texture, shape and lighting that do not match. Evaluation sets keep ``cross_p = 0`` (the
``sbi`` figures stay pure self-blends).

Other point sets get the hull of all their points. ``blend_mask(..., variant=None)`` builds the
``full`` mask; :func:`mask_polygons` gives the polygons of any variant (the tests use them).

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

from edge.errors import ConfigError, DatasetError
from edge.faces import landmarks as lm66

# WebMorph/FRL 189-point template (london_faces), groups read from the .tem line definitions:
# jaw 125..133 and hairline 134..144 outline the face between the ears (ear points 109..124,
# 185..188, the outer hair 145..157 and the neck 183..184 are left out).
WEBMORPH189_OUTLINE = tuple(range(125, 134)) + tuple(range(144, 133, -1))
WEBMORPH189_JAW = tuple(range(125, 134))
WEBMORPH189_EYE_BROW = (  # per side: eye lids, upper crease, brow (image-left, image-right)
    tuple(range(18, 23)) + (28, 29, 30) + tuple(range(34, 39)) + tuple(range(71, 77)) + (83, 84),
    tuple(range(23, 28)) + (31, 32, 33) + tuple(range(39, 44)) + tuple(range(77, 83)) + (85, 86))
WEBMORPH189_NOSE = tuple(range(50, 71)) + (179, 180, 181, 182)
WEBMORPH189_MOUTH = tuple(range(87, 109))
# lower face: jaw, cheeks and the nose below the eyes (bridge tops 50, 51, 56, 57 left out)
WEBMORPH189_LOWER = (WEBMORPH189_JAW + tuple(range(158, 170))
                     + tuple(i for i in WEBMORPH189_NOSE if i not in (50, 51, 56, 57)))
WEBMORPH189_INNER = WEBMORPH189_EYE_BROW[0] + WEBMORPH189_EYE_BROW[1] + WEBMORPH189_NOSE + WEBMORPH189_MOUTH

MASK_VARIANTS = ("full", "extended", "inner", "lower", "components")
_MIN_MASK = 1.0 / 255.0


def _ibug_groups(n: int) -> dict:
    """Index groups of the 66-point (OpenSeeFace) and 68-point (iBUG) layouts; they differ in the mouth."""
    mouth = lm66.MOUTH if n == 66 else tuple(range(48, 68))
    return {"jaw": lm66.JAW, "brows": lm66.BROWS, "nose": lm66.NOSE, "mouth": mouth,
            "eye_brow": (lm66.EYE_LEFT_IMAGE + lm66.BROW_LEFT_IMAGE, lm66.EYE_RIGHT_IMAGE + lm66.BROW_RIGHT_IMAGE),
            "lower": lm66.JAW[1:16] + lm66.NOSE[1:]}


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
    # downscale-upscale factor (paper: 0.25-0.5 at 380 px; crops here are ~128 px)
    downscale: tuple[float, float] = (0.5, 0.8)
    sharpen: tuple[float, float] = (0.2, 0.5)  # unsharp-mask strength range (the other frequency branch)
    freq_p: float = 1.0  # probability of a frequency perturbation (downscale or sharpen, 50/50)
    scale: tuple[float, float] = (0.95, 1.05)  # source warp: per-axis scale range
    translate: float = 0.03  # source warp: max shift as a fraction of the crop side
    hull_scale: tuple[float, float] = (0.9, 1.05)  # mask grown/shrunk about its centroid
    elastic_alpha: float = 0.04  # elastic displacement (fraction of the side)
    elastic_sigma: float = 0.08  # smoothness of the displacement field (fraction of the side)
    blur: tuple[float, float] = (0.01, 0.05)  # Gaussian blur sigma range of the mask (fraction of the side)
    ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)  # blend ratio choices
    # mask variants drawn per sample for dense landmarks of a known layout (66, 68 or 189 points)
    mask_variants: tuple[str, ...] = MASK_VARIANTS
    mask_variant_p: tuple[float, ...] | None = (0.4, 0.2, 0.15, 0.1, 0.15)  # weights per variant; None: uniform
    extend: tuple[float, float] = (0.1, 0.3)  # "extended": brows pushed up by this x chin-to-brow height
    # "components": probability that only a random non-empty subset of the parts (each eye with its
    # brow, the nose, the mouth) is blended, as in part-level edits; else all of them
    parts_p: float = 0.5
    # cross-identity blends (Face X-ray's idea): probability that the source is *another* person's real
    # face aligned on the target's landmarks instead of the target itself (FaceDataset picks the donor)
    cross_p: float = 0.0
    color_match_p: float = 0.5  # cross blends: probability of matching the donor's colour statistics first

    def __post_init__(self):
        unknown = [v for v in self.mask_variants if v not in MASK_VARIANTS]
        if not self.mask_variants or unknown:
            raise ConfigError(f"mask_variants must be a non-empty subset of {MASK_VARIANTS}, got {self.mask_variants}")
        for name in ("parts_p", "cross_p", "color_match_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"SBIConfig.{name} is a probability in [0, 1], got {v}")
        if self.mask_variant_p is None:
            return
        p = np.asarray(self.mask_variant_p, np.float64)
        if p.shape != (len(self.mask_variants),) or (p < 0).any() or p.sum() <= 0:
            raise ConfigError(f"mask_variant_p needs one non-negative weight per mask variant "
                              f"({len(self.mask_variants)}), not all zero; got {self.mask_variant_p}",
                              fix="give one weight per variant, or mask_variant_p=None for equal odds")


# --- masks --------------------------------------------------------------------------------
def _outline(dense: np.ndarray) -> np.ndarray:
    return dense[list(WEBMORPH189_OUTLINE)] if len(dense) == 189 else dense


def _hull_mask(polygons, shape: tuple[int, int]) -> np.ndarray:
    """Union of the filled convex hulls of ``polygons`` (one (K, 2) array, or a list of them)."""
    import cv2

    if isinstance(polygons, np.ndarray):
        polygons = [polygons]
    m = np.zeros(shape, np.uint8)
    for points in polygons:
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


def has_layout(dense_landmarks) -> bool:
    """Dense landmarks in a layout with named parts (66 OpenSeeFace, 68 iBUG, 189 WebMorph points)?"""
    return dense_landmarks is not None and len(dense_landmarks) in (66, 68, 189)


def pick_variant(rng: np.random.Generator, cfg: SBIConfig = SBIConfig()) -> str:
    """One of ``cfg.mask_variants``, drawn with ``cfg.mask_variant_p``."""
    n = len(cfg.mask_variants)
    p = np.full(n, 1.0 / n) if cfg.mask_variant_p is None else np.asarray(cfg.mask_variant_p, np.float64)
    return cfg.mask_variants[int(rng.choice(n, p=p / p.sum()))]


def mask_polygons(dense_landmarks, variant: str = "full", extend: float = 0.25) -> list[np.ndarray]:
    """The polygons whose filled hulls (their union) make ``variant``'s mask, before any deformation.

    ``dense_landmarks``: (K, 2) points in a known layout (:func:`has_layout`), else the hull of
    all points whatever the variant. ``extend``: for ``extended`` on 66/68 points, how far the brows
    are moved away from the chin, as a fraction of the chin-to-brow distance.
    """
    if variant not in MASK_VARIANTS:
        raise ConfigError(f"unknown mask variant {variant!r}; expected one of {MASK_VARIANTS}")
    d = np.asarray(dense_landmarks, np.float64)
    if not has_layout(d):
        return [d]
    if len(d) == 189:
        parts = {"full": [WEBMORPH189_JAW + WEBMORPH189_INNER], "extended": [WEBMORPH189_OUTLINE],
                 "inner": [WEBMORPH189_INNER], "lower": [WEBMORPH189_LOWER],
                 "components": [*WEBMORPH189_EYE_BROW, WEBMORPH189_NOSE, WEBMORPH189_MOUTH]}[variant]
        return [d[list(ix)] for ix in parts]
    g = _ibug_groups(len(d))
    if variant == "full":
        return [d]
    if variant == "extended":
        brows = list(g["brows"])
        up = d[brows].mean(0) - d[lm66.CHIN]  # chin -> brow line, follows head roll
        return [np.concatenate([d, d[brows] + extend * up])]
    if variant == "inner":
        return [d[list(g["brows"] + g["eye_brow"][0] + g["eye_brow"][1] + g["nose"] + g["mouth"])]]
    if variant == "lower":
        return [d[list(g["lower"])]]
    return [d[list(ix)] for ix in (*g["eye_brow"], g["nose"], g["mouth"])]


def blend_mask(shape: tuple[int, int], rng: np.random.Generator, cfg: SBIConfig = SBIConfig(),
               landmarks=None, dense_landmarks=None, variant: str | None = None) -> np.ndarray:
    """The deformed, blurred mask in [0, 1] *before* the blend ratio (float32 HxW).

    ``variant`` (one of :data:`MASK_VARIANTS`; None: ``full``) applies to dense landmarks of a
    known layout; :func:`self_blend` draws it per sample. Without dense landmarks the 5-point or
    centred ellipse is used.
    """
    import cv2

    if has_layout(dense_landmarks):
        variant = variant or "full"
        extend = rng.uniform(*cfg.extend) if variant == "extended" and len(dense_landmarks) != 189 else 0.0
        polys = mask_polygons(dense_landmarks, variant, extend)
        if variant == "components" and len(polys) > 1 and rng.random() < cfg.parts_p:
            keep = rng.random(len(polys)) < 0.5
            keep[rng.integers(len(polys))] = True  # never empty
            polys = [p for p, k in zip(polys, keep) if k]
    else:
        polys = [face_points(shape, landmarks, dense_landmarks)]
    k = rng.uniform(*cfg.hull_scale)
    polys = [p.mean(0) + (p - p.mean(0)) * k for p in polys]  # each part about its own centroid
    mask = _elastic(_hull_mask(polys, shape), rng, cfg)
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
    contrast = 1 + rng.uniform(-cfg.contrast, cfg.contrast)
    x = (x - mean) * contrast + mean + 255 * rng.uniform(-cfg.brightness, cfg.brightness)
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


def align_donor(donor_bgr: np.ndarray, donor_points, target_points, shape: tuple[int, int]) -> np.ndarray | None:
    """Another person's crop warped onto the target's face: the similarity transform (rotation, uniform
    scale, shift) that maps ``donor_points`` onto ``target_points`` (the same landmark layout), applied
    to ``donor_bgr`` at ``shape`` (h, w). None when the points do not give a transform (too few, or
    layouts that differ)."""
    import cv2

    a, b = np.asarray(donor_points, np.float32), np.asarray(target_points, np.float32)
    if a.ndim != 2 or a.shape != b.shape or len(a) < 3:
        return None
    m, _ = cv2.estimateAffinePartial2D(a.reshape(-1, 1, 2), b.reshape(-1, 1, 2), method=cv2.LMEDS)
    if m is None or not np.isfinite(m).all():
        return None
    return cv2.warpAffine(donor_bgr, m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _match_color(src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """``src`` with the per-channel mean and spread of ``tgt`` in Lab (Reinhard's colour transfer)."""
    import cv2

    s = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).astype(np.float32)
    t = cv2.cvtColor(tgt, cv2.COLOR_BGR2LAB).astype(np.float32)
    sm, ss = s.reshape(-1, 3).mean(0), s.reshape(-1, 3).std(0) + 1e-3
    tm, ts = t.reshape(-1, 3).mean(0), t.reshape(-1, 3).std(0) + 1e-3
    out = (s - sm) * (ts / ss) + tm
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def self_blend(crop_bgr: np.ndarray, landmarks=None, dense_landmarks=None, *, rng: np.random.Generator,
               cfg: SBIConfig = SBIConfig(), donor: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One real crop (uint8 BGR, landmarks in its pixels) -> (pseudo-fake uint8 BGR, mask float32 HxW).

    The mask is the final one (deformed, blurred, times the blend ratio), so
    ``fake == mask * source' + (1 - mask) * crop`` and ``fake[mask == 0] == crop[mask == 0]``.
    ``donor``: a cross-identity blend -- another person's face already aligned on this crop
    (:func:`align_donor`, same shape) is the source instead of the crop itself; it gets the same
    perturbations (after a colour match to the crop with ``cfg.color_match_p``).
    Same ``rng`` state -> same output.
    """
    from edge.media import as_bgr

    tgt = as_bgr(crop_bgr)
    src = tgt
    if donor is not None:
        src = as_bgr(donor)
        if src.shape != tgt.shape:
            raise ConfigError(f"donor shape {src.shape} differs from the crop's {tgt.shape}",
                              fix="align the donor with align_donor(..., shape=crop.shape[:2])")
        if rng.random() < cfg.color_match_p:
            src = _match_color(src, tgt)
    if rng.random() < cfg.color_p:
        src = _color(src, rng, cfg)
    if rng.random() < cfg.freq_p:
        src = _frequency(src, rng, cfg)
    src = _warp(src, rng, cfg)
    variant = pick_variant(rng, cfg) if has_layout(dense_landmarks) else None
    mask = blend_mask(tgt.shape[:2], rng, cfg, landmarks, dense_landmarks, variant)
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
        fake, mask = self_blend(read_image(s.path), s.landmarks, s.dense_landmarks,
                                rng=np.random.default_rng([seed, i]), cfg=cfg)
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
