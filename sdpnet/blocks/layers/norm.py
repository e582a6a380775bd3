"""Normalisation layers by name: channel norms for NCHW images and for (B, C) features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LN_EPS = 1e-6  # timm's ViT LayerNorm eps: the default of every LayerNorm in sdpnet except SEQPOOL's (CCT: 1e-5)
GN_EPS = 1e-5  # GroupNorm's eps (``gn1``): PyTorch's default, as PoolFormer's GroupNorm1


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (timm's LayerNorm2d).

    The permutes are views; for a channels_last input the normalised dimension is contiguous. ``bias=False``
    is MetaFormer's ``LayerNorm2dNoBias`` (a weight, no bias).
    """

    def __init__(self, num_channels: int, eps: float = LN_EPS, bias: bool = True) -> None:
        super().__init__(num_channels, eps=eps, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def get_norm2d(name: str, dim: int, eps: float = LN_EPS) -> nn.Module:
    """A norm over the channels of (B, dim, H, W): ``bn`` BatchNorm2d, ``ln`` LayerNorm2d (``eps``), ``lnnb`` the
    same without bias, ``gn1`` GroupNorm with one group (eps 1e-5: over channels and positions), ``none``."""
    if name == "bn":
        return nn.BatchNorm2d(dim)
    if name in ("ln", "lnnb"):
        return LayerNorm2d(dim, eps=eps, bias=name == "ln")
    if name == "gn1":
        return nn.GroupNorm(1, dim, eps=GN_EPS)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of bn, ln, lnnb, gn1, none")


def get_norm1d(name: str, dim: int, eps: float = LN_EPS) -> nn.Module:
    """A norm over the last dimension of (B, dim) features: ``bn`` BatchNorm1d, ``ln`` LayerNorm (``eps``), ``lnnb``
    the same without bias, ``gn1`` GroupNorm with one group (eps 1e-5), ``none``. ``ln`` and ``lnnb`` also
    normalise (B, N, dim) token sequences."""
    if name == "bn":
        return nn.BatchNorm1d(dim)
    if name in ("ln", "lnnb"):
        return nn.LayerNorm(dim, eps=eps, bias=name == "ln")
    if name == "gn1":
        return nn.GroupNorm(1, dim, eps=GN_EPS)
    if name == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose one of bn, ln, lnnb, gn1, none")
