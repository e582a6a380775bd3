"""Exponential moving average of a model's weights (in the spirit of timm's ModelEmaV3)."""
from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma(nn.Module):
    """A frozen copy of ``model`` whose parameters track ``ema = d * ema + (1 - d) * param``.

    Buffers (BatchNorm running statistics) are copied, not averaged. The update is one
    fused ``_foreach_lerp_`` on the device with a Python-float decay: no host sync.

    Args:
        model: the model to track (unwrapped: not DDP; an in-place compiled model is fine).
        decay: the decay ``d`` once warmed up (0.9998 is timm's ImageNet value).
        warmup: if true, ``d = min(decay, (1 + step) / (10 + step))``, so early
            averages are not dominated by the random initialisation.

    The average lives in ``copy.deepcopy(model)``: same device, dtype and memory format.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: bool = False) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay = decay
        self.warmup = warmup

    def decay_at(self, step: int) -> float:
        """The decay used at optimisation ``step`` (0-based)."""
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average one step towards ``model``'s current weights."""
        d = self.decay_at(step)
        ema_p = [p for p in self.module.parameters()]
        cur_p = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_p, cur_p, 1.0 - d)
        for e, b in zip(self.module.buffers(), model.buffers()):
            e.copy_(b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)
