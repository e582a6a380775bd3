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
import time
from typing import Callable

__all__ = ["scaled_lr", "cosine_restarts", "lr_at", "lr_at_progress", "TimeBudget"]


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


def lr_at_progress(progress: float, *, epochs: float, steps_per_epoch: int, **schedule: float) -> float:
    """The lr of the ``epochs``-epoch schedule (:func:`lr_at`) at ``progress`` in [0, 1] of it.

    A time budget lays the schedule over the time available (airbench; Li et al., "Budgeted
    training", 2020): ``progress = training time / budget`` stands for step ``progress x epochs x
    steps_per_epoch``, so warm-up and restarts keep their share of the run and the cosine reaches
    ``eta_min`` when the time is up, however many steps fit.
    """
    total = max(1, round(epochs * steps_per_epoch))
    step = min(total - 1, math.floor(max(progress, 0.0) * total))   # whole steps (no warm-up overshoot), never
    # past the last one (at step ``total`` a cosine cycle would restart)
    return lr_at(step, steps_per_epoch=steps_per_epoch, **schedule)


class TimeBudget:
    """Training time spent against a budget, read at step boundaries: ``progress = spent / seconds``.

    Call :meth:`resume` when training (re)starts (each epoch), :meth:`tick` after every step and
    :meth:`pause` when training stops (evaluation is not counted). The first step of a process is not
    counted either: it pays FFCV's pipeline compilation (and ``torch.compile``'s), the same for every
    design and seconds long, which would otherwise take a share of a short budget. ``excluded`` holds it.

    In a data-parallel run every rank must use the same lr and stop at the same step: with ``shared``,
    :attr:`progress` and :attr:`done` read the time agreed at the last :meth:`agree` (the largest any
    rank has spent), which the loop calls where it synchronises anyway (every ``log_interval`` steps).

    Args:
        seconds: the budget (> 0).
        spent: time already spent (a resumed run's).
        clock: the time source (seconds).
        shared: read the agreed time (data-parallel runs), not this process's own.
    """

    def __init__(self, seconds: float, spent: float = 0.0, clock: Callable[[], float] = time.perf_counter,
                 shared: bool = False) -> None:
        if not seconds > 0:
            raise ValueError(f"a time budget is > 0 seconds, got {seconds}")
        self.seconds, self.spent, self.excluded = float(seconds), float(spent), 0.0
        self._clock, self._ref, self._first = clock, None, True
        self._shared, self._agreed = shared, float(spent)

    def agree(self, reduce_max: Callable[[float], float]) -> None:
        """Take the largest time spent on any rank (``reduce_max``: all-reduce with max) as every rank's."""
        self.spent = self._agreed = reduce_max(self.spent)

    def resume(self) -> None:
        self._ref = self._clock()

    def tick(self) -> None:
        now = self._clock()
        if self._ref is not None:
            if self._first:
                self.excluded += now - self._ref
            else:
                self.spent += now - self._ref
        self._first, self._ref = False, now

    def pause(self) -> None:
        if self._ref is not None and not self._first:
            self.spent += self._clock() - self._ref
        self._ref = None

    @property
    def progress(self) -> float:
        """Fraction of the budget spent, at most 1."""
        return min(1.0, (self._agreed if self._shared else self.spent) / self.seconds)

    @property
    def done(self) -> bool:
        return (self._agreed if self._shared else self.spent) >= self.seconds
