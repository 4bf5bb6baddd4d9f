"""Dual-branch teacher: RGB spatial branch + frequency branch, fused head.

The frequency branch follows F3Net (Qian et al., "Thinking in Frequency: Face Forgery
Detection by Mining Frequency-aware Clues", ECCV 2020): a frequency-aware decomposition
(DCT -> learnable low/mid/high/all band filters -> inverse DCT, here on 8x8 blocks as
convolutions, see :class:`train.models.layers.FrequencyAwareDecomposition`) turns the crop
into 4 band images per colour channel that a CNN reads; ``freq="srm"`` uses fixed SRM noise
residuals instead. The spatial branch is a ResNet-style CNN on RGB. Two-in-one KD (Zhou et
al.) distils both branches into one student, so both branch features are exposed.

Contract:
* ``forward_features(x)`` -> ``{"spatial": (N, Cs, H/32, W/32), "freq": (N, Cf, H/32, W/32)}``
  (``feature_dims`` gives Cs and Cf; both maps have the same spatial size);
* ``forward_head(feats)`` -> fused logits (N, num_classes) from the concatenated pooled features;
* ``forward_branch_heads(feats)`` -> ``{"spatial": logits, "freq": logits}`` (auxiliary heads
  that keep each branch discriminative during teacher training);
* ``forward(x)`` -> fused logits. Input sides must be multiples of 32.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from edge.errors import ConfigError

from ..registry import register_model
from .layers import ClassifierHead, ConvBnAct, FrequencyAwareDecomposition, SrmFilter, make_resnet_stages

FREQ_KINDS = ("fad", "srm")


class Branch(nn.Module):
    """Stem (two stride-2 3x3 convs, output stride 4) + ResNet stages -> output stride 32."""

    def __init__(self, in_chs: int, stem_width: int, widths, depths):
        super().__init__()
        self.stem = nn.Sequential(ConvBnAct(in_chs, stem_width // 2, 3, 2),
                                  ConvBnAct(stem_width // 2, stem_width, 3, 2))
        self.stages = make_resnet_stages(stem_width, list(widths), list(depths))
        self.num_features = widths[-1]

    def forward(self, x):
        return self.stages(self.stem(x))


def frequency_input(freq: str, in_chans: int, dct_block: int) -> tuple[nn.Module, int]:
    """The frequency branch's input transform and its channel count: FAD (4 bands per channel) or SRM (3)."""
    if freq not in FREQ_KINDS:
        raise ConfigError(f"freq must be one of {FREQ_KINDS}, got {freq!r}")
    if freq == "fad":
        return FrequencyAwareDecomposition(in_chans, block=dct_block), in_chans * len(FrequencyAwareDecomposition.bands)
    return SrmFilter(in_chans), in_chans * 3


class DualBranchTeacher(nn.Module):
    def __init__(self, spatial_widths=(64, 128, 256, 512), spatial_depths=(1, 1, 1, 1),
                 freq_widths=(32, 64, 128, 256), freq_depths=(1, 1, 1, 1), freq: str = "fad",
                 dct_block: int = 8, num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.0):
        super().__init__()
        self.num_classes, self.in_chans, self.freq_kind = num_classes, in_chans, freq
        self.spatial = Branch(in_chans, spatial_widths[0], spatial_widths, spatial_depths)
        self.freq_transform, freq_in = frequency_input(freq, in_chans, dct_block)
        self.freq = Branch(freq_in, freq_widths[0], freq_widths, freq_depths)
        self._init_heads(num_classes, drop_rate)

    def _init_heads(self, num_classes: int, drop_rate: float) -> None:
        """Fused head on both pooled branch features + one auxiliary head per branch."""
        self.feature_dims = {"spatial": self.spatial.num_features, "freq": self.freq.num_features}
        self.num_features = sum(self.feature_dims.values())
        self.feature_reduction = 32
        self.head = ClassifierHead(self.num_features, num_classes, drop_rate)
        self.aux_heads = nn.ModuleDict({k: ClassifierHead(c, num_classes, drop_rate)
                                        for k, c in self.feature_dims.items()})

    def forward_features(self, x) -> dict[str, torch.Tensor]:
        return {"spatial": self.spatial(x), "freq": self.freq(self.freq_transform(x))}

    def forward_head(self, feats: dict[str, torch.Tensor], pre_logits: bool = False):
        pooled = torch.cat([feats["spatial"].mean(dim=(2, 3)), feats["freq"].mean(dim=(2, 3))], dim=1)
        pooled = self.head.drop(pooled)
        return pooled if pre_logits else self.head.fc(pooled)

    def forward_branch_heads(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.aux_heads[k](feats[k]) for k in self.feature_dims}

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


