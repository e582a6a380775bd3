"""Stochastic depth (drop-path) and LayerScale: the per-residual-branch wrappers."""
from __future__ import annotations

import torch
from torch import nn


class DropPath(nn.Module):
    """Drop whole residual branches per sample with probability ``drop_prob`` (stochastic depth).

    Kept samples are scaled by ``1 / (1 - drop_prob)`` so the expectation is unchanged (timm).

    Args:
        drop_prob: probability of dropping the branch of a sample, in [0, 1).
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_path rate must be in [0, 1), got {drop_prob}")
        self.drop_prob = float(drop_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = x.new_empty(shape).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def make_drop_path(rate: float) -> nn.Module:
    """``DropPath(rate)``, or ``nn.Identity`` when the rate is 0."""
    return DropPath(rate) if rate > 0 else nn.Identity()


class LayerScale(nn.Module):
    """Multiply by a learnable per-channel ``gamma`` initialised to ``init_values`` (CaiT / timm).

    Args:
        dim: channels.
        init_values: initial value of every entry of ``gamma``.
        channel_dim: 1 for NCHW images (gamma shaped (dim, 1, 1)), -1 for tokens (gamma shaped (dim,)).
    """

    def __init__(self, dim: int, init_values: float, channel_dim: int = -1) -> None:
        super().__init__()
        shape = (dim,) if channel_dim == -1 else (dim, 1, 1)
        self.gamma = nn.Parameter(torch.full(shape, float(init_values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def make_layer_scale(dim: int, init_values: float, channel_dim: int = -1) -> nn.Module:
    """``LayerScale`` when ``init_values`` > 0, else ``nn.Identity``."""
    return LayerScale(dim, init_values, channel_dim) if init_values > 0 else nn.Identity()
