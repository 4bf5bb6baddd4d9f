"""Training tasks: the unit the generic loop in :mod:`train.trainer` drives (after timm's
distillation task objects).

A task is an ``nn.Module`` whose ``forward(batch)`` (alias :meth:`TrainTask.step`) returns a
dict of scalar losses with the total under ``"loss"``. Its *submodules* are exactly what is
trained (the model plus any projectors/adapters): the optimizer takes
``task.trainable_parameters()``, resuming restores ``task.state_dict()``, DDP wraps the task
itself so gradients of every trainable submodule are synchronised. Frozen helpers (a
teacher) are kept OUT of the module tree with :meth:`TrainTask.set_frozen`: they stay in
eval mode, get no gradients, are not saved in ``train_state``, yet follow ``task.to(device)``.

Subclasses set ``self.model`` (the ``nn.Module`` that is evaluated on the validation set and
saved in the checkpoint; ``model(x)`` -> logits (N, 2)), ``self.model_name`` (its registry
name) and ``self.model_kwargs`` (its registry kwargs), and implement :meth:`forward`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F


class TrainTask(nn.Module):
    model: nn.Module
    model_name: str
    model_kwargs: dict[str, Any]

    def __init__(self):
        super().__init__()
        self.__dict__["_frozen"] = {}

    # --- frozen helpers (teacher) ------------------------------------------------------
    def set_frozen(self, name: str, module: nn.Module) -> nn.Module:
        module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.__dict__["_frozen"][name] = module
        self.__dict__[name] = module
        return module

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        for m in self.__dict__["_frozen"].values():
            m._apply(fn, recurse)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.__dict__["_frozen"].values():
            m.eval()
        return self

    # --- the interface the trainer uses ------------------------------------------------
    def step(self, batch) -> dict[str, torch.Tensor]:
        return self(batch)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model being trained (used for validation)."""
        return self.model(x)


class ClassifierTask(TrainTask):
    """Plain cross-entropy (``--kd none``; also teacher training).

    If the model has ``forward_branch_heads`` (the dual-branch teacher), ``aux_weight`` adds
    the cross-entropy of each branch's auxiliary head so both branches stay discriminative.
    """

    def __init__(self, model: nn.Module, model_name: str, model_kwargs: dict | None = None,
                 aux_weight: float = 0.5, label_smoothing: float = 0.0):
        super().__init__()
        self.model, self.model_name, self.model_kwargs = model, model_name, dict(model_kwargs or {})
        self.aux_weight, self.label_smoothing = aux_weight, label_smoothing

    def forward(self, batch):
        x, y = batch[0], batch[1]
        feats = self.model.forward_features(x)
        logits = self.model.forward_head(feats)
        ce = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        out = {"ce": ce}
        loss = ce
        if self.aux_weight > 0 and hasattr(self.model, "forward_branch_heads"):
            for k, lg in self.model.forward_branch_heads(feats).items():
                out[f"ce_{k}"] = F.cross_entropy(lg, y, label_smoothing=self.label_smoothing)
                loss = loss + self.aux_weight * out[f"ce_{k}"]
        out["loss"] = loss
        return out
