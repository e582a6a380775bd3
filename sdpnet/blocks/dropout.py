"""``DROP``: dropout on the image tokens, on its own (the classic CNN's dropout before its dense layers)."""
from __future__ import annotations

import torch
from torch import nn

from sdpnet.registry import register_block


@register_block("DROP")
class DropoutLayer(nn.Module):
    """Element-wise dropout of (B, C, H, W) in training, identity in eval; class and register tokens are not touched.

    Args:
        in_dim: channels (unused: dropout has no weights).
        p: the probability of zeroing an element (survivors are scaled by ``1 / (1 - p)``, as ``nn.Dropout``).
    """

    def __init__(self, in_dim: int, p: float) -> None:
        super().__init__()
        self.drop = nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x)
