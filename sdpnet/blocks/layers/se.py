"""Squeeze-excitation: a per-channel gate computed from the globally pooled input (SENet; MobileNetV3 and
EfficientNet's form, with the activation and the gate as keywords)."""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.helpers import make_divisible


def se_width(channels: int, ratio: float, divisor: int = 1) -> int:
    """The reduced width of an SE over ``channels``: ``round(channels * ratio)`` for ``divisor`` 1 (timm's
    ``SqueezeExcite`` default, Python's round), else ``make_divisible(channels * ratio, divisor)`` (MobileNetV3's
    ``round_channels``); at least 1."""
    v = channels * ratio
    return max(1, round(v) if divisor == 1 else make_divisible(v, divisor))


class SqueezeExcite(nn.Module):
    """``x * gate(conv_expand(act(conv_reduce(mean_hw(x)))))`` with 1x1 convolutions (bias), as timm's
    ``_efficientnet_blocks.SqueezeExcite``.

    Args:
        dim: channels of ``x``.
        rd_dim: reduced width.
        act: activation between the two convolutions.
        gate: gate activation (``sigmoid``; MobileNetV3: ``hardsigmoid``).
    """

    def __init__(self, dim: int, rd_dim: int, act: str = "relu", gate: str = "sigmoid") -> None:
        super().__init__()
        self.conv_reduce = nn.Conv2d(dim, rd_dim, 1)
        self.act = get_act(act)
        self.conv_expand = nn.Conv2d(rd_dim, dim, 1)
        self.gate = get_act(gate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)  # (B, C, 1, 1)
        return x * self.gate(self.conv_expand(self.act(self.conv_reduce(s))))


def make_se(dim: int, ratio: float, base: float, divisor: int, act: str, gate: str) -> nn.Module:
    """``SqueezeExcite`` over ``dim`` channels of width ``se_width(dim, ratio / base, divisor)``, or
    ``nn.Identity`` when ``ratio`` is 0. ``base``: the factor the ratio's reference width is smaller than ``dim``
    (an inverted residual's expansion when the SE width follows the block's input, timm's ``se_from_exp=False``)."""
    if ratio == 0:
        return nn.Identity()
    return SqueezeExcite(dim, se_width(dim, ratio / base, divisor), act, gate)
