"""Training: the options (options.py), the checks before a run (prepare.py, resume.py), the loop (setup.py,
loop.py) and its pieces: schedules, EMA, mixing, augmentation, optimiser, metrics, checkpoints, distributed
helpers, plots. ``train_ffcv.py`` parses, prepares and runs.

Names are imported on first use (PEP 562): the sweep checks its options with :mod:`sdpnet.train.options`
and :mod:`sdpnet.train.config`, which need no torch, before it imports torch (about 2 s).
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BatchAugment": "augment",
    "CheckpointError": "checkpoint", "load_checkpoint": "checkpoint", "rng_state": "checkpoint",
    "save_checkpoint": "checkpoint", "set_rng_state": "checkpoint",
    "DistInfo": "dist", "all_reduce_sum": "dist", "barrier": "dist", "cleanup": "dist", "init_distributed": "dist",
    "wrap_ddp": "dist",
    "ModelEma": "ema", "make_criterion": "loss", "soft_cross_entropy": "loss", "Meter": "metrics",
    "topk_correct": "metrics", "MixCut": "mixing", "soft_targets": "mixing", "make_adamw": "optim",
    "param_groups": "optim", "plot_run": "plot", "autocast_on": "precision", "native_bf16": "precision",
    "res_at": "resolution", "cosine_restarts": "schedule", "lr_at": "schedule", "scaled_lr": "schedule",
}
# The run-file helpers, re-exported from where they live (sdpnet/files.py).
_FILES = ("git_revision", "os_error_text", "read_jsonl", "remove_stale_temps", "write_json", "write_jsonl")
__all__ = [*_EXPORTS, *_FILES]


def __getattr__(name: str) -> Any:
    if name in _FILES:
        return getattr(importlib.import_module("sdpnet.files"), name)
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sdpnet.train' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
