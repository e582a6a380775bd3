"""ResNet's residual blocks: ``BASIC`` (two 3x3 convolutions) and ``BOTTLE`` (1x1, 3x3, 1x1), timm's
``resnet.BasicBlock`` and ``resnet.Bottleneck``.

Each block may change the width (``d=``) and divide the grid (``s=``, on its 3x3 convolution); the shortcut is
then a projection, built from the block's own widths and stride as timm's ``make_blocks`` builds it for the first
block of a stage: a strided 1x1 conv + norm, or (``down=avg``, ResNet-D) a 2x2 average pool with the stride, then
a 1x1 conv + norm. The branch is computed before the shortcut, in timm's order, so weights copy by read order
(:mod:`sdpnet.models.convert`).
"""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


def projection(in_dim: int, dim: int, stride: int, down: str, norm: str) -> nn.Module:
    """The shortcut of a residual block from ``in_dim`` channels to ``dim`` with ``stride``: ``nn.Identity`` when
    both are kept, else a 1x1 conv (with the stride for ``down="conv"``, after a 2x2 average pool with it for
    ``down="avg"``) and a norm."""
    if stride == 1 and in_dim == dim:
        return nn.Identity()
    avg = down == "avg" and stride > 1
    pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False) if avg else nn.Identity()
    conv = nn.Conv2d(in_dim, dim, 1, stride=1 if avg else stride, bias=False)
    return nn.Sequential(pool, conv, get_norm2d(norm, dim))


def _act(name: str) -> nn.Module:
    """The activation ``name``; ReLU in place, as timm's ResNet (it follows a norm or an addition, whose backward
    does not need their output: one allocation less per activation)."""
    act = get_act(name)
    if isinstance(act, nn.ReLU):
        act.inplace = True
    return act


@register_block("BASIC")
class BasicBlock(nn.Module):
    """``act2(drop_path(bn2(conv2(act1(bn1(conv1(x)))))) + downsample(x))``, 3x3 convolutions, ``conv1`` strided.

    Args:
        in_dim: input channels.
        dim: output channels.
        stride: stride of ``conv1`` and of the shortcut.
        down: projection shortcut, ``conv`` or ``avg`` (:func:`projection`).
        act: activation (``relu``).
        norm: norm after each conv (``bn``).
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, dim: int, stride: int = 1, down: str = "conv", act: str = "relu",
                 norm: str = "bn", drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, dim, 3, stride=stride, padding=1, bias=False)
        self.bn1 = get_norm2d(norm, dim)
        self.act1 = _act(act)
        self.conv2 = nn.Conv2d(dim, dim, 3, padding=1, bias=False)
        self.bn2 = get_norm2d(norm, dim)
        self.drop_path = make_drop_path(drop_path)
        self.downsample = projection(in_dim, dim, stride, down, norm)
        self.act2 = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        y = self.drop_path(y)
        y += self.downsample(x)  # in place, as timm: y is a norm's or drop-path's output, free to overwrite
        return self.act2(y)


@register_block("BOTTLE")
class Bottleneck(nn.Module):
    """``act3(drop_path(bn3(conv3(act2(bn2(conv2(act1(bn1(conv1(x))))))))) + downsample(x))``: 1x1 to the
    bottleneck width ``max(1, int(dim * mid_ratio))``, 3x3 strided, 1x1 to ``dim``.

    Args:
        in_dim: input channels.
        dim: output channels.
        stride: stride of ``conv2`` and of the shortcut.
        mid_ratio: bottleneck width / ``dim`` (ResNet: 0.25).
        down: projection shortcut, ``conv`` or ``avg`` (:func:`projection`).
        act: activation (``relu``).
        norm: norm after each conv (``bn``).
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, dim: int, stride: int = 1, mid_ratio: float = 0.25, down: str = "conv",
                 act: str = "relu", norm: str = "bn", drop_path: float = 0.0) -> None:
        super().__init__()
        mid = max(1, int(dim * mid_ratio))
        self.conv1 = nn.Conv2d(in_dim, mid, 1, bias=False)
        self.bn1 = get_norm2d(norm, mid)
        self.act1 = _act(act)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1, bias=False)
        self.bn2 = get_norm2d(norm, mid)
        self.act2 = _act(act)
        self.conv3 = nn.Conv2d(mid, dim, 1, bias=False)
        self.bn3 = get_norm2d(norm, dim)
        self.drop_path = make_drop_path(drop_path)
        self.downsample = projection(in_dim, dim, stride, down, norm)
        self.act3 = _act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv1(x)))
        y = self.bn3(self.conv3(self.act2(self.bn2(self.conv2(y)))))
        y = self.drop_path(y)
        y += self.downsample(x)  # in place, as timm: y is a norm's or drop-path's output, free to overwrite
        return self.act3(y)
