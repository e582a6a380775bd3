"""Normalisation layers by name: the constructors of the ``norm`` registry (names and docs are declared torch-free
in :mod:`sdpnet.vocabulary`).

A norm constructor is ``fn(dim, *, channels_first, eps) -> nn.Module``: with ``channels_first`` it normalises the
channels of (B, dim, H, W) images, else the last dimension of (B, dim) features or (B, N, dim) token sequences.
``eps`` is the block's ``eps`` keyword where the block has one and it is set (in the spec or by the ``ln_eps``
hyperparameter), else the norm's own default (:data:`OWN_EPS`; LayerNorm's 1e-6 for the rest and for a user's norm).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdpnet.registry import get_component, register_norm

LN_EPS = 1e-6  # timm's ViT LayerNorm eps: the default of every LayerNorm in sdpnet except SEQPOOL's (CCT: 1e-5)
GN_EPS = 1e-5  # GroupNorm's eps (``gn1``): PyTorch's default, as PoolFormer's GroupNorm1
GN_NB_EPS = 1e-6  # ``gn1nb``: timm's GroupNorm1NoBias (metaformer.py) sets eps 1e-6 unless given one
BN_EPS = 1e-5  # BatchNorm's eps: PyTorch's default, as timm's ResNet, EfficientNet and CoAtNet's conv stages
#: The eps a norm gets from a block that sets none (BatchNorm and GroupNorm keep their usual defaults; a block's
#: ``eps`` reaches them too, as timm's coatnet_bn_0_rw_224 needs: BatchNorm eps 1e-6 in its transformer blocks).
OWN_EPS = {"bn": BN_EPS, "gn1": GN_EPS, "gn1nb": GN_NB_EPS}


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


class RMSNorm2d(nn.RMSNorm):
    """RMSNorm over the channels of an NCHW tensor (``torch.nn.RMSNorm`` on the channels-last view)."""

    def __init__(self, num_channels: int, eps: float = LN_EPS) -> None:
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class BatchNormLast(nn.BatchNorm1d):
    """BatchNorm1d over the last dimension: (B, C) as BatchNorm1d, (B, N, C) per channel over batch and tokens."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 3:
            return super().forward(x.transpose(1, 2)).transpose(1, 2)
        return super().forward(x)


class GroupNorm1Last(nn.GroupNorm):
    """GroupNorm with one group over the last dimension: (B, C) normalised over C, (B, N, C) over N and C (as
    ``gn1`` on an image normalises over channels and positions), with a per-channel affine."""

    def __init__(self, num_channels: int, eps: float, bias: bool = True) -> None:
        super().__init__(1, num_channels, eps=eps, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.movedim(-1, 1)).movedim(1, -1)


@register_norm("bn")
def batch_norm(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    return nn.BatchNorm2d(dim, eps=eps) if channels_first else BatchNormLast(dim, eps=eps)


@register_norm("ln")
def layer_norm(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    return LayerNorm2d(dim, eps=eps) if channels_first else nn.LayerNorm(dim, eps=eps)


@register_norm("none")
def no_norm(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    return nn.Identity()


@register_norm("lnnb")
def layer_norm_no_bias(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    return LayerNorm2d(dim, eps=eps, bias=False) if channels_first else nn.LayerNorm(dim, eps=eps, bias=False)


@register_norm("gn1")
def group_norm1(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    return nn.GroupNorm(1, dim, eps=eps) if channels_first else GroupNorm1Last(dim, eps=eps)


@register_norm("gn1nb")
def group_norm1_no_bias(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    if channels_first:
        return nn.GroupNorm(1, dim, eps=eps, bias=False)
    return GroupNorm1Last(dim, eps=eps, bias=False)


@register_norm("rms")
def rms_norm(dim: int, *, channels_first: bool, eps: float) -> nn.Module:
    return RMSNorm2d(dim, eps=eps) if channels_first else nn.RMSNorm(dim, eps=eps)


def make_norm(name: str, dim: int, *, channels_first: bool, eps: float | None = None) -> nn.Module:
    """A new norm module of the registered norm ``name`` (see the module docstring for the two layouts); ``eps``
    None: the norm's own (:data:`OWN_EPS`, else 1e-6)."""
    eps = OWN_EPS.get(name, LN_EPS) if eps is None else eps
    return get_component("norm", name)(dim, channels_first=channels_first, eps=eps)


def get_norm2d(name: str, dim: int, eps: float | None = None) -> nn.Module:
    """A norm over the channels of (B, dim, H, W): the registered norm ``name`` (``python -m sdpnet blocks``)."""
    return make_norm(name, dim, channels_first=True, eps=eps)


def get_norm1d(name: str, dim: int, eps: float | None = None) -> nn.Module:
    """A norm over the last dimension of (B, dim) features or (B, N, dim) token sequences: the registered norm
    ``name``."""
    return make_norm(name, dim, channels_first=False, eps=eps)
