"""On-device metric accumulation: no host sync per step, one read per log interval."""
from __future__ import annotations

import torch

from sdpnet.train.dist import all_reduce_sum

__all__ = ["topk_correct", "Meter"]


def topk_correct(logits: torch.Tensor, y: torch.Tensor, ks: tuple[int, ...] = (1, 5)) -> torch.Tensor:
    """Number of samples whose label is among the top-k logits, for each k (a device tensor)."""
    k_max = min(max(ks), logits.shape[-1])
    top = logits.topk(k_max, dim=-1).indices  # (B, k_max)
    hit = (top == y[:, None]).cumsum(-1)  # (B, k_max): 1 from the label's rank on
    return torch.stack([hit[:, min(k, k_max) - 1].sum() for k in ks]).float()


class Meter:
    """Sums of named quantities kept on ``device``; :meth:`read` all-reduces and syncs once.

    ``add(count=B, loss=loss * B, top1=...)`` takes tensors or numbers; values are
    summed, and :meth:`read` returns sums divided by ``count`` (and the raw count).
    """

    def __init__(self, names: tuple[str, ...], device: torch.device) -> None:
        self.names = names
        self.sums = torch.zeros(len(names) + 1, dtype=torch.float64, device=device)

    def add(self, count: int, **values: torch.Tensor | float) -> None:
        self.sums[-1] += count
        for i, name in enumerate(self.names):
            if name in values:
                self.sums[i] += values[name]

    def read(self, reduce: bool = True) -> dict[str, float]:
        """Means over everything added (over all processes if ``reduce``), plus ``count``."""
        s = self.sums.clone()
        if reduce:
            all_reduce_sum(s)
        s = s.tolist()
        n = max(s[-1], 1.0)
        return {**{k: v / n for k, v in zip(self.names, s)}, "count": s[-1]}

    def reset(self) -> None:
        self.sums.zero_()
