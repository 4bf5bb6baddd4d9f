"""Competitive fine-tuning of two ViT branches with evidential, uncertainty-weighted fusion
(FFDBackbone, "Rethinking Backbone Design for Face Forgery Detection", TPAMI 2026), and
``train_vit``: scratch / MAE-initialised / competitive fine-tuning on real vs fake faces.

Both branches start from the same backbone (:func:`train.mae.load_backbone`) with their own
heads. For branch ``b`` with logits ``z_b`` (K = 2 classes), evidential deep learning
(Sensoy et al., "Evidential Deep Learning to Quantify Classification Uncertainty", NeurIPS
2018) gives

* evidence ``e_b = softplus(z_b)``, Dirichlet ``alpha_b = e_b + 1``, strength ``S_b = sum_k alpha_bk``,
* uncertainty ``u_b = K / S_b`` (1 with no evidence, -> 0 with a lot).

Fusion: weights ``w = softmax_b(-u_b)`` per face; the fused class token
``t = sum_b w_b * cls_b`` goes through a fusion head (training only). Loss:

``L = CE(fuse_head(t), y) + lambda_evd * sum_b L_evd(alpha_b, y) + lambda_dec * L_dec(cls_1, cls_2)``

* ``L_evd`` is Sensoy's expected squared error (their eq. 5),
  ``sum_k (y_k - p_k)^2 + p_k (1 - p_k) / (S + 1)`` with ``p = alpha / S``, plus the KL term
  ``lambda_t * KL(Dir(alpha~) || Dir(1))`` on the misleading evidence
  ``alpha~ = y + (1 - y) * alpha``, annealed ``lambda_t = min(1, t / anneal_steps)``;
* ``L_dec`` is the mean squared entry of the cross-correlation matrix of the batch-standardised
  class tokens of the two branches (0 when the branches' features are uncorrelated), which
  pushes the branches to learn different evidence.

Deployment keeps **one** branch: the first (``deploy_branch=0``). The branches are
exchangeable by construction (same initialisation, same loss), so keeping the first adds no
selection bias on the validation set; both branches' validation AUCs are reported in the
checkpoint metrics so the choice can be checked. The kept branch is a plain registry ViT
(its own head scores ``softmax(z)[1]``), so export and INT8 quantization are unchanged.
"""
from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models.vit import VisionTransformer
from .task import TrainTask


# --- the formulas --------------------------------------------------------------------------------
def evidence(logits: torch.Tensor, activation: str = "softplus") -> torch.Tensor:
    if activation == "softplus":
        return F.softplus(logits)
    if activation == "relu":
        return F.relu(logits)
    if activation == "exp":
        return torch.exp(logits.clamp(max=20))
    raise ValueError(f"unknown evidence activation {activation!r}")


def evidential_uncertainty(logits: torch.Tensor, activation: str = "softplus"):
    """-> (alpha (N,K), strength S (N,), uncertainty u = K / S (N,))."""
    alpha = evidence(logits, activation) + 1.0
    s = alpha.sum(dim=1)
    return alpha, s, logits.shape[1] / s


def fusion_weights(uncertainties: torch.Tensor) -> torch.Tensor:
    """(N, B) uncertainties -> (N, B) weights ``softmax(-u)`` over the branches."""
    return torch.softmax(-uncertainties, dim=1)


def kl_to_uniform_dirichlet(alpha: torch.Tensor) -> torch.Tensor:
    """KL(Dir(alpha) || Dir(1, ..., 1)) per row (Sensoy et al. 2018, eq. 4's regulariser)."""
    k = alpha.shape[1]
    s = alpha.sum(dim=1)
    return (torch.lgamma(s) - math.lgamma(k) - torch.lgamma(alpha).sum(dim=1)
            + ((alpha - 1) * (torch.digamma(alpha) - torch.digamma(s)[:, None])).sum(dim=1))


def evidential_mse_loss(alpha: torch.Tensor, y: torch.Tensor, kl_weight: float | torch.Tensor = 0.0) -> torch.Tensor:
    """Sensoy's expected squared error (eq. 5) + annealed KL on misleading evidence; batch mean.

    A tensor ``kl_weight`` (annealed on the device) is used as is, never read back to the host.
    """
    onehot = F.one_hot(y, alpha.shape[1]).to(alpha.dtype)
    s = alpha.sum(dim=1, keepdim=True)
    p = alpha / s
    mse = ((onehot - p) ** 2 + p * (1 - p) / (s + 1)).sum(dim=1)
    if torch.is_tensor(kl_weight) or kl_weight > 0:
        mse = mse + kl_weight * kl_to_uniform_dirichlet(onehot + (1 - onehot) * alpha)
    return mse.mean()


