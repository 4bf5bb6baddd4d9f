"""Small Vision Transformers for face crops, written for ONNX opset 17 and TensorRT 10.3.

ViT of Dosovitskiy et al., "An Image is Worth 16x16 Words" (ICLR 2021), in the timm layout
(``patch_embed``, ``cls_token``, ``pos_embed``, ``blocks``, ``norm``, ``head``) and sized for
our data and for edge devices: 128 px crops, patch 8 or 16, width 96-384, depth 4-6. It is
the backbone that FFDBackbone ("Rethinking Backbone Design for Face Forgery Detection",
TPAMI 2026) pre-trains self-supervised on real faces (:mod:`train.mae`) and fine-tunes
competitively (:mod:`train.competitive`).

Export contract: attention is written as Linear -> reshape -> transpose -> MatMul -> Softmax
-> MatMul (no ``F.scaled_dot_product_attention``, no ``nn.MultiheadAttention``), GELU is the
exact erf form (decomposed by the exporter at opset 17), and the token count is fixed by
``img_size`` (the learned position table is not resized at run time). ``forward_features``
returns all tokens after the final LayerNorm, shape ``(N, 1 + L, D)`` with the class token
first; ``forward_head`` takes those tokens and classifies the class token; ``forward`` gives
logits ``(N, 2)`` (class 0 real, 1 fake).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from edge.errors import ConfigError

from ..registry import register_model

__all__ = ["VisionTransformer", "Attention", "Block", "find_vits", "resize_pos_embed"]


class Attention(nn.Module):
    """Multi-head self-attention from matmul/softmax/reshape/transpose only."""

    def __init__(self, dim: int, num_heads: int = 3, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"embed_dim {dim} is not divisible by num_heads {num_heads}",
                              fix="choose an embed_dim that is a multiple of num_heads, or a registered ViT")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (N, H, T, hd)
        attn = torch.matmul(q * self.scale, k.transpose(-2, -1)).softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = torch.matmul(attn, v).transpose(1, 2).reshape(n, t, d)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth (Huang et al., ECCV 2016); identity in eval mode and in the exported graph."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x):
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + mlp(LN(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)

    def forward(self, x):
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches -> ``embed_dim`` tokens, (N, L, D)."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(f"img_size {img_size} is not a multiple of the patch size {patch_size}",
                              fix=f"pass --img-size as a multiple of {patch_size} "
                                  f"(e.g. {max(1, round(img_size / patch_size)) * patch_size})")
        self.img_size, self.patch_size = img_size, patch_size
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """ViT with a class token; see the module docstring for the export contract."""

    def __init__(self, img_size: int = 128, patch_size: int = 8, in_chans: int = 3, num_classes: int = 2,
                 embed_dim: int = 192, depth: int = 6, num_heads: int = 3, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_rate: float = 0.0, attn_drop_rate: float = 0.0,
                 drop_path_rate: float = 0.0):
        super().__init__()
        self.num_classes = num_classes
        self.embed_dim = self.num_features = embed_dim
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]
        self.blocks = nn.Sequential(*[Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, d)
                                      for d in dpr])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self):
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # --- pieces used by MAE pre-training (train.mae) -----------------------------------------
    def embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with their position embedding, no class token: (N, L, D)."""
        return self.patch_embed(x) + self.pos_embed[:, 1:]

    def prepend_cls(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1)

    # --- the export contract -------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """All tokens after the final LayerNorm, (N, 1 + L, D); index 0 is the class token."""
        x = self.pos_drop(self.prepend_cls(self.embed_patches(x)))
        return self.norm(self.blocks(x))

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = feats[:, 0] if feats.ndim == 3 else feats  # accepts tokens or an already pooled class token
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def find_vits(model: nn.Module) -> list[VisionTransformer]:
    """Every outermost :class:`VisionTransformer` inside ``model`` (itself included), in module order."""
    if isinstance(model, VisionTransformer):
        return [model]
    found: dict[str, VisionTransformer] = {}
    for name, m in model.named_modules():
        if isinstance(m, VisionTransformer) and not any(name.startswith(p + ".") for p in found):
            found[name] = m
    return list(found.values())


def resize_pos_embed(pos_embed: torch.Tensor, new_grid: int) -> torch.Tensor:
    """Bicubic resize of a (1, 1 + g*g, D) table to another grid (the class slot is kept)."""
    cls, grid = pos_embed[:, :1], pos_embed[:, 1:]
    g = int(math.isqrt(grid.shape[1]))
    if g == new_grid:
        return pos_embed
    grid = grid.reshape(1, g, g, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, -1)], dim=1)


def _vit(defaults: dict, kwargs: dict) -> VisionTransformer:
    return VisionTransformer(**{**defaults, **kwargs})


@register_model
def vit_tiny_patch8(**kwargs) -> VisionTransformer:
    """128 px, 256 patches of 8 px, width 192, depth 6, 3 heads (~2.7 M params; timm's ViT-Ti at half depth)."""
    return _vit(dict(img_size=128, patch_size=8, embed_dim=192, depth=6, num_heads=3), kwargs)


@register_model
def vit_tiny_patch16(**kwargs) -> VisionTransformer:
    """128 px, 64 patches of 16 px, width 192, depth 6, 3 heads (~2.8 M params, 4x fewer tokens)."""
    return _vit(dict(img_size=128, patch_size=16, embed_dim=192, depth=6, num_heads=3), kwargs)


@register_model
def vit_mini_patch8(**kwargs) -> VisionTransformer:
    """64 px, 64 patches of 8 px, width 128, depth 4, 4 heads (~0.8 M params): the CPU-budget variant."""
    return _vit(dict(img_size=64, patch_size=8, embed_dim=128, depth=4, num_heads=4), kwargs)


@register_model
def vit_small_patch16(**kwargs) -> VisionTransformer:
    """128 px, 64 patches of 16 px, width 384, depth 6, 6 heads (~10.8 M params): a ViT teacher."""
    return _vit(dict(img_size=128, patch_size=16, embed_dim=384, depth=6, num_heads=6), kwargs)
