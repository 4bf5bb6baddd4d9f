"""Model registry and factory (after timm's ``register_model`` / ``create_model``).

Entry points are functions named ``family_variant`` decorated with :func:`register_model`
in ``train/models/``; they are imported on first use, not at start-up.
"""
from __future__ import annotations

import importlib
from typing import Callable

from edge.errors import ConfigError

_REGISTRY: dict[str, Callable] = {}
_MODEL_MODULES = ("train.models",)
_loaded = False


def register_model(fn: Callable) -> Callable:
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def _load() -> None:
    global _loaded
    if not _loaded:
        for m in _MODEL_MODULES:
            importlib.import_module(m)
        _loaded = True


def list_models(pattern: str = "*") -> list[str]:
    import fnmatch

    _load()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def declared_models(pattern: str = "*") -> list[str]:
    """Entry-point names declared in ``train/models/`` (read from the source, without importing torch:
    what ``ffd train --help`` lists)."""
    import fnmatch
    import re
    from pathlib import Path

    names = []
    for f in sorted((Path(__file__).parent / "models").glob("*.py")):
        names += re.findall(r"@register_model\s+def\s+(\w+)", f.read_text(encoding="utf-8"))
    return sorted(n for n in names if fnmatch.fnmatch(n, pattern))


def is_model(name: str) -> bool:
    _load()
    return name in _REGISTRY


def has_pretrained(name: str) -> bool:
    """Whether the entry point takes ``pretrained=`` (it has ImageNet weights to start from)."""
    import inspect

    _load()
    if name not in _REGISTRY:
        create_model(name)  # raises the unknown-name error with the list
    return "pretrained" in inspect.signature(_REGISTRY[name]).parameters


def create_model(name: str, **kwargs):
    """Build a registered model by name; unknown names raise with the list of known ones."""
    _load()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}",
                          fix="pick one of the listed names (`ffd train --help` lists them too)")
    return _REGISTRY[name](**kwargs)


# --------------------------------------------------------------------------------------
# what a checkpoint's ``model_kwargs`` may say (checked before anything is allocated)
# --------------------------------------------------------------------------------------
MAX_PARAMS = 100_000_000  # the largest registered model has 11 M; 100 M float32 parameters are 400 MB

# entry point -> the family of keyword arguments it takes (see _kwargs_schemas); a model missing
# here takes none from a checkpoint (tests/reliability/test_rel_hostile_models.py checks every registered
# model is listed)
MODEL_KWARGS_FAMILY = {
    "student_small": "head", "student_dw": "head", "student_tiny": "head",
    "mobilenetv2_100": "cnn", "efficientnet_lite0": "effnet", "efficientnet_lite2": "effnet",
    "teacher_dual": "dual", "teacher_dual_srm": "dual", "teacher_tiny": "dual",
    "teacher_dual_lite2": "dual_pretrained",
    "vit_tiny_patch8": "vit", "vit_tiny_patch16": "vit", "vit_mini_patch8": "vit", "vit_small_patch16": "vit",
}


