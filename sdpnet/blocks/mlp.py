"""The body ``MLP``: a residual channel MLP on the image tokens, as 1x1 convolutions."""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.act import GatedAct, get_act
from sdpnet.blocks.layers.drop import make_drop_path, make_layer_scale
from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


@register_block("MLP", role="body")
class ConvMlp(nn.Module):
    """``rs(x) + drop_path(ls(fc2(act(fc1(norm(x))))))`` with 1x1 convs and ``hidden = int(dim * mlp_ratio)``.

    Gated (GLU): ``fc1`` gives ``2 * hidden`` channels ``(a, b)`` and ``act`` is ``act(a) * b``. No dropout:
    SdP-Net applies dropout to the FFN of attention blocks only.

    Args:
        in_dim: channels (kept).
        mlp_ratio: hidden width / width.
        act: activation.
        norm: ``bn``, ``ln`` or ``none``, before ``fc1``.
        bias: bias of both convs.
        layer_scale: LayerScale init value (0: off).
        gated: GLU-style gating.
        drop_path: stochastic depth rate of the branch.
        res_scale: ResScale init value, a learnable per-channel scale ``rs`` of the shortcut (0: off;
            MetaFormer's channel MLP in its last stages: 1).
    """

    def __init__(self, in_dim: int, mlp_ratio: float = 4.0, act: str = "gelu", norm: str = "bn", bias: bool = True,
                 layer_scale: float = 0.0, gated: bool = False, drop_path: float = 0.0,
                 res_scale: float = 0.0) -> None:
        super().__init__()
        self.res_scale = make_layer_scale(in_dim, res_scale, channel_dim=1)
        hidden = int(in_dim * mlp_ratio)
        self.norm = get_norm2d(norm, in_dim)
        self.fc1 = nn.Conv2d(in_dim, 2 * hidden if gated else hidden, 1, bias=bias)
        self.act = GatedAct(get_act(act), dim=1) if gated else get_act(act)
        self.fc2 = nn.Conv2d(hidden, in_dim, 1, bias=bias)
        self.ls = make_layer_scale(in_dim, layer_scale, channel_dim=1)
        self.drop_path = make_drop_path(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_scale(x) + self.drop_path(self.ls(self.fc2(self.act(self.fc1(self.norm(x))))))
