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
import functools
import hashlib
import json
import numbers
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .errors import ConfigError, FfdError, ModelError

SPEC_VERSION = 1
META_KEY = "ffd.card"  # key of the ModelCard JSON in ONNX metadata_props / engine sidecars

_CROP_MODES = ("square", "align5")
_DETECTORS = ("yunet", "haar", "none")
_COLOR_ORDERS = ("RGB", "BGR")
_INTERPOLATIONS = ("linear", "area", "cubic")  # the keys of INTERPOLATION_FLAGS below
_OUTPUTS = ("prob_fake",)

# --- bounds of the model card schema (one place; docs/reliability.md lists them) --------------
SIZE_RANGE = (8, 1024)          # crop side in px: 1024 px is 12 MB per face as float32, 100000 px would be 120 GB
MARGIN_RANGE = (1.0, 4.0)       # crop side / larger side of the detector box
MEAN_RANGE = (0.0, 1.0)         # per-channel mean of x/255
STD_RANGE = (1e-3, 10.0)        # per-channel std of x/255: > 0, and not so small that 1/std overflows
UNCERTAIN_BAND_RANGE = (0.0, 0.5)
# a card is a few KB (extra holds evaluation tables); bounds what a hostile file makes us parse
CARD_MAX_BYTES = 1 << 20
CARD_MAX_DEPTH = 32             # JSON nesting: the card itself uses 3 levels
CARD_MAX_NODES = 100_000        # values in the whole card (dicts, lists and scalars)
NAME_MAX_CHARS = 200
CARD_FIX = ("ffd writes the card (`ffd train`, `ffd export`, `ffd build-engine`): re-create this file with ffd "
            "from its source instead of editing the card by hand")


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
        # the card schema (types, bounds, known values) is the one check; numpy numbers become plain ones and
        # sequences tuples, so equality and hashing are stable after JSON round trips
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k in ("det_score_threshold", "margin"):
            d[k] = _as_number(d[k])
        d["size"], d["version"] = _as_number(d["size"], True), _as_number(d["version"], True)
        for k in ("mean", "std"):
            if isinstance(d[k], (list, tuple, np.ndarray)):
                d[k] = [_as_number(v) for v in d[k]]
        for k, v in validate_spec_dict(d, error=ConfigError).items():
            object.__setattr__(self, k, v)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | os.PathLike | None = None,
                  error: type[FfdError] = ConfigError) -> "PreprocessSpec":
        """Validated against the spec schema; ``error`` (naming ``path``) says which field is wrong."""
        if isinstance(d, dict):
            unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
            if unknown:
                raise error(f"unknown preprocessing spec fields {error_loc(sorted(map(str, unknown))[:10])}", path=path,
                            fix="upgrade ffd-edge to the version that wrote this file")
        return cls(**validate_spec_dict(d, path, error))

    @classmethod
    def from_json(cls, s: str, path: str | os.PathLike | None = None,
                  error: type[FfdError] = ConfigError) -> "PreprocessSpec":
        return cls.from_dict(load_bounded_json(s, "the preprocessing spec", path, error), path, error)

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

    def __post_init__(self):
        if not isinstance(self.spec, PreprocessSpec):
            raise ConfigError(f"ModelCard.spec must be a PreprocessSpec, got {type(self.spec).__name__}")
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "spec"}
        d["threshold"], d["uncertain_band"] = _as_number(d["threshold"]), _as_number(d["uncertain_band"])
        d["spec"] = self.spec.to_dict()
        for k, v in validate_card_dict(d, error=ConfigError).items():
            if k not in ("spec", "extra"):  # extra is kept as given (the caller's dict, validated)
                object.__setattr__(self, k, v)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["spec"] = self.spec.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any], path: str | os.PathLike | None = None) -> "ModelCard":
        """The card in a model file, validated against the card schema: ModelError naming ``path`` and the field."""
        v = validate_card_dict(d, path)
        return cls(**{**v, "spec": PreprocessSpec(**v["spec"])})

    @classmethod
    def from_json(cls, s: str | bytes, path: str | os.PathLike | None = None) -> "ModelCard":
        """The card JSON of a model file (size and nesting bounded before parsing), validated."""
        return cls.from_dict(load_bounded_json(s, "the model card", path), path)

    def model_id(self) -> str:
        """Identity used to invalidate cached results (screening) when the model changes."""
        return f"{self.name}@{self.version}:{hashlib.sha256(self.to_json().encode()).hexdigest()[:12]}"

    def label(self, score: float) -> str:
        if self.uncertain_band > 0 and abs(score - self.threshold) < self.uncertain_band:
            return "uncertain"
        return "fake" if score >= self.threshold else "real"

    def replace(self, **kw) -> "ModelCard":
        return dataclasses.replace(self, **kw)


