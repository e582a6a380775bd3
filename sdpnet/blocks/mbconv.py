"""MobileNet and EfficientNet blocks: the depthwise-separable block (``DS``) and the inverted residual / MBConv
(``IR``), timm's ``_efficientnet_blocks.DepthwiseSeparableConv`` and ``InvertedResidual``.

Both may change the width (``d=``) and divide the grid (``s=``, on the depthwise conv, padding ``k // 2``); the
identity shortcut exists only when neither changes (and ``skip`` is on), and so does drop-path, as in timm. The
squeeze-excitation sits after the depthwise conv; its width, activation and gate are keywords that cover
EfficientNet (width from the block's input, rounded; the block's activation; sigmoid) and MobileNetV3 (from the
expanded width, a multiple of 8; ReLU; hard sigmoid). Layers are read in timm's order, so weights copy by read
order (:mod:`sdpnet.models.convert`).
"""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path
from sdpnet.blocks.layers.helpers import make_divisible
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.blocks.layers.se import make_se
from sdpnet.registry import register_block


@register_block("DS")
class DepthwiseSeparable(nn.Module):
    """``bn2(conv_pw(se(act1(bn1(conv_dw(x))))))`` (``act2`` after ``bn2`` when ``pw_act``), plus ``x`` when the
    stride is 1, the width kept and ``skip`` on.

    Args:
        in_dim: input channels.
        kernel_size: depthwise kernel.
        dim: output channels.
        stride: depthwise stride.
        act: activation.
        norm: norm after each conv (``bn``).
        pw_act: activation after the pointwise conv too.
        skip: the identity shortcut where the shape allows it.
        se_ratio: SE ratio of the input width (0: no SE).
        se_base: ``in`` or ``mid``: the same here (no expansion).
        se_divisor: SE width rounding (:func:`~sdpnet.blocks.layers.se.se_width`).
        se_act: SE activation (the spec's default: the block's ``act``).
        se_gate: SE gate.
        drop_path: stochastic depth rate of the branch (with the shortcut only).
    """

    def __init__(self, in_dim: int, kernel_size: int, dim: int, stride: int = 1, act: str = "relu", norm: str = "bn",
                 pw_act: bool = False, skip: bool = True, *, se_ratio: float = 0.0, se_base: str = "in",
                 se_divisor: int = 1, se_act: str, se_gate: str = "sigmoid", drop_path: float = 0.0) -> None:
        super().__init__()
        self.has_skip = skip and stride == 1 and in_dim == dim
        self.conv_dw = nn.Conv2d(in_dim, in_dim, kernel_size, stride, kernel_size // 2, groups=in_dim, bias=False)
        self.bn1 = get_norm2d(norm, in_dim)
        self.act1 = get_act(act)
        self.se = make_se(in_dim, se_ratio, 1.0, se_divisor, se_act, se_gate)
        self.conv_pw = nn.Conv2d(in_dim, dim, 1, bias=False)
        self.bn2 = get_norm2d(norm, dim)
        self.act2 = get_act(act if pw_act else "none")
        self.drop_path = make_drop_path(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.bn2(self.conv_pw(self.se(self.act1(self.bn1(self.conv_dw(x)))))))
        return x + self.drop_path(y) if self.has_skip else y  # has_skip is fixed at construction


@register_block("IR")
class InvertedResidual(nn.Module):
    """``bn3(conv_pwl(se(act2(bn2(conv_dw(act1(bn1(conv_pw(x)))))))))``, plus ``x`` when the stride is 1, the
    width kept and ``skip`` on; the hidden width is ``make_divisible(in_dim * exp_ratio, 8)``.

    Args:
        in_dim: input channels.
        kernel_size: depthwise kernel.
        dim: output channels.
        stride: depthwise stride.
        exp_ratio: expansion of the hidden width.
        act: activation.
        norm: norm after each conv (``bn``).
        skip: the identity shortcut where the shape allows it.
        se_ratio: SE ratio (0: no SE).
        se_base: ``in``: the ratio is of the block's input width (EfficientNet; the SE width is timm's
            ``round(hidden * se_ratio / exp_ratio)``); ``mid``: of the hidden width (MobileNetV3).
        se_divisor: SE width rounding (:func:`~sdpnet.blocks.layers.se.se_width`).
        se_act: SE activation (the spec's default: the block's ``act``).
        se_gate: SE gate.
        drop_path: stochastic depth rate of the branch (with the shortcut only).
    """

    def __init__(self, in_dim: int, kernel_size: int, dim: int, stride: int = 1, exp_ratio: float = 6.0,
                 act: str = "relu", norm: str = "bn", skip: bool = True, *, se_ratio: float = 0.0, se_base: str = "in",
                 se_divisor: int = 1, se_act: str, se_gate: str = "sigmoid", drop_path: float = 0.0) -> None:
        super().__init__()
        mid = make_divisible(in_dim * exp_ratio)
        self.has_skip = skip and stride == 1 and in_dim == dim
        self.conv_pw = nn.Conv2d(in_dim, mid, 1, bias=False)
        self.bn1 = get_norm2d(norm, mid)
        self.act1 = get_act(act)
        self.conv_dw = nn.Conv2d(mid, mid, kernel_size, stride, kernel_size // 2, groups=mid, bias=False)
        self.bn2 = get_norm2d(norm, mid)
        self.act2 = get_act(act)
        self.se = make_se(mid, se_ratio, exp_ratio if se_base == "in" else 1.0, se_divisor, se_act, se_gate)
        self.conv_pwl = nn.Conv2d(mid, dim, 1, bias=False)
        self.bn3 = get_norm2d(norm, dim)
        self.drop_path = make_drop_path(drop_path) if self.has_skip else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act2(self.bn2(self.conv_dw(self.act1(self.bn1(self.conv_pw(x))))))
        y = self.bn3(self.conv_pwl(self.se(y)))
        return x + self.drop_path(y) if self.has_skip else y  # has_skip is fixed at construction
