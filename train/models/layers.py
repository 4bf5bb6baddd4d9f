"""Building blocks shared by the teacher and student models (export-friendly ops only).

Everything here lowers to plain ONNX opset-17 ops that TensorRT 10.3 takes: Conv,
ConvTranspose, BatchNormalization (folded), Relu, MaxPool, GlobalAveragePool, Gemm, Mul,
Concat. The frequency-aware decomposition (FAD) of F3Net (Qian et al., "Thinking in
Frequency: Face Forgery Detection by Mining Frequency-aware Clues", ECCV 2020) is
implemented as a *block* DCT: a stride-``b`` convolution with the ``b*b`` fixed DCT-II basis
filters, a per-band mask on the coefficients (fixed binary base + learnable residual,
``f_base + sigma(f_w)`` as in F3Net), and the inverse DCT as the transposed convolution with
the same orthonormal basis. No ``torch.fft`` and no complex numbers, and unlike F3Net's
full-image DCT it works for any input size that is a multiple of ``b``.
The SRM alternative uses the three fixed high-pass residual kernels of Fridrich & Kodovsky
(2012) as used by Zhou et al. (CVPR 2018) and Luo et al. (CVPR 2021).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBnAct(nn.Sequential):
    """conv (no bias) -> BatchNorm -> ReLU; ``act=False`` drops the ReLU."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, groups: int = 1,
                 act: bool = True):
        layers = [nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(out_chs)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class DwSepConv(nn.Sequential):
    """Depthwise 3x3 + pointwise 1x1 (MobileNet v1 style), each with BN + ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__(ConvBnAct(in_chs, in_chs, 3, stride, groups=in_chs), ConvBnAct(in_chs, out_chs, 1))


class BasicBlock(nn.Module):
    """ResNet basic block (He et al., CVPR 2016): two 3x3 conv-BN, identity or 1x1 shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1):
        super().__init__()
        self.conv1 = ConvBnAct(in_chs, out_chs, 3, stride)
        self.conv2 = ConvBnAct(out_chs, out_chs, 3, 1, act=False)
        self.shortcut = (nn.Identity() if stride == 1 and in_chs == out_chs
                         else ConvBnAct(in_chs, out_chs, 1, stride, act=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


def make_resnet_stages(in_chs: int, widths: list[int], depths: list[int]) -> nn.Sequential:
    """Stages of basic blocks; every stage after the first halves the resolution."""
    stages = []
    for i, (w, d) in enumerate(zip(widths, depths)):
        blocks = [BasicBlock(in_chs, w, stride=1 if i == 0 else 2)]
        blocks += [BasicBlock(w, w) for _ in range(d - 1)]
        stages.append(nn.Sequential(*blocks))
        in_chs = w
    return nn.Sequential(*stages)


class ClassifierHead(nn.Module):
    """Global average pool -> dropout -> linear. ``forward(fmap)`` -> logits."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x, pre_logits: bool = False):
        x = x.mean(dim=(2, 3))  # GlobalAveragePool / ReduceMean: exported and TensorRT friendly
        x = self.drop(x)
        return x if pre_logits else self.fc(x)


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (n x n): ``coeffs = D @ x``, ``x = D.T @ coeffs``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.astype(np.float32)


def dct_basis(block: int) -> torch.Tensor:
    """The ``block*block`` 2-D DCT basis images as conv filters, shape (block*block, 1, block, block)."""
    d = dct_matrix(block)
    basis = np.einsum("ui,vj->uvij", d, d).reshape(block * block, 1, block, block)
    return torch.from_numpy(basis.copy())


def fad_band_masks(block: int) -> dict[str, torch.Tensor]:
    """Binary base masks over the ``block x block`` coefficients, by diagonal ``u + v``.

    F3Net splits the full spectrum into low (first 1/16 of the diagonal), middle (1/16-1/8)
    and high (the rest); an 8x8 block has coarser frequency resolution, so the split here is
    on the 2*block-1 diagonals: low = the first ~1/8 of them, middle up to ~1/2, high the
    rest, plus an all-pass band (F3Net's fourth filter).
    """
    u = np.arange(block)[:, None] + np.arange(block)[None, :]
    n_diag = 2 * block - 1
    lo, mid = max(1, round(n_diag / 8)), max(2, round(n_diag / 2))
    masks = {"low": u < lo, "mid": (u >= lo) & (u < mid), "high": u >= mid, "all": np.ones_like(u, bool)}
    return {k: torch.from_numpy(v.reshape(-1).astype(np.float32)) for k, v in masks.items()}


class FrequencyAwareDecomposition(nn.Module):
    """F3Net's FAD on block DCT: ``x -> concat_b IDCT(DCT(x) * (base_b + sigma(w_b)))``.

    Input (N, C, H, W) with H, W multiples of ``block``; output (N, C * 4, H, W): the
    low / mid / high / all-pass reconstructions of every input channel. ``learnable=False``
    keeps only the fixed binary bands. ``sigma(w) = (1 - e^-w) / (1 + e^-w)`` as in F3Net.
    """

    bands = ("low", "mid", "high", "all")

    def __init__(self, in_chans: int = 3, block: int = 8, learnable: bool = True):
        super().__init__()
        self.in_chans, self.block = in_chans, block
        basis = dct_basis(block).repeat(in_chans, 1, 1, 1)  # (C*b*b, 1, b, b), grouped per channel
        self.register_buffer("basis", basis, persistent=False)
        masks = fad_band_masks(block)
        self.register_buffer("base", torch.stack([masks[b] for b in self.bands]), persistent=False)  # (4, b*b)
        self.weight = nn.Parameter(torch.zeros(len(self.bands), block * block)) if learnable else None

    def band_filters(self) -> torch.Tensor:
        f = self.base
        if self.weight is not None:
            w = self.weight
            f = f + (1 - torch.exp(-w)) / (1 + torch.exp(-w))
        return f  # (4, b*b)

    def forward(self, x):
        c, b = self.in_chans, self.block
        coeffs = F.conv2d(x, self.basis, stride=b, groups=c)  # (N, C*b*b, H/b, W/b)
        filters, outs = self.band_filters(), []
        for i in range(len(self.bands)):
            scale = filters[i].repeat(c).view(1, c * b * b, 1, 1)
            outs.append(F.conv_transpose2d(coeffs * scale, self.basis, stride=b, groups=c))
        return torch.cat(outs, dim=1)


def srm_kernels() -> torch.Tensor:
    """The three classic SRM high-pass kernels (5x5), normalised as in Zhou et al. 2018."""
    k1 = np.array([[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]]) / 4.0
    k2 = np.array([[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2],
                   [-1, 2, -2, 2, -1]]) / 12.0
    k3 = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]) / 2.0
    return torch.from_numpy(np.stack([k1, k2, k3]).astype(np.float32))


class SrmFilter(nn.Module):
    """Fixed SRM residuals per input channel: (N, C, H, W) -> (N, 3*C, H, W)."""

    def __init__(self, in_chans: int = 3):
        super().__init__()
        self.in_chans = in_chans
        k = srm_kernels()[:, None].repeat(in_chans, 1, 1, 1)  # (3C, 1, 5, 5), groups=C
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x):
        return F.conv2d(x, self.kernel, padding=2, groups=self.in_chans)
