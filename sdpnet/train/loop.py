"""Phase three of a run: the training step (:func:`train_epoch`) and the epoch loop (:func:`train`).

From here on the run folder is written. Each epoch trains, validates (model and EMA), checks that every
number is finite and commits a checkpoint; a finished run writes results.json and curves.png.
"""
from __future__ import annotations

import math
import time

import torch
from tqdm import tqdm

from sdpnet.data.loaders import set_train_resolution
from sdpnet.train.dist import barrier, dump_rank, gather_rng, unwrap
from sdpnet.train.errors import RunError
from sdpnet.train.metrics import Meter
from sdpnet.train.prepare import Job
from sdpnet.train.resolution import res_at
from sdpnet.train.results import write_results
from sdpnet.train.run_folder import commit, saved
from sdpnet.train.schedule import TimeBudget
from sdpnet.train.setup import Setup, setup
from sdpnet.train.tracking import Tracker, open_tracker
from sdpnet.train.validate import evaluate

__all__ = ["train", "train_epoch"]


def train(job: Job) -> int:
    """Load the data, train epoch by epoch (checkpointing each), and write results.json and curves.png."""
    o, info, t = job.opts, job.info, job.opts.training
    s = setup(job)
    budget = s.budget
    last_epoch = t.epochs if budget is None else 10 ** 9   # with a time budget: until the time is spent
    last_epoch = min(last_epoch, t.stop_after) if t.stop_after else last_epoch
    tracker = (open_tracker(job.run, job.record, job.spec_record["canonical"], fresh=s.start_epoch == 0)
               if o.logging.tensorboard and info.is_main else None)
    try:
        _epochs(job, s, last_epoch, tracker)
    finally:
        if tracker is not None:
            tracker.close()
    finished = budget.done if budget is not None else last_epoch == t.epochs
    if info.is_main and finished:
        write_results(job, s)
    return 0


def _epochs(job: Job, s: Setup, last_epoch: int, tracker: Tracker | None) -> None:
    """Train, validate and save every epoch from ``s.start_epoch`` until ``last_epoch`` or the time budget."""
    o, info, t, budget = job.opts, job.info, job.opts.training, s.budget
    for epoch in range(s.start_epoch, last_epoch):
        if budget is not None and budget.done:
            break
        res = res_at(epoch if budget is None else int(budget.progress * t.epochs), **s.res_kw)
        set_train_resolution(s.train_loader, res)
        s.train_loader.next_epoch = epoch  # data order is a function of (seed, epoch), also after a resume
        order = s.train_loader.next_traversal_order() if o.dist.dump_samples else None
        bar = tqdm(total=s.steps_per_epoch, desc=f"epoch {epoch + 1}/{t.epochs} @{res}px",
                   disable=not (o.logging.progress and info.is_main), dynamic_ncols=True, leave=True)
        dump = [] if o.dist.dump_samples else None
        t0 = time.perf_counter()
        if budget is not None:
            budget.resume()
        stats, s.step = train_epoch(s.ddp_model, s.train_loader, s.opt, s.ema, s.aug, s.mix, s.criterion, s.lr_fn,
                                    s.step, epoch=epoch, amp=job.amp, grad_clip=t.grad_clip,
                                    log_interval=o.logging.log_interval, bar=bar, dump=dump, budget=budget,
                                    agree=s.agree)
        if budget is not None:
            budget.pause()
        epoch_time = time.perf_counter() - t0
        bar.close()
        s.train_time += epoch_time
        s.rows.append(validate_epoch(job, s, epoch, stats, res, epoch_time))
        if dump is not None:
            dump_rank(job.run, info, epoch, order, dump, s.model)
        save_epoch(job, s, epoch)
        if tracker is not None:
            tracker.epoch(s.rows[-1])
        barrier()


def train_epoch(model, loader, opt, ema, aug, mix, criterion, lr_fn, step: int, *, epoch: int, amp: bool,
                grad_clip: float, log_interval: int, bar: tqdm, dump: list | None,
                budget: TimeBudget | None = None, agree=None) -> tuple[dict, int]:
    """One pass over ``loader``; returns the epoch's mean train loss (all ranks) and the next step.

    The loss is read (one host sync) every ``log_interval`` steps; a NaN or infinite loss stops the run.
    With a time ``budget`` the epoch ends early when the budget is spent (ranks agree on the time spent
    through ``agree`` at the log-interval syncs).
    """
    model.train()
    meter = Meter(("loss",), next(model.parameters()).device)
    params = [p for p in model.parameters() if p.requires_grad]
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if dump is not None:
            dump.append(y.tolist())
        lr = lr_fn(step)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)   # layer-wise lr decay (--lr.layer_decay)
        x, t = mix(aug(x), y)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = criterion(model(x), t)
        loss.backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.update(unwrap(model), step)
        meter.add(x.shape[0], loss=loss.detach() * x.shape[0])
        step += 1
        if budget is not None:
            budget.tick()
        sync = (i + 1) % log_interval == 0 or i + 1 == len(loader)
        if budget is not None and agree is not None and sync:
            budget.agree(agree)
        if budget is not None and budget.done:
            break
        if sync:  # the only host syncs
            m = meter.read()
            if not math.isfinite(m["loss"]):
                raise RunError(f"the training loss became {m['loss']} by step {step} (epoch {epoch + 1}, lr "
                               f"{lr:.3g}): the run diverged and {saved(epoch)}; lower --lr.lr or --lr.base_lr "
                               f"(or clip with --training.grad_clip)")
            bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{lr:.2e}",
                            img_s=f"{m['count'] / (time.perf_counter() - t0):.0f}", refresh=False)
            bar.update((i + 1) - bar.n)
    m = meter.read()
    return {"train_loss": m["loss"], "images": m["count"], "lr": lr_fn(step - 1)}, step


def validate_epoch(job: Job, s: Setup, epoch: int, stats: dict, res: int, epoch_time: float) -> dict:
    """Evaluate the model (and EMA) and return the epoch's metrics row; RunError if any number is not finite."""
    evals = evaluate({"model": s.model, **({"ema": s.ema.module} if s.ema else {})}, s.val_loader, amp=job.amp,
                     flip=job.opts.validation.flip)
    s.best = max(s.best, evals["top1"])
    record = {"epoch": epoch + 1, "train_loss": stats["train_loss"], **evals, "lr": stats["lr"],
              "res": res, "img_per_s": stats["images"] / epoch_time, "epoch_time": epoch_time}
    if s.budget is not None:
        record["progress"] = s.budget.progress
    bad = [k for k, v in record.items() if not math.isfinite(v)]
    if bad:
        raise RunError(f"{bad[0]} is {record[bad[0]]} after epoch {epoch + 1}: the model diverged and "
                       f"{saved(epoch)}; lower --lr.lr or --lr.base_lr")
    return record


def save_epoch(job: Job, s: Setup, epoch: int) -> None:
    """Commit the epoch (rank 0: checkpoint with every rank's RNG states, then metrics.jsonl) and print its row."""
    rngs = gather_rng(job.info)
    if job.info.is_main:
        ema, budget = s.ema, s.budget
        commit(job.run, {"model": s.model.state_dict(), "ema": ema.module.state_dict() if ema else None,
                         "optimizer": s.opt.state_dict(), "epoch": epoch + 1, "step": s.step, "rng": rngs,
                         "best_top1": s.best, "train_time_s": s.train_time, "metrics": s.rows,
                         "budget_spent_s": budget.spent if budget is not None else None})
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s.rows[-1].items()))
