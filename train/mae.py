"""Masked-autoencoder pre-training of a ViT on real faces only (He et al., "Masked Autoencoders
Are Scalable Vision Learners", CVPR 2022), as FFDBackbone (TPAMI 2026) does to learn what
*real* faces look like before any forgery is seen.

Per image, ``round(L * mask_ratio)`` of the ``L`` patches are masked (a random permutation
per sample, so the count is exact, not Bernoulli); the ViT encoder sees only the visible
patches (plus its class token); a light decoder (width ``decoder_dim``, ``decoder_depth``
blocks, fixed 2-D sin-cos positions) gets the encoded visible tokens back in place with a
learned mask token everywhere else and predicts every patch's pixels. The loss is the mean
squared error on the **masked patches only**, against per-patch normalised pixels
(``(p - mean(p)) / sqrt(var(p) + 1e-6)``, MAE's ``norm_pix_loss``) of the input tensor.

The saved backbone is an ordinary ``ffd-ckpt-1`` checkpoint of the registry ViT (its head is
untrained); :func:`load_backbone` copies its encoder weights (everything but ``head.*``) into
every :class:`~train.models.vit.VisionTransformer` inside any model, resizing the position
table if the grid differs.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from edge.errors import ConfigError, DatasetError, ModelError

from .models.vit import Block, VisionTransformer, find_vits, resize_pos_embed
from .task import TrainTask


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p*p*C), patches in row-major order (the ViT's token order)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def num_masked(num_patches: int, mask_ratio: float) -> int:
    if not 0.0 < mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    k = int(round(num_patches * mask_ratio))
    if not 0 < k < num_patches:
        raise ConfigError(f"mask_ratio {mask_ratio} masks {k} of {num_patches} patches; at least one must be "
                          "masked and one visible", fix="use a ratio like 0.75 or a smaller patch size")
    return k


def random_masking(n: int, num_patches: int, mask_ratio: float, device=None,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> (ids_keep (N, K), mask (N, L) with 1 = masked, ids_restore (N, L)); exactly round(L*ratio) masked."""
    k_mask = num_masked(num_patches, mask_ratio)
    noise = torch.rand(n, num_patches, device=device, generator=generator)
    ids_shuffle = noise.argsort(dim=1)
    ids_restore = ids_shuffle.argsort(dim=1)
    ids_keep = ids_shuffle[:, :num_patches - k_mask]
    mask = torch.ones(n, num_patches, device=device)
    mask[:, :num_patches - k_mask] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return ids_keep, mask, ids_restore


