"""MetaFormer token mixers: pooling (``POOL``, PoolFormer) and the inverted separable conv (``SEP``, ConvFormer).

MetaFormer (Yu et al., "MetaFormer Baselines for Vision") writes a block as a residual token mixer, then a
residual channel MLP. Here each half is its own block: the mixers below, and the body ``MLP`` (with
``act=starrelu``, ``norm=lnnb``, ``bias=false``...) as the channel half, so a mixer can stand anywhere a
residual layer can (inside an SdP-Net group, before ``ENC``, after class tokens are declared). Each half is
timm's ``MetaFormerBlock`` half, op for op::

    x = res_scale(x) + layer_scale(drop_path(mixer(norm(x))))

``rs`` (ResScale: a learnable per-channel scale of the shortcut) and ``ls`` (LayerScale of the branch) are
off at 0.
"""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import get_act
from sdpnet.blocks.layers.drop import make_drop_path, make_layer_scale
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


@register_block("POOL")
class PoolMixer(nn.Module):
    """PoolFormer's mixer: ``rs(x) + drop_path(ls(avg_pool_k(n) - n))`` with ``n = norm(x)``.

    The average pool has stride 1, padding ``k // 2`` and does not count the padding (``count_include_pad=False``).

    Args:
        in_dim: channels (kept).
        pool_size: pooling window ``k`` (odd).
        norm: norm before the mixer (``gn1``: PoolFormer's GroupNorm with one group).
        layer_scale: LayerScale init value (0: off; PoolFormer 1e-5).
        res_scale: ResScale init value (0: off).
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, pool_size: int = 3, norm: str = "gn1", layer_scale: float = 1e-5,
                 res_scale: float = 0.0, drop_path: float = 0.0) -> None:
        super().__init__()
        self.res_scale = make_layer_scale(in_dim, res_scale, channel_dim=1)
        self.norm = get_norm2d(norm, in_dim)
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)
        self.drop_path = make_drop_path(drop_path)
        self.layer_scale = make_layer_scale(in_dim, layer_scale, channel_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.res_scale(x)
        n = self.norm(x)
        return shortcut + self.layer_scale(self.drop_path(self.pool(n) - n))


@register_block("SEP")
class SepConvMixer(nn.Module):
    """ConvFormer's mixer: ``rs(x) + drop_path(ls(pwconv2(dwconv_k(act(pwconv1(norm(x)))))))``.

    An inverted separable convolution (MobileNetV2): a 1x1 expansion to ``r * dim``, the activation, a
    ``k x k`` depthwise conv, a 1x1 projection back (timm's ``SepConv`` with ``act2`` the identity).

    Args:
        in_dim: channels (kept).
        kernel_size: depthwise kernel (odd, padding ``k // 2``).
        expansion_ratio: hidden width / width (ConvFormer: 2).
        act: activation after the expansion (ConvFormer: StarReLU).
        norm: norm before the mixer (``lnnb``: LayerNorm without bias, ConvFormer's).
        bias: bias of the three convolutions (ConvFormer: none).
        layer_scale: LayerScale init value (0: off).
        res_scale: ResScale init value (0: off; ConvFormer stages 3-4: 1).
        drop_path: stochastic depth rate of the branch.
    """

    def __init__(self, in_dim: int, kernel_size: int = 7, expansion_ratio: float = 2.0, act: str = "starrelu",
                 norm: str = "lnnb", bias: bool = False, layer_scale: float = 0.0, res_scale: float = 0.0,
                 drop_path: float = 0.0) -> None:
        super().__init__()
        hidden = int(in_dim * expansion_ratio)
        self.res_scale = make_layer_scale(in_dim, res_scale, channel_dim=1)
        self.norm = get_norm2d(norm, in_dim)
        self.pwconv1 = nn.Conv2d(in_dim, hidden, 1, bias=bias)
        self.act = get_act(act)
        self.dwconv = nn.Conv2d(hidden, hidden, kernel_size, padding=kernel_size // 2, groups=hidden, bias=bias)
        self.pwconv2 = nn.Conv2d(hidden, in_dim, 1, bias=bias)
        self.drop_path = make_drop_path(drop_path)
        self.layer_scale = make_layer_scale(in_dim, layer_scale, channel_dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.res_scale(x)
        y = self.pwconv2(self.dwconv(self.act(self.pwconv1(self.norm(x)))))
        return shortcut + self.layer_scale(self.drop_path(y))
