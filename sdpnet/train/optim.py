"""AdamW with the usual no-decay exemptions (norms, biases, tokens, position embeddings)."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["param_groups", "make_adamw"]


def param_groups(model: nn.Module, weight_decay: float,
                 skip: set[str] | frozenset[str] = frozenset(),
                 lr_scale: Callable[[str], float] | None = None) -> list[dict]:
    """Split trainable parameters into a decayed group and a no-decay group.

    No decay for parameters with ``ndim <= 1`` (norm weights, biases) and for those
    named in ``skip`` (typically ``model.no_weight_decay()``), matched on the full
    name or on a trailing dotted suffix (``"cls_token"`` matches ``"tokens.cls_token"``).
    ``lr_scale`` (name -> lr multiplier, e.g. layer-wise decay): one such pair of groups per
    multiplier, each with its ``lr_scale`` (the training loop sets ``lr x lr_scale``).
    """
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim <= 1 or name in skip or any(name.endswith("." + s) for s in skip)
        groups.setdefault((lr_scale(name) if lr_scale else 1.0, exempt), []).append(p)
    scales = sorted({scale for scale, _ in groups}) or [1.0]
    out = []
    for scale in scales:
        extra = {"lr_scale": scale} if lr_scale else {}
        out += [{"params": groups.get((scale, False), []), "weight_decay": weight_decay, **extra},
                {"params": groups.get((scale, True), []), "weight_decay": 0.0, **extra}]
    return out


def make_adamw(model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
               lr_scale: Callable[[str], float] | None = None) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; fused kernels when the parameters live on CUDA."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups = param_groups(model, weight_decay, skip, lr_scale)
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=on_cuda or None)