def _kwargs_schemas() -> dict:
    """pydantic models (strict types, bounds, no other keys) of each family's keyword arguments."""
    global _SCHEMAS
    if _SCHEMAS:
        return _SCHEMAS
    from typing import Annotated, Literal

    from pydantic import ConfigDict, Field, Strict, create_model

    # every field defaults to None = "not given" (defaults are not validated), so an explicit null is refused
    def i(lo: int, hi: int):
        return Annotated[int, Strict(), Field(ge=lo, le=hi)]

    def f(lo: float, hi: float):
        return Annotated[float, Strict(), Field(ge=lo, le=hi, allow_inf_nan=False)]

    def ints(lo: int, hi: int, n: int = 8):
        return Annotated[list[Annotated[int, Strict(), Field(ge=lo, le=hi)]], Field(min_length=1, max_length=n)]

    cfg = ConfigDict(extra="forbid", strict=True)
    head = {"num_classes": i(1, 1000), "in_chans": i(1, 64), "drop_rate": f(0.0, 1.0)}
    backbones = Literal["efficientnet_lite0", "efficientnet_lite2", "mobilenetv2_100"]
    freq = Literal["fad", "srm"]
    fam = {
        "head": head,
        "cnn": {**head, "img_size": i(8, 4096)},
        "effnet": {**head, "img_size": i(8, 4096), "drop_path_rate": f(0.0, 1.0)},
        "dual": {**head, "spatial_widths": ints(1, 2048), "spatial_depths": ints(1, 16), "freq_widths": ints(1, 2048),
                 "freq_depths": ints(1, 16), "freq": freq, "dct_block": i(2, 32)},
        "dual_pretrained": {**head, "spatial": backbones, "freq_body": backbones, "freq": freq, "dct_block": i(2, 32)},
        "vit": {**head, "img_size": i(16, 1024), "patch_size": i(2, 64), "embed_dim": i(8, 2048), "depth": i(1, 48),
                "num_heads": i(1, 64), "mlp_ratio": f(0.25, 16.0), "qkv_bias": Annotated[bool, Strict()],
                "attn_drop_rate": f(0.0, 1.0), "drop_path_rate": f(0.0, 1.0)},
        "none": {},
    }
    _SCHEMAS = {k: create_model(f"{k}_kwargs", __config__=cfg, **{n: (t, None) for n, t in v.items()})
                for k, v in fam.items()}
    return _SCHEMAS


_SCHEMAS: dict = {}


def check_model_kwargs(name: str, kwargs) -> dict:
    """``kwargs`` for entry point ``name`` from a file: only the keyword arguments it takes, each of its type and
    within bounds (ConfigError naming them otherwise). Returns them unchanged."""
    import json

    from pydantic import ValidationError

    from edge.spec import error_loc

    if not is_model(name):
        create_model(name)  # the unknown-name error with the list of known ones
    if not isinstance(kwargs, dict):
        raise ConfigError(f"model_kwargs of {name!r} must be a JSON object, got {type(kwargs).__name__}")
    family = MODEL_KWARGS_FAMILY.get(name, "none")
    schema = _kwargs_schemas()[family]
    try:
        schema.model_validate_json(json.dumps(kwargs))  # JSON mode: lists stand for tuples, as in the file
    except (ValidationError, TypeError, ValueError) as e:
        if isinstance(e, ValidationError):
            why = "; ".join(f"{error_loc(x['loc'])}: {x['msg']} (got {repr(x.get('input'))[:40]})"
                            for x in e.errors()[:3])
        else:
            why = str(e)[:200]
        raise ConfigError(f"model_kwargs of {name!r} are refused: {why}",
                          fix=f"{name} takes {', '.join(sorted(schema.model_fields)) or 'no keyword arguments'} "
                              "within the bounds in train/registry.py") from None
    return kwargs


def count_params(name: str, kwargs: dict | None = None) -> int:
    """Parameters and buffers of ``create_model(name, **kwargs)``, built on torch's ``meta`` device (no memory)."""
    import torch

    with torch.device("meta"):
        model = create_model(name, **(kwargs or {}))
    return sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers())


def check_model_size(name: str, kwargs: dict | None = None, max_params: int = MAX_PARAMS) -> int:
    """:func:`count_params`, or ConfigError when it exceeds ``max_params`` (before anything is allocated)."""
    n = count_params(name, kwargs)
    if n > max_params:
        raise ConfigError(f"model {name!r} with {str(kwargs)[:120]} would have {n / 1e6:.0f} M parameters "
                          f"({4 * n / 2**30:.1f} GiB as float32), more than the {max_params / 1e6:.0f} M allowed",
                          fix="the checkpoint's model_kwargs are not ffd's; re-train or restore the checkpoint")
    return n
