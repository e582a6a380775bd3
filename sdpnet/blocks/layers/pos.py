"""Position schemes inside attention by name: the constructors of the ``pos`` registry (names and docs are declared
torch-free in :mod:`sdpnet.vocabulary`).

A scheme is ``fn(head_dim, *, num_heads, num_prefix, grid) -> nn.Module`` whose ``forward(q, k, grid)`` takes the
queries and keys (B, heads, N, head_dim) of a sequence ``[num_prefix class/register tokens; H*W image tokens]``
(raster order) and the image grid (H, W) of this forward, and returns ``(q, k, bias)``: ``bias`` None, or an
additive attention bias broadcastable to (B, heads, Nq, N). The queries may be only the first Nq tokens (a last
block that computes the class tokens alone). ``grid`` at construction is the grid at the spec's ``img_size``; a
scheme follows other resolutions from the ``grid`` of each forward, as ``POS`` does. The learnable relative position
bias, ``relbias``, is in :mod:`sdpnet.blocks.layers.relpos`.
"""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.registry import register_pos

ROPE_TEMPERATURE = 100.0  # timm's vit_*_patch16_rope_224 (naver-ai/rope-vit's RoPE-Axial): rope_temperature=100


@register_pos("none")
class NoPos(nn.Module):
    """No position information: queries and keys unchanged, no bias."""

    def __init__(self, head_dim: int, *, num_heads: int, num_prefix: int, grid: tuple[int, int]) -> None:
        super().__init__()

    def forward(self, q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        return q, k, None


def rope_table(grid: tuple[int, int], head_dim: int, temperature: float = ROPE_TEMPERATURE,
               device: torch.device | None = None) -> torch.Tensor:
    """``[sin | cos]`` (H*W, 2 * head_dim) of 2-D axial rotary embeddings, raster order: the first half of each
    head's pairs rotate by the column x, the second half by the row y, at frequencies
    ``temperature ** (-i / (head_dim / 4))``, each angle repeated for the two channels of its pair (timm's
    RotaryEmbeddingCat, ``in_pixels=False``, ``grid_indexing='xy'``, interleaved layout)."""
    H, W = grid
    num_bands = head_dim // 4
    exp = torch.arange(num_bands, device=device, dtype=torch.float32) / num_bands
    bands = 1.0 / (temperature ** exp)  # (head_dim / 4,)
    ys, xs = torch.meshgrid(torch.arange(H, device=device, dtype=torch.float32),
                            torch.arange(W, device=device, dtype=torch.float32), indexing="ij")
    angles = (torch.stack([xs, ys], -1)[..., None] * bands).reshape(H * W, 2 * num_bands)  # (HW, head_dim / 2)
    angles = angles.repeat_interleave(2, -1)  # (HW, head_dim): [a0, a0, a1, a1, ...]
    return torch.cat([angles.sin(), angles.cos()], -1)


def rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Each channel pair (x0, x1) of ``x`` (..., N, head_dim) rotated by its angle: ``x cos + (-x1, x0) sin``; the
    rows of ``table`` (:func:`rope_table`) are the N positions."""
    sin, cos = table.chunk(2, -1)
    turned = torch.stack([-x[..., 1::2], x[..., ::2]], -1).reshape(x.shape)
    return (x * cos + turned * sin).to(x.dtype)


def apply_rope(q: torch.Tensor, k: torch.Tensor, table: torch.Tensor, planned: tuple[int, int],
               grid: tuple[int, int], num_prefix: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k (B, heads, N, head_dim) with their image tokens (after ``num_prefix``) rotated for ``grid``: by
    ``table`` when ``grid`` is the ``planned`` one it was made for, else by a table computed for ``grid``."""
    grid = (int(grid[0]), int(grid[1]))
    if grid != planned:
        table = rope_table(grid, q.shape[-1], device=q.device)
    n = num_prefix
    q = torch.cat([q[:, :, :n], rotate(q[:, :, n:], table[: max(q.shape[2] - n, 0)])], dim=2)
    k = torch.cat([k[:, :, :n], rotate(k[:, :, n:], table[: max(k.shape[2] - n, 0)])], dim=2)
    return q, k


# A leaf for torch.fx (symbolic_trace, torchvision's create_feature_extractor): the table depends on the real grid.
torch.fx.wrap("apply_rope")


@register_pos("rope")
class AxialRope(nn.Module):
    """2-D axial rotary position embeddings on the image tokens' queries and keys; class and register tokens
    are not rotated (timm's ``AttentionRope`` with ``RotaryEmbeddingCat``, as ``vit_small_patch16_rope_224``).

    Args:
        head_dim: channels per head, a multiple of 4 (x and y each rotate half the pairs).
        num_heads: heads (the table is shared by all heads).
        num_prefix: class + register tokens at the start of the sequence.
        grid: (H, W) at the spec's img_size; its table is kept, other grids get theirs computed per forward.
    """

    def __init__(self, head_dim: int, *, num_heads: int, num_prefix: int, grid: tuple[int, int]) -> None:
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"pos=rope needs a head width divisible by 4 (x and y rotate half the pairs each), "
                             f"got {head_dim}; pick the heads (or the head width) so that it is one")
        self.head_dim = head_dim
        self.num_prefix = num_prefix
        self.grid = tuple(grid)
        self.register_buffer("table", rope_table(self.grid, head_dim), persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, None]:
        q, k = apply_rope(q, k, self.table, self.grid, grid, self.num_prefix)
        return q, k, None

    def extra_repr(self) -> str:
        return f"head_dim={self.head_dim}, num_prefix={self.num_prefix}, grid={self.grid}"
