"""Per-image batch augmentation after loading: RandAugment and random erasing (kornia).

The loader hands over normalised images; RandAugment's colour operations
(solarize, posterize, equalize, ...) assume pixels in [0, 1], so the batch is
de-normalised, augmented, clamped and re-normalised. Random erasing then runs on
the normalised batch and fills with 0, i.e. the dataset mean colour (as timm's
``RandomErasing`` with ``mode='const'``).

kornia's own ``RandAugment`` picks one sequence of operations for the whole batch;
here each image draws its own ``n`` operations: for each of the ``n`` rounds the
images are sorted by the operation they drew and each group goes through a
one-operation kornia RandAugment (so magnitudes follow kornia's ``m`` convention,
``m`` in (0, 30), timm/torchvision use the same scale). The draws come from torch's
CPU generator (checkpointed); one pinned index tensor per round goes to the device
with ``non_blocking``: no host sync on the device.
"""
from __future__ import annotations

from typing import Sequence

import torch
from kornia.augmentation import RandomErasing
from kornia.augmentation.auto import RandAugment
from kornia.augmentation.auto.rand_augment.rand_augment import default_policy
from torch import nn

__all__ = ["BatchAugment"]


class BatchAugment(nn.Module):
    """RandAugment(n, m) then random erasing with probability ``erase_p``, per image.

    Args:
        mean: per-channel mean the batch was normalised with, in [0, 1] pixel units.
        std: per-channel std the batch was normalised with, in [0, 1] pixel units.
        randaug_n: operations per image; 0 turns RandAugment off.
        randaug_m: magnitude in (0, 30) (SdP-Net/timm recipe: 9).
        erase_p: probability of erasing one random box per image; 0 turns it off.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], randaug_n: int = 2,
                 randaug_m: float = 9, erase_p: float = 0.25) -> None:
        super().__init__()
        if randaug_n < 0 or randaug_n > len(default_policy):
            raise ValueError(f"randaug_n must be in [0, {len(default_policy)}], got {randaug_n}")
        if randaug_n and not 0 < randaug_m < 30:
            raise ValueError(f"randaug_m must be in (0, 30), got {randaug_m}")
        if not 0 <= erase_p <= 1:
            raise ValueError(f"erase_p must be in [0, 1], got {erase_p}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), False)
        self.n = randaug_n
        self.ops = nn.ModuleList(RandAugment(n=1, m=randaug_m, policy=[p]) for p in default_policy) \
            if randaug_n else nn.ModuleList()
        self.erase = RandomErasing(p=erase_p, value=0.0) if erase_p > 0 else nn.Identity()

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.n:
            x = self._randaugment(x)
        return self.erase(x).contiguous(memory_format=torch.channels_last)

    def _randaugment(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.std + self.mean).clamp_(0, 1)  # (B, C, H, W) in [0, 1]
        for _ in range(self.n):
            choice = torch.randint(len(self.ops), (x.shape[0],))  # CPU: one op per image
            order = torch.argsort(choice)  # images grouped by op
            counts = torch.bincount(choice, minlength=len(self.ops)).tolist()
            if x.is_cuda:
                order = order.pin_memory()
            order = order.to(x.device, non_blocking=True)
            groups = x.index_select(0, order).split(counts)
            done = torch.cat([op(g) if len(g) else g for op, g in zip(self.ops, groups)])
            x = torch.empty_like(x).index_copy_(0, order, done).clamp_(0, 1)
        return (x - self.mean) / self.std