@register_model
def teacher_dual(**kwargs) -> DualBranchTeacher:
    """ResNet-style spatial branch (64-512) + F3Net FAD frequency branch (32-256); ~6.2 M params."""
    return DualBranchTeacher(**kwargs)


@register_model
def teacher_dual_srm(**kwargs) -> DualBranchTeacher:
    """``teacher_dual`` with SRM residuals instead of FAD in the frequency branch."""
    kwargs.setdefault("freq", "srm")
    return DualBranchTeacher(**kwargs)


@register_model
def teacher_tiny(**kwargs) -> DualBranchTeacher:
    """A small dual-branch teacher for fast tests (still >= 5x ``student_tiny``)."""
    kwargs.setdefault("spatial_widths", (16, 32, 64, 96))
    kwargs.setdefault("freq_widths", (16, 32, 48, 64))
    return DualBranchTeacher(**kwargs)


# --- ImageNet-initialised dual-branch teacher ------------------------------------------------------
def _body(name: str, pretrained, in_chans: int) -> nn.Module:
    """A registered backbone without its classifier (only ``forward_features`` is used)."""
    from ..registry import create_model

    net = create_model(name, pretrained=pretrained, in_chans=in_chans)
    for head in ("classifier", "_fc"):
        if hasattr(net, head):
            setattr(net, head, nn.Identity())
    return net


class PretrainedDualTeacher(nn.Module):
    """The dual-branch teacher on ImageNet backbones.

    Spatial branch: ``spatial`` (default EfficientNet-Lite2) on the RGB crop. Frequency branch:
    the same F3Net FAD as :class:`DualBranchTeacher` (4 band images per colour channel) in front
    of ``freq_body`` (default MobileNetV2), whose stem is adapted from 3 to 12 input channels
    (:mod:`train.pretrained`). Same contract as :class:`DualBranchTeacher` (``feature_dims``,
    ``forward_branch_heads``, output stride 32). ``pretrained`` initialises both bodies; a
    single file cannot hold both, so it is ``True`` (resolved per backbone), a folder of weight files, or ``False``.
    """

    def __init__(self, spatial: str = "efficientnet_lite2", freq_body: str = "mobilenetv2_100", freq: str = "fad",
                 dct_block: int = 8, num_classes: int = 2, in_chans: int = 3, drop_rate: float = 0.2,
                 pretrained: bool | str = False):
        super().__init__()
        if pretrained not in (True, False) and not Path(pretrained).is_dir():
            raise ConfigError(f"the {spatial} + {freq_body} teacher loads two weight files, so pretrained= cannot "
                              f"name one ({pretrained!r})",
                              fix="pass a weights folder (--pretrained DIR or FFD_WEIGHTS=DIR)")
        self.num_classes, self.in_chans, self.freq_kind = num_classes, in_chans, freq
        self.spatial = _body(spatial, pretrained, in_chans)
        self.freq_transform, freq_in = frequency_input(freq, in_chans, dct_block)
        self.freq = _body(freq_body, pretrained, freq_in)
        self.pretrained_cfg = getattr(self.spatial, "pretrained_cfg", None)
        self._init_heads(num_classes, drop_rate)

    def forward_features(self, x) -> dict[str, torch.Tensor]:
        return {"spatial": self.spatial.forward_features(x), "freq": self.freq.forward_features(self.freq_transform(x))}

    _init_heads = DualBranchTeacher._init_heads
    forward_head = DualBranchTeacher.forward_head
    forward_branch_heads = DualBranchTeacher.forward_branch_heads
    forward = DualBranchTeacher.forward


@register_model
def teacher_dual_lite2(pretrained: bool | str = False, **kwargs) -> PretrainedDualTeacher:
    """EfficientNet-Lite2 spatial branch + FAD -> MobileNetV2 frequency branch, ImageNet-initialised; ~7.1 M params."""
    return PretrainedDualTeacher(pretrained=pretrained, **kwargs)
