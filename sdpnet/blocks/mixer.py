"""``TMLP``: MLP-Mixer's token-mixing MLP, ``x + mlp_over_positions(norm(x))`` (timm ``MixerBlock``'s first half).

The MLP mixes the ``H * W`` positions of each channel: ``fc1`` maps the ``H * W`` positions to a hidden width of
``r * channels`` (MLP-Mixer sizes it by the channels: 256 for Mixer-S's 512), ``fc2`` maps back. Its weights are
made for the token grid at the spec's ``img_size``; on another grid they are resampled (bilinear over the grid,
like a position table), ``fc1``'s divided by the change in the number of positions so that a constant image
gives the same hidden values. The body ``MLP`` (``norm=ln``) is the Mixer's channel half.
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


def _resample_positions(w: torch.Tensor, grid: tuple[int, int], size: tuple[int, int], dim: int) -> torch.Tensor:
    """``w`` with its position axis ``dim`` (of length ``gh * gw``) resized to ``size`` (bilinear over the grid)."""
    w = w.movedim(dim, -1)
    lead = w.shape[:-1]
    table = w.reshape(1, -1, *grid)  # (1, rows, gh, gw)
    table = F.interpolate(table, size=size, mode="bilinear", align_corners=False)
    return table.reshape(*lead, size[0] * size[1]).movedim(-1, dim)


def _grid_weights(w1: torch.Tensor, b1: torch.Tensor | None, w2: torch.Tensor, b2: torch.Tensor | None,
                  grid: tuple[int, int], size: tuple[int, int]) -> tuple[torch.Tensor | None, ...]:
    """fc1/fc2 weights and biases made for ``grid``, for a ``size`` grid (as they are when it is ``grid``)."""
    if tuple(size) == tuple(grid):
        return w1, b1, w2, b2
    scale = (grid[0] * grid[1]) / (size[0] * size[1])
    w1 = _resample_positions(w1, grid, size, 1) * scale
    w2 = _resample_positions(w2, grid, size, 0)
    b2 = None if b2 is None else _resample_positions(b2, grid, size, 0)
    return w1, b1, w2, b2


# A leaf for torch.fx (symbolic_trace, torchvision's create_feature_extractor): its size test needs real shapes.
torch.fx.wrap("_grid_weights")


@register_block("TMLP")
class TokenMixingMlp(nn.Module):
    """MLP-Mixer token mixing: ``x + drop_path(fc2(act(fc1(norm(x)^T)))^T)`` over the positions of each channel.

    The output is channels_last (the layout the channel MLP after it reads without a copy).

    Args:
        in_dim: channels (kept).
        grid: token grid (gh, gw) at the spec's ``img_size``: the MLP's input and output size is ``gh * gw``.
        mlp_ratio: hidden width / channels (MLP-Mixer: 0.5).
        act: activation.
        norm: norm over the channels first (``ln``: MLP-Mixer's LayerNorm, eps 1e-6).
        bias: bias of both layers.
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, grid: tuple[int, int], mlp_ratio: float = 0.5, act: str = "gelu",
                 norm: str = "ln", bias: bool = True, drop_path: float = 0.0) -> None:
        super().__init__()
        self.grid = tuple(grid)
        positions = grid[0] * grid[1]
        hidden = int(in_dim * mlp_ratio)
        self.norm = get_norm2d(norm, in_dim)
        self.fc1 = nn.Linear(positions, hidden, bias=bias)
        self.act = get_act(act)
        self.fc2 = nn.Linear(hidden, positions, bias=bias)
        self.drop_path = make_drop_path(drop_path)

    def _weights(self, size: tuple[int, int]) -> tuple[torch.Tensor | None, ...]:
        """fc1/fc2 weights and biases for a ``size`` grid (as they are at the native grid)."""
        return _grid_weights(self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias, self.grid, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        w1, b1, w2, b2 = self._weights((H, W))
        n = self.norm(x).permute(0, 2, 3, 1).reshape(B, H * W, C)  # (B, HW, C): a view when channels_last
        # (B, C, HW) @ (HW, hidden) and (HW, hidden) @ (B, hidden, C) as batched products of transposed views:
        # no copy of the activations into a row-per-channel layout, and the result comes out channels-last
        h = torch.bmm(n.transpose(1, 2), w1.t().expand(B, -1, -1))  # (B, C, hidden)
        h = self.act(h if b1 is None else h + b1)
        y = torch.bmm(w2.expand(B, -1, -1), h.transpose(1, 2))  # (B, HW, C)
        y = y if b2 is None else y + b2[:, None]
        return self.drop_path(y.reshape(B, H, W, C).permute(0, 3, 1, 2)) + x
