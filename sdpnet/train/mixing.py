"""MixUp / CutMix, switching per batch, producing label-smoothed soft targets.

One mixing coefficient per batch, drawn on the host from torch's CPU generator (so
checkpointed RNG state reproduces it) and applied with device ops only: no host
sync. Each image is mixed with its mirror in the batch (``x.flip(0)``), as timm does.
"""
from __future__ import annotations

import math

import torch

__all__ = ["soft_targets", "MixCut"]


def soft_targets(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets with label smoothing: ``1 - s + s/C`` on the class, ``s/C`` elsewhere."""
    off = smoothing / num_classes
    return torch.full((y.shape[0], num_classes), off, device=y.device).scatter_(
        1, y[:, None], 1.0 - smoothing + off)


class MixCut:
    """Per batch: MixUp with probability ``switch_prob`` else CutMix (when both are on).

    Args:
        num_classes: number of classes of the targets.
        mixup_alpha: Beta(alpha, alpha) for the MixUp weight; 0 turns MixUp off.
        cutmix_alpha: Beta(alpha, alpha) for the CutMix area; 0 turns CutMix off.
        switch_prob: probability of MixUp when both are on.
        smoothing: label smoothing applied to the targets before mixing.

    Call with a batch ``(x, y)`` of images (B, C, H, W) and int labels (B,); returns
    the mixed images and soft targets (B, num_classes) whose rows sum to 1.
    """

    def __init__(self, num_classes: int, mixup_alpha: float = 0.8, cutmix_alpha: float = 1.0,
                 switch_prob: float = 0.5, smoothing: float = 0.1) -> None:
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup/cutmix alphas must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        self.num_classes = num_classes
        self.mixup_alpha = mixup_alpha
        self.cutmix_alpha = cutmix_alpha
        self.switch_prob = switch_prob
        self.smoothing = smoothing

    def _beta(self, alpha: float) -> float:
        a = torch.tensor([alpha])
        return float(torch.distributions.Beta(a, a).sample())

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = soft_targets(y, self.num_classes, self.smoothing)
        use_mix, use_cut = self.mixup_alpha > 0, self.cutmix_alpha > 0
        if not (use_mix or use_cut):
            return x, t
        if use_mix and use_cut:
            use_mix = float(torch.rand(())) < self.switch_prob
        if use_mix:
            lam = self._beta(self.mixup_alpha)
            x = x.mul(lam).add_(x.flip(0), alpha=1.0 - lam)
        else:
            lam = self._beta(self.cutmix_alpha)
            x, lam = self._cutmix(x, lam)
        return x, t.mul(lam).add_(t.flip(0), alpha=1.0 - lam)

    def _cutmix(self, x: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
        """Paste a box of area ``(1 - lam) * H * W`` from the mirrored batch; returns the exact area kept."""
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        return x, 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
