"""Small pieces of the training loop (train_ffcv.py): schedules, EMA, mixing, augmentation,
optimiser, metrics, checkpoints, distributed helpers, run files and plots."""
from sdpnet.train.augment import BatchAugment
from sdpnet.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from sdpnet.train.dist import DistInfo, all_reduce_sum, barrier, cleanup, init_distributed, wrap_ddp
from sdpnet.train.ema import ModelEma
from sdpnet.train.loss import make_criterion, soft_cross_entropy
from sdpnet.train.metrics import Meter, topk_correct
from sdpnet.train.mixing import MixCut, soft_targets
from sdpnet.train.optim import make_adamw, param_groups
from sdpnet.train.plot import plot_run
from sdpnet.train.precision import autocast_on, native_bf16
from sdpnet.train.resolution import res_at
from sdpnet.files import (git_revision, os_error_text, read_jsonl, remove_stale_temps, write_json,
                                  write_jsonl)
from sdpnet.train.schedule import cosine_restarts, lr_at, scaled_lr

__all__ = [
    "BatchAugment", "CheckpointError", "load_checkpoint", "rng_state", "save_checkpoint", "set_rng_state",
    "DistInfo", "all_reduce_sum", "barrier", "cleanup", "init_distributed", "wrap_ddp", "ModelEma",
    "make_criterion", "soft_cross_entropy", "Meter", "topk_correct", "MixCut", "soft_targets",
    "make_adamw", "param_groups", "plot_run", "autocast_on", "native_bf16", "res_at", "git_revision",
    "os_error_text", "read_jsonl", "remove_stale_temps", "write_json", "write_jsonl", "cosine_restarts", "lr_at",
    "scaled_lr",
]
