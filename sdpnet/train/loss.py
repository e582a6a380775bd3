"""Losses on soft targets: cross-entropy, or timm-style binary cross-entropy."""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy", "make_criterion"]


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``-sum_c target_c * log_softmax(logits)_c``."""
    return torch.sum(-target * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), target)


def make_criterion(bce: bool = False):
    """The training loss on (logits, soft targets): BCE per class if ``bce`` else cross-entropy."""
    return _bce if bce else soft_cross_entropy
