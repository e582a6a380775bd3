"""TensorBoard event files beside metrics.jsonl (``--logging.tensorboard=1``), written by rank 0.

Per epoch (the step is the epoch): ``train/loss``, ``val/loss``, ``val/top1``, ``val/top5``, the EMA's
``ema/loss``, ``ema/top1``, ``ema/top5``, ``lr``, ``img_per_s``, ``res``, ``epoch_time`` and, on a time budget,
``progress``. At the start of a fresh run: the hyperparameters (every option as ``section.key``, and the
canonical ``spec``) in TensorBoard's HParams tab against ``val/top1`` and ``ema/top1``, and the spec and
config.json as text. A resumed run appends a new event file for its new epochs.

TensorBoard is optional: :func:`open_tracker` imports ``torch.utils.tensorboard`` (which imports tensorboard,
1.5 s) only when the option is on; :func:`tensorboard_missing` lets the checks before a run refuse the option
when tensorboard is not installed.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

__all__ = ["SCALARS", "Tracker", "open_tracker", "tensorboard_missing"]

# metrics.jsonl key -> TensorBoard tag
SCALARS = {"train_loss": "train/loss", "val_loss": "val/loss", "top1": "val/top1", "top5": "val/top5",
           "ema_val_loss": "ema/loss", "ema_top1": "ema/top1", "ema_top5": "ema/top5", "lr": "lr",
           "img_per_s": "img_per_s", "res": "res", "epoch_time": "epoch_time", "progress": "progress"}
METRICS = ("val/top1", "ema/top1")


def tensorboard_missing() -> str | None:
    """Why ``--logging.tensorboard=1`` cannot work here (tensorboard not installed), or None."""
    if importlib.util.find_spec("tensorboard") is None:
        return "--logging.tensorboard=1 needs the tensorboard package: pip install tensorboard"
    return None


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{section: {key: value}}`` as ``{"section.key": value}``: numbers, booleans and strings only (HParams)."""
    out: dict[str, Any] = {}
    for k, v in record.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        elif isinstance(v, (bool, int, float, str)):
            out[f"{prefix}{k}"] = v
    return out


class Tracker:
    """A SummaryWriter on the run folder: :meth:`epoch` logs one metrics row, :meth:`close` flushes."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def start(self, record: dict[str, Any], spec: str) -> None:
        """The run's hyperparameters (options and spec) and its spec and config as text."""
        from torch.utils.tensorboard.summary import hparams   # tensorboard: optional (see the module docstring)

        hp = _flat({k: v for k, v in record.items() if k not in ("data_files", "changes")}) | {"spec": spec}
        for summary in hparams(hp, {m: 0.0 for m in METRICS}):   # experiment, session start and end
            self.writer.file_writer.add_summary(summary)
        self.writer.add_text("spec", f"`{spec}`")
        self.writer.add_text("config", "    " + json.dumps(record, indent=1, default=str).replace("\n", "\n    "))
        self.writer.flush()

    def epoch(self, row: dict[str, Any]) -> None:
        """One epoch's metrics row (metrics.jsonl) as scalars at step ``row["epoch"]``."""
        for key, tag in SCALARS.items():
            if row.get(key) is not None:
                self.writer.add_scalar(tag, row[key], global_step=row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def open_tracker(run: Path, record: dict[str, Any], spec: str, fresh: bool) -> Tracker:
    """A tracker writing into ``run``; a ``fresh`` run (not resumed) also logs its hyperparameters."""
    from torch.utils.tensorboard import SummaryWriter   # tensorboard: optional, 1.5 s to import

    tracker = Tracker(SummaryWriter(log_dir=str(run)))
    if fresh:
        tracker.start(record, spec)
    return tracker
