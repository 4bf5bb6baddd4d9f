"""Forgery heatmaps: exact class-activation maps (CAM) from the model's last feature map, numpy + OpenCV only.

A model exported with ``ffd export --heatmap`` (the default for heads that are global-average-pool
+ linear) has a second output ``features`` = ``F`` (N, C, h, w), the feature map before pooling, and
its card holds the head's fake-class weight vector ``w`` (C,) and bias ``b``
(``card.extra["heatmap"]``; ``w_fake - w_real`` and ``b_fake - b_real`` for a two-logit head). Since

    logit = w . mean_hw(F) + b = mean_hw(sum_c w_c F_c) + b,

the map ``CAM = sum_c w_c F_c`` (:func:`cam`) is *exact*: its spatial mean plus ``b`` is the logit the
score came from (``score = sigmoid(logit)``), so a cell's CAM value is that cell's additive share of the
evidence for "fake" (positive) or "real" (negative). For display, :func:`normalise` keeps the positive
part and scales it to [0, 1], :func:`upsample` resizes it to the face crop (bilinear) and
:func:`overlay` blends a colour map over the crop. A runner fetches ``features`` only when asked
(:meth:`edge.runtime.base.Runner.infer_with_features`), and :class:`edge.forgery.ForgeryDetector`
computes maps only for faces at or above the card's threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

HEATMAP_KEY = "heatmap"  # card.extra key written by calib.export (kept equal to calib.export.HEATMAP_KEY)


@dataclass(frozen=True)
class CamHead:
    """The linear head of a GAP + linear model: fake-class weights over channels, bias, output name."""

    weights: np.ndarray  # (C,) float32
    bias: float
    output: str = "features"

    @property
    def channels(self) -> int:
        return int(self.weights.shape[0])


def cam_head(card) -> CamHead | None:
    """The :class:`CamHead` in a model card (``card.extra["heatmap"]``), or ``None`` when the card has none or it
    is malformed (the card comes from a file: anything but a list of finite numbers and a finite bias is refused)."""
    h = getattr(card, "extra", {}).get(HEATMAP_KEY) if card is not None else None
    if not isinstance(h, dict):
        return None
    w, b, out = h.get("weights"), h.get("bias"), h.get("output", "features")
    if not isinstance(w, list) or not w or not isinstance(out, str) or not out:
        return None
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w):
        return None
    wa = np.asarray(w, np.float32)
    if not np.isfinite(wa).all():
        return None
    return CamHead(wa, float(b), out)


def cam(features: np.ndarray, head: CamHead | np.ndarray) -> np.ndarray:
    """Raw class-activation maps (N, h, w) float32: ``sum_c w_c F_c``; ``mean_hw(cam) + bias`` is the logit.

    ``features``: (N, C, h, w) or one map (C, h, w) (then (h, w) comes back)."""
    w = head.weights if isinstance(head, CamHead) else np.asarray(head, np.float32)
    f = np.asarray(features, np.float32)
    one = f.ndim == 3
    if one:
        f = f[None]
    if f.ndim != 4 or f.shape[1] != w.shape[0]:
        raise ValueError(f"features of shape {tuple(np.shape(features))} do not match a head of {w.shape[0]} channels")
    out = np.einsum("nchw,c->nhw", f, w.astype(np.float32), optimize=True)
    return out[0] if one else out


def logits_from_cam(maps: np.ndarray, bias: float) -> np.ndarray:
    """The logits the maps explain: ``mean_hw(cam) + bias`` ((N,) for (N, h, w))."""
    return np.asarray(maps, np.float64).mean(axis=(-2, -1)) + float(bias)


def normalise(m: np.ndarray) -> np.ndarray:
    """ReLU, then scale each map to [0, 1] by its maximum (a map with no positive cell is all zeros)."""
    m = np.maximum(np.asarray(m, np.float32), 0.0)
    peak = m.max(axis=(-2, -1), keepdims=True)
    return np.divide(m, peak, out=np.zeros_like(m), where=peak > 0)


def upsample(m: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """One (h, w) map resized to ``size`` (side, or (height, width)) with bilinear interpolation (cv2.resize)."""
    import cv2

    hgt, wid = (size, size) if isinstance(size, int) else size
    return cv2.resize(np.asarray(m, np.float32), (int(wid), int(hgt)), interpolation=cv2.INTER_LINEAR)


def heatmap(features_one: np.ndarray, head: CamHead, size: int | tuple[int, int]) -> np.ndarray:
    """One face's display heatmap: CAM -> ReLU/normalise -> upsampled to the crop, float32 in [0, 1]."""
    return np.clip(upsample(normalise(cam(features_one, head)), size), 0.0, 1.0)


