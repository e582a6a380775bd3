"""``CNX``: the ConvNeXt block, ``x + ls * mlp(norm(depthwise_k(x)))`` (timm ``convnext.ConvNeXtBlock``).

The norm and the MLP run on the channels-last view of the depthwise output, as timm's ConvNeXt does for its
larger models (Linear layers, LayerNorm over the last dimension); the residual is added in that layout too, so
the block returns a channels_last tensor. The next ``CNX`` then gets its channels-last view without a copy:
its depthwise convolution runs in channels_last and every permute below is a view. timm's ``conv_mlp``
variant (1x1 convolutions, LayerNorm2d: ``convnext_atto``) computes the same function, and its weights load
reshaped (``sdpnet.models.convert``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path
from sdpnet.blocks.layers.norm import LN_EPS, get_norm2d
from sdpnet.registry import register_block


class _NormLast(nn.Module):
    """A norm of :func:`get_norm2d` applied to a channels-last (B, H, W, C) tensor (permuted to NCHW and back)."""

    def __init__(self, name: str, dim: int) -> None:
        super().__init__()
        self.norm = get_norm2d(name, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def norm_last(name: str, dim: int) -> nn.Module:
    """A norm over the last dimension of (B, H, W, C): LayerNorm (with or without bias) directly, others via NCHW."""
    if name in ("ln", "lnnb"):
        return nn.LayerNorm(dim, eps=LN_EPS, bias=name == "ln")
    return nn.Identity() if name == "none" else _NormLast(name, dim)


@register_block("CNX")
class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: ``x + drop_path(gamma * fc2(act(fc1(norm(conv_dw(x))))))``.

    Args:
        in_dim: channels (kept).
        kernel_size: depthwise kernel (padding ``k // 2``).
        mlp_ratio: hidden width / width of the MLP.
        act: MLP activation.
        norm: norm after the depthwise conv (``ln``: ConvNeXt's LayerNorm, eps 1e-6).
        bias: bias of the depthwise conv and both MLP layers.
        layer_scale: init value of the per-channel ``gamma`` (0: off).
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, kernel_size: int = 7, mlp_ratio: float = 4.0, act: str = "gelu",
                 norm: str = "ln", bias: bool = True, layer_scale: float = 1e-6, drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(in_dim * mlp_ratio)
        self.conv_dw = nn.Conv2d(in_dim, in_dim, kernel_size, padding=kernel_size // 2, groups=in_dim, bias=bias)
        self.norm = norm_last(norm, in_dim)
        self.fc1 = nn.Linear(in_dim, hidden, bias=bias)
        self.act = get_act(act)
        self.fc2 = nn.Linear(hidden, in_dim, bias=bias)
        if layer_scale > 0:
            self.gamma = nn.Parameter(torch.full((in_dim,), float(layer_scale)))
        else:
            self.register_buffer("gamma", torch.ones(in_dim), persistent=False)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dw = self.conv_dw
        # the bias added apart, in place: oneDNN's depthwise backward with a bias costs ~30% more on the CPU
        # (8 x 96 x 56 x 56: 167-184 ms against 124-127 ms without, torch 2.14) than autograd's sum for it
        y = F.conv2d(x, dw.weight, None, 1, dw.padding, 1, dw.groups)
        if dw.bias is not None:  # fixed at construction
            y = y.add_(dw.bias.view(-1, 1, 1))
        y = y.permute(0, 2, 3, 1)  # (B, H, W, C)
        y = self.drop_path(self.fc2(self.act(self.fc1(self.norm(y)))))
        return torch.addcmul(x.permute(0, 2, 3, 1), y, self.gamma).permute(0, 3, 1, 2)
