"""Convolutional body blocks: SdP-Net's depthwise mixer (``DWC``), ConvMixer (``CM``) and ``DOWN``."""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path, make_layer_scale
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


@register_block("DWC")
class DepthwiseMixer(nn.Module):
    """SdP-Net depthwise mixer: ``x + drop_path(ls(act(conv_pw(conv_dw(norm(x))))))``.

    Args:
        in_dim: channels (kept).
        kernel_size: depthwise kernel (padding ``k // 2``).
        norm: ``bn``, ``ln`` or ``none``, before the depthwise conv.
        act: activation after the pointwise conv.
        bias: bias of both convs.
        layer_scale: LayerScale init value (0: off).
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, kernel_size: int = 7, norm: str = "bn", act: str = "gelu", bias: bool = True,
                 layer_scale: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm = get_norm2d(norm, in_dim)
        self.conv_dw = nn.Conv2d(in_dim, in_dim, kernel_size, padding=kernel_size // 2, groups=in_dim, bias=bias)
        self.conv_pw = nn.Conv2d(in_dim, in_dim, 1, bias=bias)
        self.act = get_act(act)
        self.ls = make_layer_scale(in_dim, layer_scale, channel_dim=1)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.ls(self.act(self.conv_pw(self.conv_dw(self.norm(x))))))


@register_block("CM")
class ConvMixerLayer(nn.Module):
    """One ConvMixer layer: ``x + drop_path(norm1(act1(conv_dw(x))))``, then ``norm2(act2(conv_pw(x)))``.

    The same layers as timm's ConvMixer block (``Residual(conv_dw, act, BN)``, 1x1 conv, act, BN), so weights
    map one to one: ``0.fn.0 -> conv_dw``, ``0.fn.2 -> norm1``, ``1 -> conv_pw``, ``3 -> norm2``.

    Args:
        in_dim: channels (kept).
        kernel_size: depthwise kernel (padding "same").
        act: activation.
        bias: bias of both convs.
        drop_path: stochastic depth rate of the depthwise branch.
    """

    def __init__(self, in_dim: int, kernel_size: int, act: str = "gelu", bias: bool = True,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(in_dim, in_dim, kernel_size, padding="same", groups=in_dim, bias=bias)
        self.act1 = get_act(act)
        self.norm1 = nn.BatchNorm2d(in_dim)
        self.drop_path = make_drop_path(drop_path)
        self.conv_pw = nn.Conv2d(in_dim, in_dim, 1, bias=bias)
        self.act2 = get_act(act)
        self.norm2 = nn.BatchNorm2d(in_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.norm1(self.act1(self.conv_dw(x))))
        return self.norm2(self.act2(self.conv_pw(x)))


class _EmptyTokens(nn.Module):
    """Maps (B, 0, C) to (B, 0, width): the token path of ``DOWN`` when a network has no tokens."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return t.new_zeros(t.shape[0], 0, self.width)


@register_block("DOWN")
class Downsample(nn.Module):
    """Downsample the image by ``factor`` (norm, ``k x k`` conv with stride ``n``); tokens get ``Linear(in, out)``.

    The token projection exists only when the network declares tokens (``num_tokens > 0``), so a spec's
    parameter count includes ``in_dim * dim + dim`` per ``DOWN`` exactly when it has ``CLS``/``REG`` tokens.

    Args:
        in_dim: input channels.
        factor: kernel and stride ``n``.
        dim: output width.
        norm: ``bn``, ``ln`` or ``none``, before the conv.
        num_tokens: class + register tokens in the network.
        kernel_size: conv kernel ``k`` (default ``factor``: ConvNeXt's 2x2 stride 2; MetaFormer: 3x3 stride 2),
            padding ``(k - factor + 1) // 2``, so the grid is divided by exactly ``factor``.
    """

    def __init__(self, in_dim: int, factor: int, dim: int, norm: str = "bn", num_tokens: int = 0,
                 kernel_size: int | None = None) -> None:
        super().__init__()
        k = kernel_size or factor
        self.norm = get_norm2d(norm, in_dim)
        self.conv = nn.Conv2d(in_dim, dim, k, stride=factor, padding=max(0, (k - factor + 1) // 2))
        self.token_proj = nn.Linear(in_dim, dim) if num_tokens > 0 else _EmptyTokens(dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.conv(self.norm(x)), self.token_proj(t)
