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