def overlay(crop_bgr: np.ndarray, heat: np.ndarray, alpha: float = 0.45, colormap: int | None = None) -> np.ndarray:
    """The heatmap (values in [0, 1], any size: resized to the crop) blended over a uint8 BGR crop (JET colours)."""
    import cv2

    crop = np.asarray(crop_bgr)
    if crop.ndim == 2:
        crop = cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR)
    h = np.asarray(heat, np.float32)
    if h.shape[:2] != crop.shape[:2]:
        h = upsample(h, crop.shape[:2])
    colour = cv2.applyColorMap(np.rint(np.clip(h, 0, 1) * 255).astype(np.uint8),
                               cv2.COLORMAP_JET if colormap is None else colormap)
    return cv2.addWeighted(colour, float(alpha), crop.astype(np.uint8), 1.0 - float(alpha), 0.0)


def encode_jpeg(img_bgr: np.ndarray, side: int | None = None, quality: int = 85) -> bytes | None:
    """JPEG bytes of an overlay (resized to ``side`` first when given), or ``None`` when OpenCV cannot encode it."""
    import cv2

    if side and img_bgr.shape[0] != side:
        img_bgr = cv2.resize(img_bgr, (side, side),
                             interpolation=cv2.INTER_AREA if img_bgr.shape[0] > side else cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", img_bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    return buf.tobytes() if ok else None


class HeatmapWriter:
    """Writes overlay images into a folder (``ffd detect --heatmaps DIR``) and never overwrites a file.

    ``write(stem, crop, heat)`` saves ``stem.jpg`` (``.png`` with ``ext=".png"``); when that name is taken -- a
    user's file, or an earlier run's overlay -- it picks ``stem_1.jpg``, ``stem_2.jpg``, ...: each file is created
    by a hard link, which never replaces a file, not even a concurrent writer's; it is written whole before it
    gets its name. The folder is created when missing.
    """

    def __init__(self, folder, ext: str = ".jpg", quality: int = 90):
        from pathlib import Path

        from .errors import ConfigError

        if ext not in (".jpg", ".png"):
            raise ConfigError(f"heatmap overlays are .jpg or .png, not {ext!r}")
        self.folder, self.ext, self.quality = Path(folder), ext, int(quality)
        if self.folder.exists() and not self.folder.is_dir():
            raise ConfigError("--heatmaps names a file, not a folder", path=self.folder,
                              fix="give a folder (created when missing) for the overlay images")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the heatmap folder: {e.strerror or e}", path=self.folder,
                              fix="give a writable folder for --heatmaps") from e
        self.written = 0

    def write(self, stem: str, crop_bgr: np.ndarray, heat: np.ndarray) -> str:
        """Overlay ``heat`` on ``crop_bgr``, save it under a fresh name; returns the path written."""
        import contextlib
        import errno
        import os
        import re
        import tempfile

        import cv2

        from .errors import ConfigError

        img = overlay(crop_bgr, heat)
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality] if self.ext == ".jpg" else []
        ok, buf = cv2.imencode(self.ext, img, params)
        if not ok:
            raise ConfigError("OpenCV could not encode a heatmap overlay", path=self.folder)
        stem = re.sub(r"[^\w.-]+", "_", stem)[:120].strip("._") or "face"
        fix = "give a writable folder with free space for --heatmaps"
        # written whole into a hidden temporary file first, then hard-linked under its name: a link never
        # replaces a file (FileExistsError: take the next name), and a run killed mid-write leaves no
        # half-written overlay under a real name
        tmp = None
        try:
            # mkstemp: a fresh name created exclusively, so no file of the user's and no other writer's is touched
            fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=self.folder)
            with os.fdopen(fd, "wb") as f:
                f.write(buf.tobytes())
            for i in range(10_000):
                p = self.folder / f"{stem}{'' if i == 0 else f'_{i}'}{self.ext}"
                try:
                    os.link(tmp, p)
                except FileExistsError:
                    continue
                except OSError as e:  # a filesystem without hard links (FAT/exFAT cards): exclusive create
                    if e.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP):
                        raise
                    try:
                        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                    except FileExistsError:
                        continue
                    with os.fdopen(fd, "wb") as f:
                        f.write(buf.tobytes())
                self.written += 1
                return str(p)
        except OSError as e:
            raise ConfigError(f"cannot write a heatmap overlay: {e.strerror or e}", path=self.folder, fix=fix) from e
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)  # our own temporary file, never another
        raise ConfigError(f"10000 overlays named {stem}* already exist", path=self.folder,
                          fix="give --heatmaps an empty folder")
