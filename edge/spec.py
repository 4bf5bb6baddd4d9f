"""The preprocessing spec and the model card that travel with the weights.

One frozen :class:`PreprocessSpec` says how a face becomes a tensor: which detector
found it, how the crop is made (square box grown by ``margin`` or 5-point alignment),
its output size, colour order and normalisation. Training, calibration and every
runtime call :func:`preprocess` / :func:`edge.faces.crop_face` with the same spec, and
the spec is stored in checkpoints, in ONNX ``metadata_props`` and in engine sidecars
(as :class:`ModelCard`, which adds the model name, version and decision threshold),
so a deployed model always crops faces the way it was trained.

Convention: images are ``uint8`` BGR (OpenCV's order) on the way in; the tensor is
``float32`` NCHW in ``spec.color_order`` normalised by ``(x/255 - mean) / std``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, ModelError

SPEC_VERSION = 1
META_KEY = "ffd.card"  # key of the ModelCard JSON in ONNX metadata_props / engine sidecars

_CROP_MODES = ("square", "align5")
_DETECTORS = ("yunet", "haar", "none")


@dataclass(frozen=True)
class PreprocessSpec:
    """How a face crop is made and normalised. Frozen: a model has exactly one."""

    detector: str = "yunet"
    det_score_threshold: float = 0.6
    crop_mode: str = "square"  # "square": box grown by margin; "align5": similarity warp on 5 landmarks
    margin: float = 1.3  # side of the square crop relative to the larger side of the detector box
    size: int = 128  # output side in pixels
    color_order: str = "RGB"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "linear"  # cv2.INTER_LINEAR: also what the runtime uses on Jetson
    version: int = SPEC_VERSION

    def __post_init__(self):
        if self.crop_mode not in _CROP_MODES:
            raise ConfigError(f"crop_mode must be one of {_CROP_MODES}, got {self.crop_mode!r}")
        if self.detector not in _DETECTORS:
            raise ConfigError(f"detector must be one of {_DETECTORS}, got {self.detector!r}")
        if self.color_order not in ("RGB", "BGR"):
            raise ConfigError(f"color_order must be RGB or BGR, got {self.color_order!r}")
        if not (self.size >= 8 and self.margin >= 1.0):
            raise ConfigError(f"size must be >= 8 and margin >= 1.0 (got size={self.size}, margin={self.margin})")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need three values each, std > 0")
        # normalise sequences to tuples so equality and hashing are stable after JSON round trips
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PreprocessSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown preprocessing spec fields {sorted(unknown)}",
                              fix="upgrade ffd-edge to the version that wrote this model")
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> "PreprocessSpec":
        return cls.from_dict(json.loads(s))

    def fingerprint(self) -> str:
        """Short hash of every field: two crops are interchangeable iff fingerprints match."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def replace(self, **kw) -> "PreprocessSpec":
        return dataclasses.replace(self, **kw)


@dataclass(frozen=True)
class ModelCard:
    """Everything a runtime needs besides the weights: identity, spec and decision rule.

    ``threshold`` is applied to the fake probability; scores inside
    ``[threshold - uncertain_band, threshold + uncertain_band)`` are reported as
    ``"uncertain"`` when ``uncertain_band > 0``.
    """

    name: str
    spec: PreprocessSpec = field(default_factory=PreprocessSpec)
    threshold: float = 0.5
    uncertain_band: float = 0.0
    version: str = "0"
    output: str = "prob_fake"  # the exported graph outputs P(fake) per face, shape (N,)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        d = dict(d)
        try:
            d["spec"] = PreprocessSpec.from_dict(d.get("spec", {}))
            return cls(**d)
        except TypeError as e:
            raise ModelError(f"model card is malformed: {e}") from e

    @classmethod
    def from_json(cls, s: str) -> "ModelCard":
        try:
            return cls.from_dict(json.loads(s))
        except json.JSONDecodeError as e:
            raise ModelError(f"model card is not valid JSON: {e}") from e

    def model_id(self) -> str:
        """Identity used to invalidate cached results (screening) when the model changes."""
        return f"{self.name}@{self.version}:{hashlib.sha256(self.to_json().encode()).hexdigest()[:12]}"

    def label(self, score: float) -> str:
        if self.uncertain_band > 0 and abs(score - self.threshold) < self.uncertain_band:
            return "uncertain"
        return "fake" if score >= self.threshold else "real"

    def replace(self, **kw) -> "ModelCard":
        return dataclasses.replace(self, **kw)


INTERPOLATION_FLAGS = {"linear": 1, "area": 3, "cubic": 2}  # cv2.INTER_* values, documented and stable in OpenCV


def normalize(crops: np.ndarray | Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """uint8 BGR crops (N,H,W,3) already at ``spec.size`` -> float32 NCHW tensor per the spec."""
    x = np.asarray(crops)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ConfigError(f"expected crops of shape (N,H,W,3), got {x.shape}")
    if x.shape[1] != spec.size or x.shape[2] != spec.size:
        raise ConfigError(f"crops are {x.shape[1]}x{x.shape[2]} but the spec says {spec.size}x{spec.size}")
    if spec.color_order == "RGB":
        x = x[..., ::-1]
    mean = np.asarray(spec.mean, np.float32) * 255.0
    inv_std = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
    out = (x.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def resize_crop(crop_bgr: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Resize an already cropped face to the spec's size (used for datasets of ready crops)."""
    import cv2

    if crop_bgr.shape[0] == spec.size and crop_bgr.shape[1] == spec.size:
        return crop_bgr
    return cv2.resize(crop_bgr, (spec.size, spec.size), interpolation=INTERPOLATION_FLAGS[spec.interpolation])


def preprocess(crops_bgr: Sequence[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Face crops (any size, uint8 BGR) -> the model's input tensor. The one path for all stages."""
    return normalize(np.stack([resize_crop(c, spec) for c in crops_bgr]), spec)
