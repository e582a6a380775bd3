"""AdamW with the usual no-decay exemptions (norms, biases, tokens, position embeddings)."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["param_groups", "make_adamw"]


def param_groups(model: nn.Module, weight_decay: float,
                 skip: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Split trainable parameters into a decayed group and a no-decay group.

    No decay for parameters with ``ndim <= 1`` (norm weights, biases) and for those
    named in ``skip`` (typically ``model.no_weight_decay()``), matched on the full
    name or on a trailing dotted suffix (``"cls_token"`` matches ``"tokens.cls_token"``).
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exempt = p.ndim <= 1 or name in skip or any(name.endswith("." + s) for s in skip)
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def make_adamw(model: nn.Module, *, lr: float, weight_decay: float,
               betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; fused kernels when the parameters live on CUDA."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups = param_groups(model, weight_decay, skip)
    on_cuda = next(model.parameters()).is_cuda
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=on_cuda or None)
