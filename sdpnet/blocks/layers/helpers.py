"""Channel rounding shared by the MobileNet/EfficientNet blocks and squeeze-excitation."""
from __future__ import annotations


def make_divisible(v: float, divisor: int = 8, round_limit: float = 0.9) -> int:
    """``v`` rounded to the nearest multiple of ``divisor`` (at least ``divisor``), raised by one ``divisor`` when
    rounding down lost more than ``1 - round_limit`` of it: timm's ``make_divisible``, which sets MobileNet and
    EfficientNet widths (``make_divisible(16 * 4.5) = 72``, ``make_divisible(12) = 16``)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < round_limit * v else new_v
