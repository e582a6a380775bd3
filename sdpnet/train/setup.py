"""What the epoch loop needs, built from a prepared :class:`~sdpnet.train.prepare.Job`: the run folder opened,
the model on its device (compiled, DDP-wrapped), loaders, optimiser, lr schedule, time budget, batch
transforms, and, when resuming, the optimiser, EMA, counters and RNG states of the checkpoint."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from sdpnet.data.loaders import make_train_loader, make_val_loader
from sdpnet.data.sidecar import dataset_stats
from sdpnet.train.augment import BatchAugment
from sdpnet.train.checkpoint import set_rng_state
from sdpnet.train.cost import model_flops
from sdpnet.train.dist import DistInfo, all_reduce_max, barrier, wrap_ddp
from sdpnet.train.ema import ModelEma
from sdpnet.train.finetune import lr_scales
from sdpnet.train.loss import make_criterion
from sdpnet.train.mixing import MixCut
from sdpnet.train.optim import make_adamw
from sdpnet.train.options import Augment, Lr, Options
from sdpnet.train.prepare import Job
from sdpnet.train.resolution import res_at
from sdpnet.train.run_folder import start_run_folder
from sdpnet.train.schedule import TimeBudget, lr_at, lr_at_progress

__all__ = ["Setup", "setup", "make_loaders", "make_batch_transforms", "make_lr_schedule"]


@dataclass
class Setup:
    """The pieces of a run's training and its running totals (updated by the epoch loop)."""
    model: nn.Module                   # on the device, compiled in place when asked
    ddp_model: nn.Module               # what is trained: the model, DDP-wrapped when distributed
    ema: ModelEma | None
    opt: torch.optim.Optimizer
    train_loader: Any
    val_loader: Any
    aug: BatchAugment
    mix: MixCut
    criterion: Callable
    lr_fn: Callable[[int], float]      # step -> lr
    res_kw: dict                       # res_at's keywords: the progressive-resolution ramp
    budget: TimeBudget | None
    agree: Callable[[float], float] | None   # the ranks' agreement on the budget's time (distributed only)
    steps_per_epoch: int
    n_params: int
    flops: int | None                  # of one validation image (rank 0)
    rows: list[dict]                   # every epoch's metrics
    start_epoch: int = 0
    step: int = 0
    best: float = 0.0                  # best top-1
    train_time: float = 0.0            # seconds


