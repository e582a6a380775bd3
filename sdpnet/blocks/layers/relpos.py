"""Relative position bias over an image grid: one learnable bias per head for each (dy, dx) offset.

The bias of query ``i`` attending to key ``j`` on an H x W grid is ``table[offset(i, j)]``, where the offset
``(y_i - y_j, x_i - x_j)`` takes (2H - 1)(2W - 1) values (Swin, CoAtNet; timm's ``RelPosBias``, whose table
layout ((2H-1)(2W-1), heads) and row order this keeps, so its weights load as they are). It is added to the
attention logits before the softmax.

Registered as the position scheme ``relbias`` (:mod:`sdpnet.blocks.layers.pos` states the contract), so any block
whose attention takes ``pos=`` can use it. Class and register tokens (the sequence's first ``num_prefix``) have no
grid position: their bias to and from every token is zero (timm has no such model; BEiT instead learns three
extra rows for class-to-token, token-to-class and class-to-class, which a user can register as another scheme).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sdpnet.registry import register_pos


def relative_position_index(grid: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """(N * N,) row of the table for each (query, key) pair of an H x W grid (N = H * W, positions row-major):
    ``(dy + H - 1) * (2W - 1) + dx + W - 1``."""
    H, W = grid
    ys, xs = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
    dy = ys.reshape(-1, 1) - ys.reshape(1, -1)  # (N, N)
    dx = xs.reshape(-1, 1) - xs.reshape(1, -1)
    return ((dy + H - 1) * (2 * W - 1) + dx + W - 1).reshape(-1)


def resample_table(table: torch.Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """A ((2H-1)(2W-1), heads) table of ``grid`` bicubically resampled to the offsets of ``new_grid``."""
    (h0, w0), (h1, w1) = grid, new_grid
    t = table.t().reshape(1, -1, 2 * h0 - 1, 2 * w0 - 1)
    t = F.interpolate(t, size=(2 * h1 - 1, 2 * w1 - 1), mode="bicubic", align_corners=False)
    return t.reshape(-1, (2 * h1 - 1) * (2 * w1 - 1)).t()



def grid_bias(table: torch.Tensor, index: torch.Tensor, planned: tuple[int, int], grid: tuple[int, int]) -> torch.Tensor:
    """The (heads, N, N) bias between the N = H * W positions of ``grid`` from ``table`` (made for ``planned``,
    with its ``index``), resampled when ``grid`` is another."""
    H, W = int(grid[0]), int(grid[1])
    if (H, W) != planned:
        table = resample_table(table, planned, (H, W))
        index = relative_position_index((H, W), table.device)
    N = H * W
    return table[index].reshape(N, N, -1).permute(2, 0, 1)


# A leaf for torch.fx (symbolic_trace, torchvision's create_feature_extractor): the bias depends on the real grid.
torch.fx.wrap("grid_bias")


@register_pos("relbias")
class RelPosBias(nn.Module):
    """Learnable relative position bias as a position scheme: ``forward(q, k, grid)`` returns q and k unchanged and
    the additive bias (heads, Nq, N) of the grid's tokens, zero in the rows and columns of the prefix tokens.

    The table is made for ``grid`` (trunc-normal std 0.02, as timm); on another grid it is resampled bicubically
    to (2H' - 1) x (2W' - 1) offsets at run time (timm's ``resize_rel_pos_bias_table_simple``; timm's
    ``set_input_size`` uses BEiT's geometric resampling instead), so a model made at one resolution runs at
    others. Build the spec at the new ``img_size`` (and load the weights) for tables of the new size.

    Args:
        head_dim: channels per head (unused: the bias does not depend on it; the pos-scheme signature).
        num_heads: attention heads (one bias per head and offset).
        num_prefix: class + register tokens at the start of the sequence (zero bias to and from them).
        grid: (H, W), the grid the attention runs over at the resolution the model is made for.
    """

    no_weight_decay_params = ("table",)

    def __init__(self, head_dim: int, *, num_heads: int, num_prefix: int = 0, grid: tuple[int, int]) -> None:
        super().__init__()
        self.num_prefix = num_prefix
        self.grid = (int(grid[0]), int(grid[1]))
        H, W = self.grid
        self.table = nn.Parameter(torch.empty((2 * H - 1) * (2 * W - 1), num_heads))
        nn.init.trunc_normal_(self.table, std=0.02)
        self.register_buffer("index", relative_position_index(self.grid), persistent=False)

    def grid_bias(self, grid: tuple[int, int]) -> torch.Tensor:
        """The (num_heads, N, N) bias between the N = H * W positions of ``grid``, raster order."""
        return grid_bias(self.table, self.index, self.grid, grid)

    def forward(self, q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor,
                                                                                       torch.Tensor]:
        bias = self.grid_bias(grid)
        n = self.num_prefix
        if n:
            bias = F.pad(bias, (n, 0, n, 0))  # (heads, n + N, n + N): the prefix rows and columns zero
        return q, k, bias[:, : q.shape[2]]  # a block that computes only the first Nq tokens' queries

    def fit_state(self, name: str, value: torch.Tensor) -> torch.Tensor | None:
        """A saved ``table`` of another square grid (a model made for another resolution) resampled to this
        grid, for :func:`sdpnet.models.weights.adapt_state_dict`; None when it is not one."""
        side = (math.isqrt(value.shape[0]) + 1) // 2 if value.ndim == 2 else 0
        if name != "table" or side < 1 or (2 * side - 1) ** 2 != value.shape[0] \
                or value.shape[1] != self.table.shape[1]:
            return None
        return resample_table(value.float(), (side, side), self.grid).to(self.table.dtype)

    def extra_repr(self) -> str:
        return f"num_heads={self.table.shape[1]}, num_prefix={self.num_prefix}, grid={self.grid}"
