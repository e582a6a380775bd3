"""Learning-rate schedule: linear warm-up, then cosine annealing with warm restarts.

A pure function of the optimisation step, so the training loop sets the rate every
iteration without a scheduler object and a resumed run needs only the step count.
Epoch arguments may be fractional; they are converted to steps with
``steps_per_epoch``. The cosine runs on the absolute step (as timm's
``CosineLRScheduler`` without ``warmup_prefix``): ``t0_epochs = epochs`` gives one
plain cosine reaching ``eta_min`` at the last step, and the warm-up ramps linearly to
the value the cosine has where the warm-up ends, so the curve is continuous.
"""
from __future__ import annotations

import math

__all__ = ["scaled_lr", "cosine_restarts", "lr_at"]


def scaled_lr(base_lr: float, global_batch: int, reference_batch: int = 512) -> float:
    """The linear scaling rule: ``base_lr * global_batch / reference_batch`` (SdP-Net: 0.001 x B / 512)."""
    return base_lr * global_batch / reference_batch


def cosine_restarts(step: float, *, peak_lr: float, t0_steps: float, t_mult: float = 1.0,
                    eta_min: float = 0.0) -> float:
    """SGDR (Loshchilov & Hutter): cosine from ``peak_lr`` to ``eta_min`` over cycles of
    ``t0_steps``, each cycle ``t_mult`` times longer than the one before."""
    if t0_steps <= 0:
        raise ValueError(f"t0_steps must be > 0, got {t0_steps}")
    if t_mult < 1:
        raise ValueError(f"t_mult must be >= 1, got {t_mult}")
    if t_mult == 1:
        t_cur, t_i = step % t0_steps, t0_steps
    else:
        i = math.floor(math.log(step / t0_steps * (t_mult - 1) + 1, t_mult))
        while t0_steps * (t_mult ** (i + 1) - 1) / (t_mult - 1) <= step:  # log() rounding
            i += 1
        while i > 0 and t0_steps * (t_mult ** i - 1) / (t_mult - 1) > step:
            i -= 1
        t_cur = step - t0_steps * (t_mult ** i - 1) / (t_mult - 1)
        t_i = t0_steps * t_mult ** i
    return eta_min + (peak_lr - eta_min) * 0.5 * (1 + math.cos(math.pi * t_cur / t_i))


def lr_at(step: int, *, peak_lr: float, steps_per_epoch: int, warmup_epochs: float,
          t0_epochs: float, t_mult: float = 1.0, eta_min: float = 0.0) -> float:
    """Learning rate for optimisation ``step`` (0-based).

    Steps ``0 .. W-1`` (``W = warmup_epochs * steps_per_epoch``) ramp linearly from
    ``target / W`` to ``target``, the cosine's value at step ``W``; from step ``W`` on
    the rate is :func:`cosine_restarts` at ``step``.
    """
    t0_steps = t0_epochs * steps_per_epoch
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    if step < warmup_steps:
        target = cosine_restarts(warmup_steps, peak_lr=peak_lr, t0_steps=t0_steps, t_mult=t_mult,
                                 eta_min=eta_min)
        return target * (step + 1) / warmup_steps
    return cosine_restarts(step, peak_lr=peak_lr, t0_steps=t0_steps, t_mult=t_mult, eta_min=eta_min)