def setup(job: Job) -> Setup:
    """Open the run folder (rank 0), move the model to its device and build what the loop needs; print the run."""
    o, info, run, t = job.opts, job.info, job.run, job.opts.training
    rows = start_run_folder(job) if info.is_main else list(job.resume.rows if job.resume else [])
    barrier()  # the folder exists before any rank reads or writes in it
    torch.manual_seed(t.seed + info.rank)  # per-rank augmentation streams
    flops = model_flops(job.model, o.validation.res) if info.is_main else None   # on the CPU, before it moves
    model = job.model.to(info.device, memory_format=torch.channels_last if t.channels_last else torch.preserve_format)
    ema = ModelEma(model, decay=o.ema.decay, warmup=o.ema.warmup) if o.ema.enabled else None
    res_kw = dict(min_res=o.resolution.min_res, max_res=o.resolution.max_res, start_ramp=o.resolution.start_ramp,
                  end_ramp=o.resolution.end_ramp, stride=model.stride)
    train_loader, val_loader = make_loaders(o, info, res_at(0, **res_kw), engine=job.engine)
    steps_per_epoch = len(train_loader)
    lr_fn = make_lr_schedule(o.lr, job.peak_lr, steps_per_epoch, t.epochs)
    budget = None
    if o.budget.minutes > 0:   # the schedule of t.epochs laid over the time: progress = time spent / budget
        spent = (job.resume.state.get("budget_spent_s") or 0.0) if job.resume else 0.0
        budget = TimeBudget(60 * o.budget.minutes, spent=spent, shared=info.distributed)
        kw = dict(epochs=t.epochs, steps_per_epoch=steps_per_epoch, peak_lr=job.peak_lr,
                  warmup_epochs=o.lr.warmup_epochs, t0_epochs=o.lr.t0_epochs or t.epochs, t_mult=o.lr.t_mult,
                  eta_min=o.lr.eta_min)
        lr_fn = lambda step: lr_at_progress(budget.progress, **kw)  # noqa: E731
    opt = make_adamw(model, lr=job.peak_lr, weight_decay=t.weight_decay,
                     lr_scale=lr_scales(model, o.lr.layer_decay) if o.lr.layer_decay < 1 else None)
    aug, mix = make_batch_transforms(o.augment, job.num_classes, info.device, o.data.train_path)
    criterion = make_criterion(bce=t.loss == "bce")

    start_epoch, step, best, train_time = 0, 0, 0.0, 0.0
    if job.resume is not None:
        ck = job.resume.state
        opt.load_state_dict(ck["optimizer"])
        if ema is not None and ck["ema"] is not None:
            ema.module.load_state_dict(ck["ema"])
        start_epoch, step, best, train_time = ck["epoch"], ck["step"], ck["best_top1"], ck["train_time_s"]
        if len(ck["rng"]) == info.world_size:
            set_rng_state(ck["rng"][info.rank])
    if job.compile:
        model.compile()
        if ema is not None:
            ema.module.compile()
    ddp_model = wrap_ddp(model, info)
    n_params = sum(p.numel() for p in model.parameters())
    if info.is_main:
        print(f"{job.spec_record['canonical']}: {n_params / 1e6:.2f}M params, {info.world_size} x {info.device}, "
              f"{steps_per_epoch} steps/epoch, peak lr {job.peak_lr:.3g}, amp={job.amp}, compile={job.compile}, "
              f"run {run}" + (f", resuming after epoch {start_epoch}" if job.resume else ""))
        for note in job.notes:
            print(f"note: {note}")
    agree = (lambda v: all_reduce_max(v, info.device)) if budget is not None and info.distributed else None
    return Setup(model=model, ddp_model=ddp_model, ema=ema, opt=opt, train_loader=train_loader,
                 val_loader=val_loader, aug=aug, mix=mix, criterion=criterion, lr_fn=lr_fn, res_kw=res_kw,
                 budget=budget, agree=agree, steps_per_epoch=steps_per_epoch, n_params=n_params, flops=flops,
                 rows=rows, start_epoch=start_epoch, step=step, best=best, train_time=train_time)


def make_loaders(o: Options, info: DistInfo, res: int, engine: str = "auto") -> tuple[Any, Any]:
    """The training loader (at ``res`` px, reset each epoch) and the validation loader, of this rank's shard, read
    by ``engine`` (ffcv, torch, or auto: --data.engine as given)."""
    d, a, t = o.data, o.augment, o.training
    train_loader = make_train_loader(d.train_path, batch_size=t.batch_size, res=res,
                                     num_workers=d.num_workers, device=info.device, distributed=info.distributed,
                                     seed=t.seed, subset=d.train_subset or None, scale=(a.scale_min, a.scale_max),
                                     ratio=(a.ratio_min, a.ratio_max), flip=a.flip, translate=a.translate,
                                     channels_last=t.channels_last, os_cache=d.os_cache, engine=engine)
    val_loader = make_val_loader(d.val_path, batch_size=o.validation.batch_size, res=o.validation.res,
                                 num_workers=d.num_workers, device=info.device, distributed=info.distributed,
                                 subset=d.val_subset or None, crop_ratio=o.validation.crop_ratio,
                                 channels_last=t.channels_last, os_cache=d.os_cache, engine=engine)
    return train_loader, val_loader


def make_batch_transforms(a: Augment, num_classes: int, device: torch.device, train_path: str
                          ) -> tuple[BatchAugment, MixCut]:
    """Per-image RandAugment/erasing and per-batch MixUp/CutMix with smoothed soft targets."""
    mean, std = dataset_stats(train_path)  # 0-255, what the loader normalised with
    aug = BatchAugment((mean / 255).tolist(), (std / 255).tolist(), randaug_n=a.randaug_n, randaug_m=a.randaug_m,
                       erase_p=a.erase_p).to(device)
    return aug, MixCut(num_classes, mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, switch_prob=a.switch_prob,
                       smoothing=a.label_smoothing)


def make_lr_schedule(lr: Lr, peak: float, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    """step -> lr: linear warm-up to the cosine (with warm restarts) from ``peak``."""
    kw = dict(peak_lr=peak, steps_per_epoch=steps_per_epoch, warmup_epochs=lr.warmup_epochs,
              t0_epochs=lr.t0_epochs or epochs, t_mult=lr.t_mult, eta_min=lr.eta_min)
    return lambda step: lr_at(step, **kw)
