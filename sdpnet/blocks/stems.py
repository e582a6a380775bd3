"""Stem blocks: patchify (``P``), CCT conv tokenizer (``CT``) and plain conv (``CONV``)."""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


@register_block("P")
class PatchEmbed(nn.Module):
    """Patchify: ``patch x patch`` conv with stride ``patch``, then activation, then norm.

    ``P16`` alone is ViT's patch embedding; ``P7(act=gelu,norm=bn)`` is ConvMixer's stem (conv, GELU, BN);
    ``P16(norm=bn)`` is SdP-Net v1's (conv with bias, BN).

    Args:
        in_dim: input channels.
        patch_size: kernel and stride.
        dim: output width.
        bias: conv bias.
        norm: ``bn``, ``ln`` or ``none``, after the activation.
        act: activation after the conv (``none`` by default).
        kernel_size: conv kernel (default ``patch_size``); a larger one overlaps the patches (MetaFormer's stem:
            ``P4(k=7)``, a 7x7 conv with stride 4), with padding ``(k - patch_size + 1) // 2`` so that the grid
            is still the input divided by ``patch_size``.
    """

    def __init__(self, in_dim: int, patch_size: int, dim: int, bias: bool = True,
                 norm: str = "none", act: str = "none", kernel_size: int | None = None) -> None:
        super().__init__()
        k = kernel_size or patch_size
        self.proj = nn.Conv2d(in_dim, dim, k, stride=patch_size, padding=max(0, (k - patch_size + 1) // 2), bias=bias)
        self.act = get_act(act)
        self.norm = get_norm2d(norm, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.act(self.proj(x)))


@register_block("CT")
class ConvTokenizer(nn.Module):
    """One CCT tokenizer layer: ``k x k`` conv (no bias), activation, 3x3 max-pool with stride 2.

    ``CT3(norm=bn)`` puts a BatchNorm between the conv and the activation (a VGG-style stage; CCT has none).

    Args:
        in_dim: input channels.
        kernel_size: conv kernel ``k`` (padding ``max(1, k // 2)``).
        dim: output width (CCT: 64 for all but the last layer, which the resolver sets).
        stride: conv stride (default ``max(1, k // 2 - 1)``, as CCT).
        bias: conv bias.
        norm: ``none`` (CCT), ``bn`` or ``ln``, after the conv.
        eps: eps of the norm (None: the norm's own).
        act: activation (``relu``).
    """

    def __init__(self, in_dim: int, kernel_size: int, dim: int, stride: int,
                 bias: bool = False, norm: str = "none", eps: float | None = None, act: str = "relu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, dim, kernel_size, stride=stride, padding=max(1, kernel_size // 2), bias=bias)
        self.norm = get_norm2d(norm, dim, eps=eps)
        self.act = get_act(act)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


@register_block("CONV")
class ConvNormAct(nn.Module):
    """``k x k`` conv (odd ``k``, padding ``k // 2``), norm, activation; the grid is divided by ``stride``.

    Args:
        in_dim: input channels.
        kernel_size: conv kernel.
        dim: output width.
        stride: conv stride.
        bias: conv bias.
        norm: ``bn``, ``ln`` or ``none``.
        act: activation.
    """

    def __init__(self, in_dim: int, kernel_size: int, dim: int, stride: int = 1,
                 bias: bool = False, norm: str = "bn", act: str = "gelu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, dim, kernel_size, stride=stride, padding=kernel_size // 2, bias=bias)
        self.norm = get_norm2d(norm, dim)
        self.act = get_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))
