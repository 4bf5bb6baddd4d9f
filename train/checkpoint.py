"""Checkpoints that carry everything a later stage needs, loadable with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers and JSON strings (no pickled objects), so
``torch.load(path, weights_only=True)`` reads it and a malicious file cannot run code:

* ``format``: ``"ffd-ckpt-1"``
* ``model_name`` / ``model_kwargs``: registry entry point and its keyword arguments (JSON)
* ``card``: the :class:`edge.spec.ModelCard` JSON (preprocessing spec, threshold, version)
* ``config`` / ``metrics``: JSON of the training config and the last evaluation
* ``state_dict``: model weights; ``train_state``: optimizer/scheduler/epoch/RNG for resuming
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edge.errors import ConfigError, ModelError
from edge.spec import CARD_MAX_BYTES, ModelCard, load_bounded_json

FORMAT = "ffd-ckpt-1"


def save_checkpoint(path: str | os.PathLike, model, card: ModelCard, *, model_kwargs: dict | None = None,
                    config: dict | None = None, metrics: dict | None = None, train_state: dict | None = None) -> Path:
    """Write atomically (temp file + rename) so an interrupted save never corrupts the last good checkpoint."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FORMAT,
        "model_name": card.name,
        "model_kwargs": json.dumps(model_kwargs or {}, sort_keys=True),
        "card": card.to_json(),
        "config": json.dumps(config or {}, sort_keys=True, default=str),
        "metrics": json.dumps(metrics or {}, sort_keys=True, default=float),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    if train_state is not None:
        blob["train_state"] = train_state
    tmp = path.with_name(path.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load the raw dict safely (``weights_only=True``); JSON fields are decoded."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError("checkpoint not found", path=path, fix="check the path, or train one with `ffd train`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ModelError(f"refused to load: the file holds objects other than tensors and plain data ({e})",
                         path=path, fix="only load ffd checkpoints; never load pickles from untrusted sources") from e
    except Exception as e:  # noqa: BLE001 - garbage makes the unpickler raise anything (IndexError, KeyError, ...)
        raise ModelError(f"checkpoint is corrupt or not a torch file: {type(e).__name__}: {e}", path=path,
                         fix="re-train or restore the checkpoint") from e
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        got = blob.get("format") if isinstance(blob, dict) else type(blob).__name__
        raise ModelError(f"not an ffd checkpoint (format {got!r})",
                         path=path, fix="pass a checkpoint written by `ffd train`")
    try:
        for k in ("model_kwargs", "config", "metrics"):
            blob[k] = load_bounded_json(blob[k], f"the checkpoint's {k}", path, max_bytes=16 * CARD_MAX_BYTES)
        blob["card"] = ModelCard.from_json(blob["card"], path)  # the card schema: types, bounds, nesting
        blob["model_name"], blob["state_dict"]  # noqa: B018 - required fields
    except (KeyError, TypeError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise ModelError(f"the ffd checkpoint is incomplete or damaged ({type(e).__name__}: {e})", path=path,
                         fix="re-train or restore the checkpoint") from e
    if not isinstance(blob["model_name"], str) or not isinstance(blob["model_kwargs"], dict) \
            or not isinstance(blob["state_dict"], dict):
        raise ModelError("the ffd checkpoint is damaged: model_name must be a string, model_kwargs a JSON object "
                         "and state_dict a dict of tensors", path=path, fix="re-train or restore the checkpoint")
    return blob


def load_checkpoint(path: str | os.PathLike, expect_model: str | None = None):
    """-> (model in eval mode, ModelCard, raw dict). Refuses a checkpoint of another architecture."""
    from .registry import check_model_kwargs, check_model_size, create_model

    blob = read_checkpoint(path)
    name = blob["model_name"]
    if expect_model and name != expect_model:
        raise ModelError(f"checkpoint holds a {name!r} model, expected {expect_model!r}", path=path,
                         fix=f"pass a {expect_model} checkpoint")
    kwargs = blob["model_kwargs"]
    try:  # a file's kwargs may only be those the model takes, within bounds, and the model is sized before it exists
        check_model_kwargs(name, kwargs)
        check_model_size(name, kwargs)
    except ConfigError as e:
        raise ModelError(e.message, path=path, fix=e.fix) from None
    except (TypeError, ValueError, AssertionError, RuntimeError) as e:  # the entry point refused the combination
        raise ModelError(f"checkpoint's model_kwargs do not build model {name!r}: {type(e).__name__}: {str(e)[:200]}",
                         path=path, fix="re-train or restore the checkpoint") from e
    model = create_model(name, **kwargs)
    try:
        missing, unexpected = model.load_state_dict(blob["state_dict"], strict=False)
    except RuntimeError as e:  # same keys, other shapes: strict=False does not cover size mismatches
        raise ModelError(f"checkpoint does not fit model {name!r}: {str(e).strip().splitlines()[-1].strip()[:300]}",
                         path=path, fix="the checkpoint is of another architecture or version; re-train or pick "
                                        "the right file") from e
    if missing or unexpected:
        raise ModelError(f"checkpoint does not fit model {name!r}: missing {list(missing)[:5]}, "
                         f"unexpected {list(unexpected)[:5]}", path=path,
                         fix="the checkpoint is of another architecture or version; re-train or pick the right file")
    model.eval()
    return model, blob["card"], blob


def update_card(path: str | os.PathLike, change) -> ModelCard:
    """Rewrite the card of a checkpoint in place (atomically): ``change(extra) -> extra``."""
    import torch

    blob = read_checkpoint(path)
    raw = torch.load(path, map_location="cpu", weights_only=True)
    card = blob["card"].replace(extra=change(dict(blob["card"].extra)))
    raw["card"] = card.to_json()
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    torch.save(raw, tmp)
    os.replace(tmp, path)
    return card