# --------------------------------------------------------------------------------------
# the one schema of the model card (pydantic, imported on first use: `import edge` stays light)
# --------------------------------------------------------------------------------------
def json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` (brackets inside strings do not count), without parsing it."""
    import re

    depth = deepest = 0
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', '""', text):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _check_shape(obj: Any, what: str, path, error: type[FfdError]) -> None:
    """Bound the nesting and the number of values of decoded JSON (iteratively: no recursion to exhaust)."""
    stack, nodes = [(obj, 1)], 0
    while stack:
        o, d = stack.pop()
        nodes += 1
        if d > CARD_MAX_DEPTH or nodes > CARD_MAX_NODES:
            raise error(f"{what} nests deeper than {CARD_MAX_DEPTH} levels or holds more than {CARD_MAX_NODES} "
                        "values", path=path, fix=CARD_FIX)
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, (list, tuple)):
            stack.extend((v, d + 1) for v in o)


def load_bounded_json(text: str | bytes, what: str = "the model card", path: str | os.PathLike | None = None,
                      error: type[FfdError] = ModelError, max_bytes: int = CARD_MAX_BYTES) -> Any:
    """``json.loads(text)`` for JSON from a model file, with its size and nesting bounded first.

    A hostile file cannot make the parser recurse (``RecursionError``), allocate (a 100 MB
    card) or choke on a 10,000-digit number: each is ``error`` naming ``path``.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise error(f"{what} is not UTF-8 text: {e}", path=path, fix=CARD_FIX) from None
    if not isinstance(text, str):
        raise error(f"{what} is a {type(text).__name__}, not JSON text", path=path, fix=CARD_FIX)
    if len(text) > max_bytes:
        raise error(f"{what} is {len(text)} characters long, more than the {max_bytes} allowed", path=path,
                    fix=CARD_FIX)
    if json_depth(text) > CARD_MAX_DEPTH:
        raise error(f"{what} nests deeper than {CARD_MAX_DEPTH} levels", path=path, fix=CARD_FIX)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, and int() beyond 4300 digits
        raise error(f"{what} is not valid JSON: {str(e)[:200]}", path=path, fix=CARD_FIX) from None
    _check_shape(obj, what, path, error)
    return obj


@functools.cache
def _schemas():
    """(spec schema, card schema): pydantic models with the types and bounds of every field, built from
    the dataclasses' fields and defaults so that the two cannot drift apart."""
    from typing import Annotated, Literal

    from pydantic import BaseModel, ConfigDict, Field, Strict, create_model

    def real(lo: float, hi: float):
        return Annotated[float, Strict(), Field(ge=lo, le=hi, allow_inf_nan=False)]

    def triple(lo: float, hi: float):
        return Annotated[tuple[real(lo, hi), real(lo, hi), real(lo, hi)], Field(strict=False)]  # JSON lists too

    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, hide_input_in_errors=False)
    spec_types = {
        "detector": Literal[_DETECTORS],
        "det_score_threshold": real(0.0, 1.0),
        "crop_mode": Literal[_CROP_MODES],
        "margin": real(*MARGIN_RANGE),
        "size": Annotated[int, Strict(), Field(ge=SIZE_RANGE[0], le=SIZE_RANGE[1])],
        "color_order": Literal[_COLOR_ORDERS],
        "mean": triple(*MEAN_RANGE),
        "std": triple(*STD_RANGE),
        "interpolation": Literal[_INTERPOLATIONS],
        "version": Annotated[int, Strict(), Field(ge=1, le=SPEC_VERSION)],
    }
    spec_fields = {f.name: (spec_types[f.name], f.default) for f in dataclasses.fields(PreprocessSpec)}
    Spec = create_model("PreprocessSpecSchema", __config__=config, **spec_fields)
    card_types = {
        "name": Annotated[str, Strict(), Field(min_length=1, max_length=NAME_MAX_CHARS)],
        "spec": Spec,
        "threshold": real(0.0, 1.0),
        "uncertain_band": real(*UNCERTAIN_BAND_RANGE),
        "version": Annotated[str, Strict(), Field(max_length=NAME_MAX_CHARS)],
        "output": Literal[_OUTPUTS],
        "extra": Annotated[dict[str, Any], Field(strict=False)],
    }
    card_fields = {}
    for f in dataclasses.fields(ModelCard):
        default = f.default if f.default is not dataclasses.MISSING else (
            Field(default_factory=f.default_factory) if f.default_factory is not dataclasses.MISSING else ...)
        card_fields[f.name] = (card_types[f.name], default)
    Card = create_model("ModelCardSchema", __config__=config, **card_fields)
    assert issubclass(Card, BaseModel)
    return Spec, Card


def error_loc(loc) -> str:
    """``spec.size`` from a pydantic error location; keys that are not plain names (newlines, control
    characters, long text from a hostile file) are shown as short ``repr``s, so the message stays one line."""
    parts = []
    for x in loc:
        if isinstance(x, str) and not (x.isidentifier() and len(x) <= 40):
            r = repr(x)
            x = r if len(r) <= 40 else r[:37] + "..."
        parts.append(str(x))
    return ".".join(parts) or "(top level)"


def _schema_error(e, what: str, path, error: type[FfdError]) -> FfdError:
    """One line from a pydantic ValidationError: each bad field, what it must be, what it was."""
    parts = []
    for err in e.errors()[:3]:
        loc = error_loc(err["loc"])
        got = repr(err.get("input"))
        got = got if len(got) <= 60 else got[:57] + "..."
        parts.append(f"{loc}: {err['msg']} (got {got})")
    more = f" and {e.error_count() - 3} more" if e.error_count() > 3 else ""
    return error(f"{what} is invalid: " + "; ".join(parts) + more, path=path, fix=CARD_FIX)


def _validate(which: int, d: Any, what: str, path, error: type[FfdError]) -> dict:
    from pydantic import ValidationError

    if not isinstance(d, dict):
        raise error(f"{what} must be a JSON object, got {type(d).__name__}", path=path, fix=CARD_FIX)
    _check_shape(d, what, path, error)
    try:
        return _schemas()[which].model_validate(d).model_dump()
    except ValidationError as e:
        raise _schema_error(e, what, path, error) from None


def validate_spec_dict(d: Any, path: str | os.PathLike | None = None, error: type[FfdError] = ConfigError,
                       what: str = "the preprocessing spec") -> dict:
    """``d`` checked against the spec schema (types, bounds, known values) -> the normalised field dict."""
    return _validate(0, d, what, path, error)


def validate_card_dict(d: Any, path: str | os.PathLike | None = None, error: type[FfdError] = ModelError,
                       what: str = "the model card") -> dict:
    """``d`` checked against the card schema (the spec nested) -> the normalised field dict, or ``error``
    naming ``path``: what every loader of a model file (ONNX, engine sidecar, checkpoint) calls."""
    return _validate(1, d, what, path, error)


def _as_number(v: Any, integer: bool = False) -> Any:
    """numpy and other real numbers as plain float/int (construction in code); anything else unchanged,
    for the schema to refuse (strings, bools, None)."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return v
    if integer:
        return int(v) if isinstance(v, numbers.Integral) else v
    return float(v)


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