def sincos_pos_embed(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sin-cos table (1, 1 + grid*grid, dim), zero for the class slot (as in MAE)."""
    if dim % 4:
        raise ConfigError(f"decoder_dim must be a multiple of 4, got {dim}")
    omega = 1.0 / 10000 ** (np.arange(dim // 4, dtype=np.float64) / (dim / 4))
    ys, xs = np.meshgrid(np.arange(grid, dtype=np.float64), np.arange(grid, dtype=np.float64), indexing="ij")
    parts = []
    for pos in (ys.ravel(), xs.ravel()):
        out = np.outer(pos, omega)
        parts += [np.sin(out), np.cos(out)]
    table = np.concatenate([np.zeros((1, dim)), np.concatenate(parts, axis=1)], axis=0)
    return torch.from_numpy(table).float()[None]


class MAEDecoder(nn.Module):
    def __init__(self, embed_dim: int, num_patches: int, patch_size: int, in_chans: int = 3,
                 decoder_dim: int = 64, decoder_depth: int = 2, decoder_heads: int = 4):
        super().__init__()
        grid = int(math.isqrt(num_patches))
        self.embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("pos_embed", sincos_pos_embed(decoder_dim, grid), persistent=False)
        self.blocks = nn.Sequential(*[Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)])
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.pred = nn.Linear(decoder_dim, patch_size * patch_size * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        x = self.embed(latent)  # (N, 1 + K, Dd)
        n, L = ids_restore.shape
        masks = self.mask_token.expand(n, L + 1 - x.shape[1], -1)
        seq = torch.cat([x[:, 1:], masks], dim=1)  # visible first, then masks: the shuffled order
        seq = torch.gather(seq, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))
        x = torch.cat([x[:, :1], seq], dim=1) + self.pos_embed
        x = self.norm(self.blocks(x))
        return self.pred(x[:, 1:])  # (N, L, p*p*C)


class MAETask(TrainTask):
    """``step((x, ...)) -> {"loss", "masked_fraction"}``; ``self.model`` is the ViT encoder."""

    def __init__(self, encoder: VisionTransformer, model_name: str, model_kwargs: dict | None = None,
                 mask_ratio: float = 0.75, decoder_dim: int = 64, decoder_depth: int = 2, decoder_heads: int = 4,
                 norm_pix_loss: bool = True):
        super().__init__()
        self.model, self.model_name, self.model_kwargs = encoder, model_name, dict(model_kwargs or {})
        self.mask_ratio, self.norm_pix_loss = float(mask_ratio), bool(norm_pix_loss)
        num_masked(encoder.num_patches, mask_ratio)  # validate early
        pe = encoder.patch_embed
        self.decoder = MAEDecoder(encoder.embed_dim, pe.num_patches, pe.patch_size, pe.proj.in_channels,
                                  decoder_dim, decoder_depth, decoder_heads)

    def encode(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        tokens = self.model.embed_patches(x)
        tokens = torch.gather(tokens, 1, ids_keep[..., None].expand(-1, -1, tokens.shape[2]))
        return self.model.norm(self.model.blocks(self.model.prepend_cls(tokens)))

    def reconstruction_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = patchify(x, self.model.patch_embed.patch_size)
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, batch, generator: torch.Generator | None = None):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        ids_keep, mask, ids_restore = random_masking(x.shape[0], self.model.num_patches, self.mask_ratio,
                                                     x.device, generator)
        pred = self.decoder(self.encode(x, ids_keep), ids_restore)
        loss = self.reconstruction_loss(x, pred, mask)
        return {"loss": loss, "masked_fraction": mask.mean().detach()}


# --- backbone files ---------------------------------------------------------------------------
def load_backbone(model: nn.Module, path: str | os.PathLike) -> list[str]:
    """Copy the encoder of a backbone checkpoint into every ViT inside ``model``; -> loaded key names.

    Heads (``head.*``) are not copied. A different input grid is handled by resizing the
    position table; a different width or depth raises ModelError.
    """
    from .checkpoint import read_checkpoint

    vits = find_vits(model)
    if not vits:
        raise ModelError(f"{type(model).__name__} has no VisionTransformer to load a backbone into",
                         fix="pick a ViT model (vit_tiny_patch8, ...) for --pretrained")
    blob = read_checkpoint(path)
    state = {k: v for k, v in blob["state_dict"].items() if not k.startswith("head.")}
    for vit in vits:
        own = vit.state_dict()
        st = dict(state)
        if "pos_embed" in st and st["pos_embed"].shape != own["pos_embed"].shape:
            st["pos_embed"] = resize_pos_embed(st["pos_embed"], vit.patch_embed.grid_size)
        bad = [k for k, v in st.items() if k in own and own[k].shape != v.shape]
        missing = [k for k in own if not k.startswith("head.") and k not in st]
        if bad or missing:
            raise ModelError(f"backbone does not fit this ViT: shape mismatch {bad[:3]}, missing {missing[:3]}",
                             path=path,
                             fix="pre-train the same architecture (width, depth, patch size) with ffd pretrain")
        vit.load_state_dict(st, strict=False)
    return sorted(state)


def _pretrain_samples(data) -> list:
    """A list of samples as is, or dataset path(s) as ``ffd train`` reads them
    (:func:`train.recipes.load_pooled`, ``real:``/``fake:`` prefixes); an unprefixed plain folder
    of images holds real faces by definition here."""
    from .data import Sample, detect_layout, parse_data_arg
    from .recipes import load_pooled

    args = list(data) if isinstance(data, (list, tuple)) else [data]
    return load_pooled([d if isinstance(d, Sample) or parse_data_arg(d)[1] is not None or detect_layout(d) != "images"
                        else f"real:{d}" for d in args])


def pretrain(data, out: str | os.PathLike, *, model: str = "vit_tiny_patch8", img_size: int | None = None,
             model_kwargs: dict | None = None, mask_ratio: float = 0.75, epochs: int = 20, batch_size: int = 64,
             lr: float = 1.5e-4, weight_decay: float = 0.05, seed: int = 0, device: str = "auto",
             decoder_dim: int = 64, decoder_depth: int = 2, max_steps: int | None = None,
             log=print) -> dict[str, Any]:
    """MAE on the REAL faces of ``data`` (a list of samples, or dataset path(s)); writes a backbone checkpoint.

    Fake-labelled samples are dropped (the point is a backbone of real faces). Crops get the
    dataset's light augmentation (flip, JPEG, brightness). AdamW with a cosine schedule.
    """
    from edge.spec import ModelCard

    from .checkpoint import save_checkpoint
    from .data import REAL, FaceDataset
    from .data.spec import spec_for_data
    from .registry import create_model
    from .trainer import cosine_lr, resolve_device, seed_everything

    reals = [s for s in _pretrain_samples(data) if s.label == REAL]
    if not reals:
        raise DatasetError("no real faces to pre-train on", path=str(data), fix="pass a folder of real face crops")
    seed_everything(seed)
    kw = dict(model_kwargs or {})
    if img_size is not None:
        kw["img_size"] = img_size
    encoder = create_model(model, **kw)
    if not isinstance(encoder, VisionTransformer):
        raise ConfigError(f"{model!r} is not a ViT", fix="ffd pretrain takes vit_* models")
    size = encoder.patch_embed.img_size
    spec = spec_for_data(data, size)
    task = MAETask(encoder, model, kw, mask_ratio, decoder_dim, decoder_depth)
    dev = resolve_device(device)
    task.to(dev)
    ds = FaceDataset(reals, spec, seed=seed, augment=True)
    g = torch.Generator()
    g.manual_seed(seed)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, generator=g,
                                         drop_last=len(ds) > batch_size)
    steps = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
    opt = torch.optim.AdamW(task.trainable_parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, 0.95))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_lr(s, steps, warm))
    mask_gen = torch.Generator(device=dev)
    mask_gen.manual_seed(seed + 1)
    history, step, t0 = [], 0, time.time()
    task.train()
    for epoch in range(epochs):
        ds.set_epoch(epoch)
        tot, n = 0.0, 0
        for x, _ in loader:
            if step >= steps:
                break
            loss = task(x.to(dev), generator=mask_gen)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(task.trainable_parameters(), 5.0)
            opt.step()
            sched.step()
            tot, n, step = tot + float(loss.detach()), n + 1, step + 1
        if n:
            history.append(round(tot / n, 5))
            log(f"mae epoch {epoch + 1}/{epochs}: loss {tot / n:.4f} ({time.time() - t0:.0f}s)")
        if step >= steps:
            break
    cfg = {"kind": "mae_backbone", "mask_ratio": mask_ratio, "epochs": epochs, "batch_size": batch_size, "lr": lr,
           "seed": seed, "decoder_dim": decoder_dim, "decoder_depth": decoder_depth, "n_images": len(reals),
           "steps": step, "norm_pix_loss": True}
    card = ModelCard(model, spec=spec, extra={"backbone": "mae", "pretrained_on": "real faces only"})
    path = save_checkpoint(out, encoder, card, model_kwargs=kw, config=cfg, metrics={"mae_loss": history})
    return {"path": str(path), "n_images": len(reals), "final_loss": history[-1] if history else float("nan"),
            "history": history, "seconds": round(time.time() - t0, 1)}
