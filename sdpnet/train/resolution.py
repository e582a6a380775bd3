"""Progressive resolution (FFCV ImageNet recipe): low resolution early, full resolution late."""
from __future__ import annotations

__all__ = ["res_at"]


def res_at(epoch: int, *, min_res: int, max_res: int, start_ramp: int, end_ramp: int,
           stride: int = 1) -> int:
    """Training resolution for ``epoch`` (0-based).

    ``min_res`` up to ``start_ramp``, ``max_res`` from ``end_ramp`` on, linear in between;
    rounded down to a multiple of the model's ``stride`` (never below one stride), so
    every resolution is one the model accepts.
    """
    if min_res > max_res:
        raise ValueError(f"min_res ({min_res}) must be <= max_res ({max_res})")
    if end_ramp < start_ramp:
        raise ValueError(f"end_ramp ({end_ramp}) must be >= start_ramp ({start_ramp})")
    if epoch <= start_ramp or end_ramp == start_ramp:
        res = min_res if epoch <= start_ramp else max_res
    elif epoch >= end_ramp:
        res = max_res
    else:
        res = min_res + (max_res - min_res) * (epoch - start_ramp) / (end_ramp - start_ramp)
    return max(stride, int(res) // stride * stride)
