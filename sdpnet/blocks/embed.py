"""Learnable position embeddings: absolute (``POS``) and SdP-Net's neighbourhood embedding (``NEMB``).

Both are created for the token grid at the spec's ``img_size`` and resampled (bicubic) when the input grid
differs, so a model trained at one resolution runs at any other (progressive resizing).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sdpnet.registry import register_block


def resample(table: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``table`` (1, C, h, w) resized to ``size`` with bicubic interpolation; returned as is when it fits."""
    if tuple(table.shape[-2:]) == tuple(size):
        return table
    return F.interpolate(table, size=size, mode="bicubic", align_corners=False)


@register_block("POS")
class PosEmbed(nn.Module):
    """Add a learnable (1, C, gh, gw) table to the image tokens (truncated normal, std 0.02).

    With ``cls=True`` each class token gets a learnable position too (``cls_pos``, (1, num_cls, C)), as ViT's
    ``pos_embed`` has ``1 + gh * gw`` rows: the block is then token-aware (its schema makes it a ``tokens``
    block, called ``forward(x, t)``), so it stands in the body (``P16+CLS-POS(cls=true)+ENCx12-...``), where
    the tokens exist. Register tokens get no position.

    Args:
        in_dim: channels.
        grid: token grid (gh, gw) at the spec's ``img_size``.
        cls: also give the class tokens positions.
        num_cls: class tokens in the network.
    """

    no_weight_decay_params: tuple[str, ...] = ("pos_embed",)

    def __init__(self, in_dim: int, grid: tuple[int, int], cls: bool = False, num_cls: int = 0) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, in_dim, *grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.num_cls = num_cls
        if cls:
            self.cls_pos = nn.Parameter(torch.zeros(1, num_cls, in_dim))
            nn.init.trunc_normal_(self.cls_pos, std=0.02)
            self.no_weight_decay_params = ("pos_embed", "cls_pos")

    def forward(self, x: torch.Tensor,
                t: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x = x + resample(self.pos_embed, x.shape[-2:])
        if t is None:
            return x
        n = self.num_cls  # t = [class tokens, register tokens]: (B, T, C)
        return x, torch.cat([t[:, :n] + self.cls_pos, t[:, n:]], dim=1)


@register_block("NEMB")
class NeighbourEmbed(nn.Module):
    """SdP-Net neighbourhood embedding: each token adds the mean of a ``k x k`` neighbourhood of a learnable table.

    The table is (1, C, gh + k - 1, gw + k - 1), so ``avg_pool2d(table, k, stride=1)`` is exactly the grid;
    for another grid the table is resampled to (H + k - 1, W + k - 1) first.

    Args:
        in_dim: channels.
        grid: token grid (gh, gw) at the spec's ``img_size``.
        kernel_size: neighbourhood size ``k``.
    """

    no_weight_decay_params = ("table",)

    def __init__(self, in_dim: int, grid: tuple[int, int], kernel_size: int = 3) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        gh, gw = grid
        self.table = nn.Parameter(torch.zeros(1, in_dim, gh + kernel_size - 1, gw + kernel_size - 1))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size
        table = resample(self.table, (x.shape[-2] + k - 1, x.shape[-1] + k - 1))
        return x + F.avg_pool2d(table, k, stride=1)
