"""Position embeddings: absolute (``POS``, learnable or sinusoidal) and SdP-Net's neighbourhood embedding (``NEMB``).

Both are created for the token grid at the spec's ``img_size`` and resampled (bicubic) when the input grid
differs, so a model trained at one resolution runs at any other (progressive resizing).
"""
from __future__ import annotations

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn

from sdpnet.registry import register_block


def resample(table: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``table`` (1, C, h, w) resized to ``size`` with bicubic interpolation; returned as is when it fits."""
    if tuple(table.shape[-2:]) == tuple(size):
        return table
    return F.interpolate(table, size=size, mode="bicubic", align_corners=False)


# A leaf for torch.fx (symbolic_trace, torchvision's create_feature_extractor): its size test needs real shapes.
torch.fx.wrap("resample")


_INIT_STD = {"timm": 0.02, "cct": 0.2}  # std of the learnable tables per init scheme


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """Compact-Transformers' fixed position table, (length, dim): row ``p``, column ``i`` is ``sin`` (even ``i``)
    or ``cos`` (odd ``i``) of ``p / 10000 ** (2 * (i // 2) / dim)``; angles in float64, rounded to float32 before
    the sine, as the official code does."""
    i = torch.arange(dim)
    angle = torch.arange(length, dtype=torch.float64)[:, None] / 10000.0 ** ((2 * (i // 2)).double() / dim)
    angle = angle.float()
    return torch.where(i % 2 == 0, angle.sin(), angle.cos())


@register_block("POS")
class PosEmbed(nn.Module):
    """Add a (1, C, gh, gw) table to the image tokens: learnable (truncated normal, std 0.02; ``init="cct"``:
    std 0.2, as Compact-Transformers), or with ``sine`` CCT's fixed sinusoidal table (a buffer, not learned).

    With ``cls=True`` each class token gets a position too (``cls_pos``, (1, num_cls, C)), as ViT's
    ``pos_embed`` has ``1 + gh * gw`` rows: the block is then token-aware (its schema makes it a ``tokens``
    block, called ``forward(x, t)``), so it stands in the body (``P16+CLS-POS(cls=true)+ENCx12-...``), where
    the tokens exist. Register tokens get no position. The sine table is one sequence, class tokens first:
    rows ``0 .. num_cls - 1`` go to the class tokens, the next ``gh * gw`` to the image in raster order.

    Args:
        in_dim: channels.
        grid: token grid (gh, gw) at the spec's ``img_size``.
        cls: also give the class tokens positions.
        num_cls: class tokens in the network.
        sine: fixed sinusoidal positions instead of learnable ones.
        init: ``timm`` (std 0.02) or ``cct`` (std 0.2): the learnable tables' truncated-normal init.
    """

    no_weight_decay_params: tuple[str, ...] = ("pos_embed",)

    def __init__(self, in_dim: int, grid: tuple[int, int], cls: bool = False, num_cls: int = 0,
                 sine: bool = False, init: str = "timm") -> None:
        super().__init__()
        self.num_cls = num_cls
        if sine:
            first = num_cls if cls else 0
            table = sinusoidal_table(first + grid[0] * grid[1], in_dim)
            self.register_buffer("pos_embed", table[first:].T.reshape(1, in_dim, *grid), persistent=False)
            if cls:
                self.register_buffer("cls_pos", table[None, :first].clone(), persistent=False)
            self.no_weight_decay_params = ()
            return
        if init not in _INIT_STD:
            raise ValueError(f"POS: init must be one of {', '.join(_INIT_STD)}, got {init!r}")
        std = _INIT_STD[init]
        self.pos_embed = nn.Parameter(torch.zeros(1, in_dim, *grid))
        nn.init.trunc_normal_(self.pos_embed, std=std)
        if cls:
            self.cls_pos = nn.Parameter(torch.zeros(1, num_cls, in_dim))
            nn.init.trunc_normal_(self.cls_pos, std=std)
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
