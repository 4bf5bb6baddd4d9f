"""MobileNetV2 (Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks", CVPR 2018).

Inverted residual blocks: 1x1 expansion (ReLU6) -> 3x3 depthwise (ReLU6) -> linear 1x1 projection,
with an identity shortcut when stride is 1 and the width is kept. Module names follow torchvision's
``mobilenet_v2`` (``features.0`` stem, ``features.1..17`` blocks with their ``.conv`` Sequential,
``features.18`` the 1x1 conv to 1280, ``classifier`` = Dropout + Linear) so torchvision's ImageNet file
loads strictly (:mod:`train.pretrained`). Plain Conv/BN/Clip/GlobalAveragePool/Gemm after export.
Contract as :mod:`train.models.student`: ``forward_features`` -> (N, 1280, H/32, W/32).
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn

from ..pretrained import check_extra_kwargs, init_pretrained
from ..registry import register_model

# (expansion t, output width c, repeats n, first stride s) as in the paper's Table 2
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def conv_bn_relu6(in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_chs, out_chs, kernel_size, stride, kernel_size // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(out_chs), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_chs * expand_ratio
        self.use_res_connect = stride == 1 and in_chs == out_chs
        layers = [conv_bn_relu6(in_chs, hidden, 1)] if expand_ratio != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.2, stem_width: int = 32,
                 num_features: int = 1280):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.num_features, self.feature_reduction = num_features, 32
        layers, c = [conv_bn_relu6(in_chans, stem_width, 3, 2)], stem_width
        for t, width, n, s in _SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c, width, s if i == 0 else 1, t))
                c = width
        layers.append(conv_bn_relu6(c, num_features, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Linear(num_features, num_classes))
        init_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, feats: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = feats.mean(dim=(2, 3))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def init_weights(model: nn.Module) -> None:
    """He (fan-out) init for convs, unit BN, small-normal classifier (torchvision's MobileNet recipe)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


@register_model
def mobilenetv2_100(pretrained: bool | str | os.PathLike = False, num_classes: int = 2, in_chans: int = 3,
                    drop_rate: float = 0.2, **kwargs) -> MobileNetV2:
    """MobileNetV2 width 1.0, 2.2 M feature params; ``pretrained``: torchvision's ImageNet-1k file (True or a path)."""
    check_extra_kwargs("mobilenetv2_100", kwargs)
    model = MobileNetV2(num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    return init_pretrained(model, "mobilenetv2_100", pretrained)
