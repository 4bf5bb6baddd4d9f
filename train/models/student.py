"""Single-branch students for two-in-one distillation (Zhou et al., "Two-in-one Knowledge
Distillation for Efficient Facial Forgery Detection").

``student_small`` is a VGG-like stack of plain 3x3 conv-BN-ReLU stages (RepVGG's deploy-time
shape, Ding et al., CVPR 2021): dense 3x3 convolutions quantize to INT8 with little loss,
while depthwise-heavy blocks (``student_dw``, MobileNet v1 style) have few weights per
output channel and per-channel ranges that INT8 calibration handles worse; keeping both
lets the export/INT8 stage measure that claim. ``student_tiny`` is for tests.

Contract: ``forward_features(x)`` -> last feature map (N, num_features, H/32, W/32);
``forward_head(fmap)`` -> logits (N, num_classes); ``forward(x)`` = both. Class 1 = fake.
"""
from __future__ import annotations

import torch.nn as nn

from ..registry import register_model
from .layers import ClassifierHead, ConvBnAct, DwSepConv


class StudentNet(nn.Module):
    """Stem (3x3 s2) + stages; each stage opens with a stride-2 block. Output stride 32."""

    def __init__(self, widths=(32, 64, 128, 256), depths=(2, 2, 2, 1), stem_width: int = 16,
                 depthwise: bool = False, num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.0):
        super().__init__()
        self.num_classes, self.in_chans = num_classes, in_chans
        self.stem = ConvBnAct(in_chans, stem_width, 3, 2)
        block = DwSepConv if depthwise else ConvBnAct  # 3x3 by default, both take stride=
        stages, c = [], stem_width
        for w, d in zip(widths, depths):
            layers = [block(c, w, stride=2)] + [block(w, w) for _ in range(d - 1)]
            stages.append(nn.Sequential(*layers))
            c = w
        self.stages = nn.Sequential(*stages)
        self.num_features = c
        self.feature_reduction = 2 ** (len(widths) + 1)
        self.head = ClassifierHead(c, num_classes, drop_rate)

    def forward_features(self, x):
        return self.stages(self.stem(x))

    def forward_head(self, feats, pre_logits: bool = False):
        return self.head(feats, pre_logits=pre_logits)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@register_model
def student_small(**kwargs) -> StudentNet:
    """~0.6 M params, plain 3x3 conv-BN-ReLU (INT8-friendly); the deployed student."""
    return StudentNet(widths=(32, 64, 128, 256), depths=(2, 2, 2, 1), stem_width=16, **kwargs)


@register_model
def student_dw(**kwargs) -> StudentNet:
    """Depthwise-separable twin of ``student_small`` (wider, ~0.35 M params, 0.4x MACs) to measure INT8 loss."""
    return StudentNet(widths=(48, 96, 192, 384), depths=(2, 2, 3, 2), stem_width=24, depthwise=True, **kwargs)


@register_model
def student_tiny(**kwargs) -> StudentNet:
    """A few thousand params; for fast tests only."""
    return StudentNet(widths=(8, 16, 16, 32), depths=(1, 1, 1, 1), stem_width=8, **kwargs)
