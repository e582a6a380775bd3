"""CoAtNet's two blocks (timm ``maxxvit.py``): ``MBC``, the pre-norm MBConv, and ``TFM``, a transformer block over
the image grid with a position scheme (by default ``relbias``, the relative position bias).

Both keep the image as (B, C, H, W) and may open a stage: with stride ``s`` the shortcut is pooled (kernel and
stride ``s``: timm's ``avg2``/``max2`` at ``s=2``) and projected by a 1x1 convolution when the width changes,
as timm's ``Downsample2d``. In ``TFM`` the pooled normalised input is what attends, so the position scheme is made
for the block's output grid (the plan's input grid divided by ``s``).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sdpnet.blocks.attention import attend
from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path, make_layer_scale
from sdpnet.blocks.layers.helpers import make_divisible
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.blocks.layers.se import SqueezeExcite
from sdpnet.registry import get_component, register_block


def pool2d(kind: str, stride: int) -> nn.Module:
    """Pooling with kernel = stride (``avg`` or ``max``; floor of H / stride), ``nn.Identity`` at stride 1."""
    if stride == 1:
        return nn.Identity()
    return nn.AvgPool2d(stride, stride) if kind == "avg" else nn.MaxPool2d(stride, stride)


def shortcut(in_dim: int, dim: int, stride: int, pool: str, bias: bool) -> nn.Sequential:
    """The residual shortcut of a block that may stride and widen: ``proj(pool(x))``, a 1x1 convolution only
    when the width changes (timm's ``Downsample2d``)."""
    proj = nn.Conv2d(in_dim, dim, 1, bias=bias) if in_dim != dim else nn.Identity()
    return nn.Sequential(OrderedDict(pool=pool2d(pool, stride), proj=proj))


# attend is a torch.fx leaf here too: fx.wrap patches the globals of the module that names it.
torch.fx.wrap("attend")


@register_block("MBC")
class MBConvBlock(nn.Module):
    """Pre-norm MBConv (CoAtNet, MaxViT; timm's ``MbConvBlock``):
    ``shortcut(x) + drop_path(conv3(se(act(norm2(se_early(dw(act(norm1(conv1(down(pre_norm(x))))))))))))``.

    Args:
        in_dim: input channels.
        dim: output channels.
        kernel_size: kernel of the depthwise convolution.
        stride: how much the block divides the grid.
        down: where the branch strides: ``pool`` (a pool before ``conv1``), ``dw`` (the depthwise conv), ``pw``
            (``conv1``).
        pool: pooling of the shortcut (and of ``down=pool``): ``avg`` or ``max``, kernel = stride.
        expand_ratio: hidden width = make_divisible(ratio x the input width, 8).
        expand_output: count the hidden width (and the SE width) from the output width instead.
        act: activation after ``norm1`` and ``norm2``.
        pre_act: the activation after the pre-norm too.
        norm: the three norms (``bn``: BatchNorm2d, eps 1e-5).
        se_ratio: SE width = int(ratio x the hidden width (output width with ``expand_output``)); 0: no SE.
        se_act: activation inside the SE.
        se_early: the SE between the depthwise conv and ``norm2`` instead of after ``norm2``'s activation.
        bias: bias of ``conv3`` and of the shortcut's projection.
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, dim: int, kernel_size: int, stride: int, down: str, pool: str,
                 expand_ratio: float, expand_output: bool, act: str, pre_act: bool, norm: str, se_ratio: float,
                 se_act: str, se_early: bool, bias: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        base = dim if expand_output else in_dim
        hidden = make_divisible(base * expand_ratio)
        s_pool, s_pw, s_dw = (stride if down == m else 1 for m in ("pool", "pw", "dw"))
        self.shortcut = shortcut(in_dim, dim, stride, pool, bias)
        self.pre_norm = get_norm2d(norm, in_dim)
        self.pre_act = get_act(act) if pre_act else nn.Identity()
        self.down = pool2d(pool, s_pool)
        self.conv1 = nn.Conv2d(in_dim, hidden, 1, s_pw, bias=False)
        self.norm1 = get_norm2d(norm, hidden)
        self.act1 = get_act(act)
        self.conv_dw = nn.Conv2d(hidden, hidden, kernel_size, s_dw, (s_dw - 1 + kernel_size - 1) // 2,
                                 groups=hidden, bias=False)
        se_width = int(se_ratio * (dim if expand_output else hidden))
        se = SqueezeExcite(hidden, se_width, se_act) if se_ratio > 0 else nn.Identity()
        self.se_early = se if se_early else nn.Identity()
        self.norm2 = get_norm2d(norm, hidden)
        self.act2 = get_act(act)
        self.se = nn.Identity() if se_early else se
        self.conv3 = nn.Conv2d(hidden, dim, 1, bias=bias)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.shortcut(x)
        x = self.down(self.pre_act(self.pre_norm(x)))
        x = self.act1(self.norm1(self.conv1(x)))  # (B, hidden, H', W')
        x = self.se(self.act2(self.norm2(self.se_early(self.conv_dw(x)))))
        return s + self.drop_path(self.conv3(x))


class GridAttention(nn.Module):
    """Multi-head self-attention over the H x W positions of an NCHW image, 1x1 convolutions for ``qkv`` and
    ``proj`` (timm's ``Attention2d``: each head's query, key and value channels side by side in ``qkv``), with a
    registered position scheme on the queries and keys (its additive bias, if any, added to the logits).

    Args:
        in_dim: input channels.
        dim: output channels of ``proj``.
        head_dim: channels per head; heads = attention width // head_dim.
        expand_first: the attention runs at ``dim`` channels (``qkv`` widens) instead of ``in_dim``.
        grid: the grid it attends over at the model's resolution (the bias table's size).
        bias: bias of ``qkv`` and ``proj``.
        pos: a registered position scheme (:mod:`sdpnet.blocks.layers.pos`; ``relbias``:
            :class:`~sdpnet.blocks.layers.relpos.RelPosBias`).
        attn_drop: dropout on the attention weights (training only).
    """

    def __init__(self, in_dim: int, dim: int, head_dim: int, expand_first: bool, grid: tuple[int, int], bias: bool,
                 pos: str, attn_drop: float) -> None:
        super().__init__()
        width = dim if expand_first else in_dim
        if width % head_dim:
            raise ValueError(f"TFM: the attention width {width} is not divisible by the head width {head_dim}; "
                             f"pick hd dividing {width}")
        self.num_heads, self.head_dim, self.attn_drop = width // head_dim, head_dim, attn_drop
        self.qkv = nn.Conv2d(in_dim, 3 * width, 1, bias=bias)
        self.pos = get_component("pos", pos)(head_dim, num_heads=self.num_heads, num_prefix=0, grid=tuple(grid))
        self.proj = nn.Conv2d(width, dim, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W = x.shape[0], x.shape[2], x.shape[3]  # indexed, not unpacked: torch.fx traces it
        qkv = self.qkv(x).view(B, self.num_heads, 3 * self.head_dim, H * W).transpose(-1, -2)
        q, k, v = qkv.chunk(3, dim=-1)  # (B, heads, N, head_dim)
        q, k, bias = self.pos(q, k, (H, W))
        x = attend(q, k, v, self.attn_drop if self.training else 0.0, bias)
        return self.proj(x.transpose(-1, -2).reshape(B, -1, H, W))


@register_block("TFM")
class GridTransformerBlock(nn.Module):
    """Pre-norm transformer block on an NCHW image (CoAtNet's and MaxViT's ``T``; timm's ``TransformerBlock2d``):
    ``x = shortcut(x) + drop_path(ls1(attn(pool(norm1(x)))))``, then ``x + drop_path(ls2(fc2(act(fc1(norm2(x))))))``.

    Args:
        in_dim: input channels.
        dim: output channels.
        grid: the input grid at the model's resolution.
        stride: how much the block divides the grid (the normalised input and the shortcut are pooled).
        pool: ``avg`` or ``max``, kernel = stride.
        head_dim: channels per attention head.
        expand_first: the attention runs at ``dim`` channels (``qkv`` widens; the CoAtNet paper's) instead of
            ``in_dim`` (``proj`` widens; timm's ``_rw`` models).
        mlp_ratio: hidden width / ``dim`` of the MLP (1x1 convolutions).
        act: MLP activation.
        norm: the two norms (``ln``: LayerNorm over the channels; ``bn``: coatnet_bn's BatchNorm).
        eps: eps of the two norms (None: the norm's own, LayerNorm 1e-6, BatchNorm 1e-5).
        bias: bias of ``qkv`` and ``proj``.
        shortcut_bias: bias of the shortcut's projection.
        pos: position scheme of the attention, a registered ``pos`` name (``relbias``: relative position bias).
        layer_scale: LayerScale init of both branches (0: off).
        attn_drop: dropout on the attention weights.
        drop_path: stochastic depth rate of both branches.
    """

    def __init__(self, in_dim: int, dim: int, grid: tuple[int, int], stride: int, pool: str, head_dim: int,
                 expand_first: bool, mlp_ratio: float, act: str, norm: str, eps: float | None, bias: bool, shortcut_bias: bool, pos: str,
                 layer_scale: float, attn_drop: float, drop_path: float = 0.0) -> None:
        super().__init__()
        self.shortcut = shortcut(in_dim, dim, stride, pool, shortcut_bias)
        self.norm1 = get_norm2d(norm, in_dim, eps)
        self.down = pool2d(pool, stride)
        self.attn = GridAttention(in_dim, dim, head_dim, expand_first, (grid[0] // stride, grid[1] // stride), bias, pos,
                                  attn_drop)
        self.ls1 = make_layer_scale(dim, layer_scale, channel_dim=1)
        self.drop_path1 = make_drop_path(drop_path)
        self.norm2 = get_norm2d(norm, dim, eps)
        hidden = int(dim * mlp_ratio)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = get_act(act)
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.ls2 = make_layer_scale(dim, layer_scale, channel_dim=1)
        self.drop_path2 = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shortcut(x) + self.drop_path1(self.ls1(self.attn(self.down(self.norm1(x)))))
        return x + self.drop_path2(self.ls2(self.fc2(self.act(self.fc1(self.norm2(x))))))


__all__ = ["GridAttention", "GridTransformerBlock", "MBConvBlock", "pool2d", "shortcut"]
