"""``NORM``: a norm over the channels of the image tokens, on its own (MLP-Mixer's final norm before pooling)."""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.blocks.layers.norm import get_norm2d
from sdpnet.registry import register_block


@register_block("NORM")
class NormLayer(nn.Module):
    """``norm(x)`` on (B, C, H, W); class and register tokens are not touched.

    Args:
        in_dim: channels.
        norm: a registered norm (``ln``: LayerNorm over the channels).
        eps: its eps (None: the norm's own: LayerNorm 1e-6, BatchNorm 1e-5).
    """

    def __init__(self, in_dim: int, norm: str = "ln", eps: float | None = None) -> None:
        super().__init__()
        self.norm = get_norm2d(norm, in_dim, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)