def decorrelation_loss(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean squared entry of the (D_a, D_b) cross-correlation of batch-standardised features."""
    za = (a - a.mean(0)) / (a.std(0, unbiased=False) + eps)
    zb = (b - b.mean(0)) / (b.std(0, unbiased=False) + eps)
    c = za.T @ zb / a.shape[0]
    return (c ** 2).mean()


# --- the two-branch model ------------------------------------------------------------------------
class CompetitiveViT(nn.Module):
    """Two ViT branches + a fusion head; ``forward`` gives the fused logits (training/analysis only)."""

    def __init__(self, branches: list[VisionTransformer], activation: str = "softplus"):
        super().__init__()
        if len(branches) < 2:
            raise ValueError("competitive fine-tuning needs at least two branches")
        self.branches = nn.ModuleList(branches)
        self.activation = activation
        d = branches[0].embed_dim
        self.fuse_head = nn.Linear(d, branches[0].num_classes)

    def forward_all(self, x: torch.Tensor) -> dict[str, Any]:
        cls = [b.forward_features(x)[:, 0] for b in self.branches]
        logits = [b.forward_head(c) for b, c in zip(self.branches, cls)]
        alphas, us = [], []
        for z in logits:
            a, _, u = evidential_uncertainty(z, self.activation)
            alphas.append(a)
            us.append(u)
        u = torch.stack(us, dim=1)  # (N, B)
        w = fusion_weights(u)
        fused = (w[..., None] * torch.stack(cls, dim=1)).sum(dim=1)
        return {"cls": cls, "logits": logits, "alpha": alphas, "u": u, "w": w, "fused_cls": fused,
                "fused_logits": self.fuse_head(fused)}

    def forward(self, x):
        return self.forward_all(x)["fused_logits"]


class CompetitiveTask(TrainTask):
    """``step((x, y)) -> {"loss", "ce", "evidential", "decorrelation", "u_mean"}``; ``model`` = the deployed branch."""

    def __init__(self, net: CompetitiveViT, model_name: str, model_kwargs: dict | None = None,
                 evidential_weight: float = 1.0, decorrelation_weight: float = 1.0, anneal_steps: int = 500,
                 deploy_branch: int = 0):
        super().__init__()
        self.net = net
        self.model_name, self.model_kwargs = model_name, dict(model_kwargs or {})
        self.evidential_weight, self.decorrelation_weight = evidential_weight, decorrelation_weight
        self.anneal_steps, self.deploy_branch = max(1, int(anneal_steps)), int(deploy_branch)
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))

    @property
    def model(self) -> nn.Module:  # the branch that is validated, checkpointed and deployed
        return self.net.branches[self.deploy_branch]

    def _kl_weight(self) -> torch.Tensor:  # on the buffer's device: no host sync per step
        return (self.steps_done.float() / self.anneal_steps).clamp(max=1.0)

    def kl_weight(self) -> float:
        return float(self._kl_weight())

    def forward(self, batch):
        x, y = batch[0], batch[1]
        out = self.net.forward_all(x)
        ce = F.cross_entropy(out["fused_logits"], y)
        lam = self._kl_weight()
        evd = sum(evidential_mse_loss(a, y, lam) for a in out["alpha"])
        dec = decorrelation_loss(out["cls"][0], out["cls"][1])
        if self.training:
            self.steps_done += 1
        return {"loss": ce + self.evidential_weight * evd + self.decorrelation_weight * dec, "ce": ce.detach(),
                "evidential": evd.detach(), "decorrelation": dec.detach(), "u_mean": out["u"].mean().detach(),
                "kl_weight": lam}


# --- fine-tuning entry point ------------------------------------------------------------------
def train_vit(data, out: str | os.PathLike, *, model: str = "vit_tiny_patch8", img_size: int | None = None,
              model_kwargs: dict | None = None, pretrained: str | os.PathLike | None = None, competitive: bool = False,
              sbi: bool = True, epochs: int = 10, batch_size: int = 32, lr: float = 3e-4, seed: int = 0,
              device: str = "auto", val: float = 0.1, test: float = 0.2, splits: dict | None = None,
              evidential_weight: float = 1.0, decorrelation_weight: float = 1.0,
              max_steps_per_epoch: int | None = None, progress: bool = False, log=print) -> dict[str, Any]:
    """Fine-tune a ViT on ``data`` split by :func:`train.data.split_samples` (``seed``); -> ``{path, metrics, ...}``.

    ``data``: dataset path(s) or samples; or pass ``splits={"train": [...], "val": [...]}``.
    With ``sbi`` every real face of train and val also yields a self-blended pseudo-fake.
    ``out`` is a folder: the trainer writes ``best.pt`` (by validation AUC) and ``last.pt``; the
    returned ``path`` is ``best.pt``. The test split is never touched here.
    """
    from edge.errors import ConfigError
    from .data import FaceDataset, split_samples
    from .data.spec import spec_for_data
    from .mae import load_backbone
    from .recipes import load_pooled
    from .registry import create_model
    from .sbi import SBIConfig
    from .task import ClassifierTask
    from .trainer import FitConfig, fit, make_loader, predict_scores, resolve_device, seed_everything

    if splits is None:
        splits = split_samples(load_pooled(data), val=val, test=test, seed=seed)
    seed_everything(seed)
    kw = dict(model_kwargs or {})
    if img_size is not None:
        kw["img_size"] = img_size

    def make_branch() -> VisionTransformer:
        m = create_model(model, **kw)
        if not isinstance(m, VisionTransformer):
            raise ConfigError(f"{model!r} is not a ViT", fix="ffd train vit takes vit_* models")
        if pretrained is not None:
            load_backbone(m, pretrained)
        return m

    first = make_branch()
    spec = spec_for_data(data if data is not None else [], first.patch_embed.img_size)
    sbi_cfg = SBIConfig() if sbi else None
    train_ds = FaceDataset(splits["train"], spec, sbi=sbi_cfg, seed=seed, augment=True)
    val_ds = FaceDataset(splits["val"], spec, sbi=sbi_cfg, seed=seed + 10_000)
    train_loader = make_loader(train_ds, batch_size, train=True, seed=seed)
    val_loader = make_loader(val_ds, batch_size * 2, train=False, seed=seed)
    if competitive:
        net = CompetitiveViT([first, make_branch()])
        task = CompetitiveTask(net, model, kw, evidential_weight, decorrelation_weight,
                               anneal_steps=max(1, epochs * len(train_loader) // 2))
    else:
        task = ClassifierTask(first, model, kw)
    variant = "competitive" if competitive else ("mae_finetune" if pretrained else "scratch")
    cfg = FitConfig(epochs=epochs, lr=lr, seed=seed, device=device, spec=spec, progress=progress,
                    warmup_steps=max(1, len(train_loader) // 2), max_steps_per_epoch=max_steps_per_epoch,
                    log=log, card_extra={"variant": variant, "pretrained": str(pretrained) if pretrained else None},
                    config={"variant": variant, "model": model, "model_kwargs": kw, "pretrained": str(pretrained),
                            "sbi": sbi, "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                            "evidential_weight": evidential_weight, "decorrelation_weight": decorrelation_weight})
    res = fit(task, train_loader, val_loader, cfg, out)
    extra: dict[str, Any] = {}
    if competitive:  # both branches (and the fusion) at the final epoch, for the record
        from .metrics import auc

        dev = resolve_device(device)
        task.eval()
        for i, br in enumerate(task.net.branches):
            s, y = predict_scores(br, val_loader, dev)
            extra[f"val_auc_branch{i}"] = auc(s, y)
        s, y = predict_scores(task.net, val_loader, dev)
        extra["val_auc_fused"] = auc(s, y)
        log(" ".join(f"{k}={v:.4f}" for k, v in extra.items()))
    best = res["history"][res["best_epoch"] - 1] if res["best_epoch"] > 0 else {}
    return {"path": res["best"], "last": res["last"], "variant": variant,
            "metrics": {"auc": best.get("val_auc", float("nan")), "acc": best.get("val_acc", float("nan")),
                        "best_epoch": res["best_epoch"], **extra},
            "history": res["history"], "splits": {k: len(v) for k, v in splits.items()}}
