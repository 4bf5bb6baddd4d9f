"""EfficientNet-Lite (Tan & Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks", ICML 2019; the Lite variants of the TensorFlow TPU repository, 2020).

MBConv blocks (1x1 expansion -> depthwise kxk -> linear 1x1 projection, identity shortcut when shape
is kept) scaled in width and depth from B0. Lite removes squeeze-excite, uses ReLU6 instead of swish
and keeps the 32-wide stem, the 1280-wide head and the repeats of the first and last stages
unscaled, which makes it quantize well. Module names follow EfficientNet-PyTorch (``_conv_stem``,
``_bn0``, ``_blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2``, ``_conv_head``,
``_bn1``, ``_fc``) so the converted TensorFlow weights load strictly (:mod:`train.pretrained`);
BatchNorm eps 1e-3 / momentum 0.01 as TensorFlow's. Padding is symmetric (``k // 2``), which exports
to a plain Conv; the TensorFlow originals used SAME padding (asymmetric, 0 before / 1 after on
stride-2 layers), so the ImageNet weights see a one-pixel shift on those layers here, a small cost
on ImageNet accuracy and none once fine-tuned. Contract as :mod:`train.models.student`.
"""
from __future__ import annotations

import math
import os

import torch
import torch.nn as nn

from ..pretrained import check_extra_kwargs, init_pretrained
from ..registry import register_model
from .mobilenetv2 import init_weights

# B0 stages: (repeats, kernel, first stride, expansion, output width)
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
           (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_BN = {"eps": 1e-3, "momentum": 0.01}


def round_filters(width: int, mult: float, divisor: int = 8) -> int:
    """Scale a width by ``mult`` to a multiple of ``divisor``, never more than 10% below the exact value."""
    if mult == 1.0:
        return width
    exact = width * mult
    out = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * exact else out


class MBConvBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int, expand_ratio: int,
                 drop_path: float = 0.0):
        super().__init__()
        hidden = in_chs * expand_ratio
        if expand_ratio != 1:
            self._expand_conv = nn.Conv2d(in_chs, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **_BN)
        else:
            self._expand_conv = None
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel_size, stride, kernel_size // 2, groups=hidden,
                                         bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **_BN)
        self._project_conv = nn.Conv2d(hidden, out_chs, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_chs, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.drop_path = drop_path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self._expand_conv is None else self.act(self._bn0(self._expand_conv(x)))
        y = self._bn2(self._project_conv(self.act(self._bn1(self._depthwise_conv(y)))))
        if not self.has_skip:
            return y
        if self.training and self.drop_path > 0:  # stochastic depth, per sample
            keep = 1.0 - self.drop_path
            y = y * torch.empty(y.shape[0], 1, 1, 1, dtype=y.dtype, device=y.device).bernoulli_(keep) / keep
        return x + y


class EfficientNetLite(nn.Module):
    def __init__(self, width_mult: float = 1.0, depth_mult: float = 1.0, num_classes: int = 2, in_chans: int = 3,
                 drop_rate: float = 0.2, drop_path_rate: float = 0.0, stem_width: int = 32, num_features: int = 1280):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.num_features, self.feature_reduction = num_features, 32
        self._conv_stem = nn.Conv2d(in_chans, stem_width, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(stem_width, **_BN)
        plan = []  # (in, out, kernel, stride, expansion) per block
        c = stem_width
        for i, (n, k, s, e, w) in enumerate(_STAGES):
            n = n if i in (0, len(_STAGES) - 1) else math.ceil(n * depth_mult)
            w = round_filters(w, width_mult)
            for j in range(n):
                plan.append((c, w, k, s if j == 0 else 1, e))
                c = w
        self._blocks = nn.ModuleList(MBConvBlock(*p, drop_path=drop_path_rate * i / len(plan))
                                     for i, p in enumerate(plan))
        self._conv_head = nn.Conv2d(c, num_features, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(num_features, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(drop_rate)
        self._fc = nn.Linear(num_features, num_classes)
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = feats.mean(dim=(2, 3))
        return x if pre_logits else self._fc(self._dropout(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create(name: str, width_mult: float, depth_mult: float, pretrained, num_classes: int, in_chans: int,
            drop_rate: float, drop_path_rate: float, kwargs: dict) -> EfficientNetLite:
    check_extra_kwargs(name, kwargs)
    model = EfficientNetLite(width_mult, depth_mult, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate,
                             drop_path_rate=drop_path_rate)
    return init_pretrained(model, name, pretrained)


@register_model
def efficientnet_lite0(pretrained: bool | str | os.PathLike = False, num_classes: int = 2, in_chans: int = 3,
                       drop_rate: float = 0.2, drop_path_rate: float = 0.0, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite0: width 1.0, depth 1.0, trained at 224 px; 3.4 M feature params."""
    return _create("efficientnet_lite0", 1.0, 1.0, pretrained, num_classes, in_chans, drop_rate, drop_path_rate, kwargs)


@register_model
def efficientnet_lite2(pretrained: bool | str | os.PathLike = False, num_classes: int = 2, in_chans: int = 3,
                       drop_rate: float = 0.2, drop_path_rate: float = 0.0, **kwargs) -> EfficientNetLite:
    """EfficientNet-Lite2: width 1.1, depth 1.2, trained at 260 px; 4.8 M feature params."""
    return _create("efficientnet_lite2", 1.1, 1.2, pretrained, num_classes, in_chans, drop_rate, drop_path_rate, kwargs)
