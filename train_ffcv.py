"""Train an sdpnet spec on FFCV data with the SdP-Net recipe, on one CPU, one GPU or many machines.

    python train_ffcv.py --spec specs/xl.json -C configs/imagenet.yaml
    python train_ffcv.py --spec "P4(d=32)-[DWC3+MLP,ENC]x2-MLP" -C configs/fashion_mnist.yaml --training.epochs=2
    torchrun --nproc_per_node=8 train_ffcv.py --spec specs/xl.json -C configs/imagenet.yaml

Recipe (seed 000/001): AdamW, lr = 0.001 x global batch / 512, weight decay 0.05 (none on
norms, biases, tokens, position embeddings), 5 linear warm-up epochs then cosine annealing
with warm restarts stepped per iteration; RandomResizedCrop + flip in FFCV's JIT pipeline;
RandAugment, random erasing, MixUp/CutMix (per batch) and label smoothing on the loaded
batch; EMA of the weights evaluated beside the model; progressive resolution.
Everything a run produces lands in ``--logging.folder``: config.json, spec.json,
metrics.jsonl, checkpoint.pt, results.json and curves.png (docs/training.md).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from fastargs import Param, Section
from fastargs.decorators import param
from fastargs.validation import And, InRange, OneOf
from tqdm import tqdm

import sdpnet
from sdpnet.config import Bool, config_to_dict, parse_config
from sdpnet.data import dataset_stats, make_train_loader, make_val_loader, read_sidecar, set_train_resolution
from sdpnet.train import (BatchAugment, DistInfo, Meter, MixCut, ModelEma, all_reduce_sum, append_jsonl,
                          barrier, cleanup, git_revision, init_distributed, load_checkpoint, lr_at,
                          make_adamw, make_criterion, plot_run, read_jsonl, res_at, rng_state,
                          save_checkpoint, scaled_lr, set_rng_state, topk_correct, wrap_ddp, write_json,
                          write_jsonl)

REPO = Path(__file__).resolve().parent

Section("model", "the network").params(
    spec=Param(str, "spec file (.json) or spec string; also given as --spec", required=True),
    drop_path=Param(And(float, InRange(0, 1)), "stochastic depth rate (default: the spec's)"),
    dropout=Param(And(float, InRange(0, 1)), "dropout rate (default: the spec's)"),
)
Section("data", "FFCV .beton files").params(
    train_path=Param(str, "training .beton", default="data/imagenet/train.beton"),
    val_path=Param(str, "validation .beton", default="data/imagenet/val.beton"),
    num_workers=Param(And(int, InRange(1)), "FFCV decoding threads per process", default=8),
    train_subset=Param(And(int, InRange(0)), "train on a fixed random subset of N samples (0: all)", default=0),
    val_subset=Param(And(int, InRange(0)), "validate on a fixed random subset of N samples (0: all)", default=0),
    os_cache=Param(Bool(), "read through the OS page cache (dataset fits in RAM) instead of FFCV's process cache", default=True),
)
Section("resolution", "progressive resolution: min_res until start_ramp, linear to max_res at end_ramp").params(
    min_res=Param(And(int, InRange(1)), "first training resolution (px)", default=160),
    max_res=Param(And(int, InRange(1)), "final training resolution (px)", default=192),
    start_ramp=Param(And(int, InRange(0)), "epoch (0-based) the ramp starts", default=0),
    end_ramp=Param(And(int, InRange(0)), "epoch the ramp reaches max_res", default=150),
)
Section("augment", "data augmentation; any of them is off at 0").params(
    scale_min=Param(And(float, InRange(0, 1)), "RandomResizedCrop: smallest crop area fraction", default=0.08),
    scale_max=Param(And(float, InRange(0, 1)), "RandomResizedCrop: largest crop area fraction", default=1.0),
    ratio_min=Param(And(float, InRange(0)), "RandomResizedCrop: smallest aspect ratio", default=3 / 4),
    ratio_max=Param(And(float, InRange(0)), "RandomResizedCrop: largest aspect ratio", default=4 / 3),
    flip=Param(Bool(), "random horizontal flip", default=True),
    translate=Param(And(int, InRange(0)), "random translation up to N px, zero-filled (small images)", default=0),
    randaug_n=Param(And(int, InRange(0, 15)), "RandAugment: operations per image (0: off)", default=2),
    randaug_m=Param(And(float, InRange(0, 30)), "RandAugment: magnitude in (0, 30)", default=9.0),
    erase_p=Param(And(float, InRange(0, 1)), "random erasing probability per image", default=0.25),
    mixup=Param(And(float, InRange(0)), "MixUp Beta alpha (0: off)", default=0.8),
    cutmix=Param(And(float, InRange(0)), "CutMix Beta alpha (0: off)", default=1.0),
    switch_prob=Param(And(float, InRange(0, 1)), "probability of MixUp rather than CutMix when both are on", default=0.5),
    label_smoothing=Param(And(float, InRange(0, 1)), "label smoothing of the targets", default=0.1),
)
Section("lr", "AdamW learning rate: linear warm-up, then cosine annealing with warm restarts").params(
    base_lr=Param(And(float, InRange(0)), "lr per 512 images of global batch (linear scaling rule)", default=0.001),
    lr=Param(And(float, InRange(0)), "peak lr; overrides base_lr x global_batch / 512 when given"),
    warmup_epochs=Param(And(float, InRange(0)), "linear warm-up epochs", default=5.0),
    t0_epochs=Param(And(float, InRange(0)), "length of the first cosine cycle in epochs (0: all epochs, plain cosine)", default=0.0),
    t_mult=Param(And(float, InRange(1)), "each cosine cycle is t_mult times longer than the previous", default=1.0),
    eta_min=Param(And(float, InRange(0)), "lr at the bottom of each cycle", default=1e-6),
)
Section("training", "optimisation and speed").params(
    epochs=Param(And(int, InRange(1)), "training epochs", default=200),
    batch_size=Param(And(int, InRange(1)), "batch size per process (global = x world size)", default=128),
    weight_decay=Param(And(float, InRange(0)), "AdamW weight decay (not on norms, biases, tokens, positions)", default=0.05),
    grad_clip=Param(And(float, InRange(0)), "clip the global gradient norm (0: off)", default=1.0),
    loss=Param(OneOf(["ce", "bce"]), "cross-entropy or per-class binary cross-entropy on the soft targets", default="ce"),
    seed=Param(int, "seed of model init, data order and augmentation", default=0),
    device=Param(OneOf(["auto", "cpu", "cuda"]), "auto: CUDA when available", default="auto"),
    amp=Param(OneOf(["auto", "bf16", "off"]), "autocast; auto: bf16 on CUDA, off on CPU", default="auto"),
    compile=Param(OneOf(["auto", "on", "off"]), "torch.compile; auto: on with CUDA", default="auto"),
    channels_last=Param(Bool(), "channels_last memory format for images and model", default=True),
    resume=Param(Bool(), "continue from logging.folder/checkpoint.pt (start fresh when there is none)", default=False),
    stop_after=Param(And(int, InRange(0)), "stop after this many epochs, as if interrupted (0: never)", default=0),
)
Section("ema", "exponential moving average of the weights").params(
    enabled=Param(Bool(), "keep and evaluate an EMA of the weights", default=True),
    decay=Param(And(float, InRange(0, 1)), "EMA decay per step", default=0.9998),
    warmup=Param(Bool(), "decay = min(decay, (1+step)/(10+step))", default=False),
)
Section("validation", "evaluation after every epoch, at one fixed resolution").params(
    res=Param(And(int, InRange(1)), "validation resolution (px); a multiple of the model's stride", default=224),
    batch_size=Param(And(int, InRange(1)), "batch size per process", default=256),
    crop_ratio=Param(And(float, InRange(0, 1)), "centre crop of this fraction of the short side", default=224 / 256),
)
Section("logging", "run folder and progress").params(
    folder=Param(str, "run folder (default: runs/<spec name>)", default=""),
    log_interval=Param(And(int, InRange(1)), "steps between progress-bar updates (one host sync each)", default=50),
    progress=Param(Bool(), "show a progress bar per epoch", default=True),
)
Section("dist", "data-parallel training (launch with torchrun)").params(
    dump_samples=Param(Bool(), "debug: each rank writes the sample indices it read and a parameter checksum", default=False),
)


class UsageError(ValueError):
    """A problem with the command line found before any work: reported in one line, exit 2."""


@param("model.spec")
@param("model.drop_path")
@param("model.dropout")
@param("validation.res")
def make_model(num_classes: int, spec: str, drop_path: float | None = None, dropout: float | None = None,
               res: int = 224) -> tuple[torch.nn.Module, "sdpnet.ModelSpec", dict]:
    """Build the spec (on CPU) with the data's class count; returns the model, its ModelSpec and its record."""
    overrides = {"num_classes": num_classes, "img_size": res}
    overrides |= {k: v for k, v in (("drop_path", drop_path), ("dropout", dropout)) if v is not None}
    try:
        model_spec = sdpnet.load_spec(spec, **overrides)
        model = sdpnet.build(model_spec)
    except sdpnet.SpecError as e:
        raise UsageError(f"bad --model.spec: {e}") from None
    if res % model.stride:
        raise UsageError(f"--validation.res={res} is not a multiple of the model's stride {model.stride}; "
                         f"use {max(model.stride, res // model.stride * model.stride)}")
    return model, model_spec, {**model_spec.to_json(), "canonical": str(model_spec.arch)}


@param("data.train_path")
@param("data.num_workers")
@param("data.train_subset")
@param("data.os_cache")
@param("training.batch_size")
@param("training.seed")
@param("augment.scale_min")
@param("augment.scale_max")
@param("augment.ratio_min")
@param("augment.ratio_max")
@param("augment.flip")
@param("augment.translate")
@param("training.channels_last")
def make_train_data(info: DistInfo, res: int, train_path: str, num_workers: int, train_subset: int,
                    os_cache: bool, batch_size: int, seed: int, scale_min: float, scale_max: float,
                    ratio_min: float, ratio_max: float, flip: bool, translate: int, channels_last: bool):
    return make_train_loader(train_path, batch_size=batch_size, res=res, num_workers=num_workers,
                             device=info.device, distributed=info.distributed, seed=seed,
                             subset=train_subset or None, scale=(scale_min, scale_max),
                             ratio=(ratio_min, ratio_max), flip=flip, translate=translate,
                             channels_last=channels_last, os_cache=os_cache)


@param("data.val_path")
@param("data.num_workers")
@param("data.val_subset")
@param("data.os_cache")
@param("validation.res")
@param("validation.batch_size")
@param("validation.crop_ratio")
@param("training.channels_last")
def make_val_data(info: DistInfo, val_path: str, num_workers: int, val_subset: int, os_cache: bool,
                  res: int, batch_size: int, crop_ratio: float, channels_last: bool):
    return make_val_loader(val_path, batch_size=batch_size, res=res, num_workers=num_workers,
                           device=info.device, distributed=info.distributed, subset=val_subset or None,
                           crop_ratio=crop_ratio, channels_last=channels_last, os_cache=os_cache)


@param("data.train_path")
@param("augment.randaug_n")
@param("augment.randaug_m")
@param("augment.erase_p")
@param("augment.mixup")
@param("augment.cutmix")
@param("augment.switch_prob")
@param("augment.label_smoothing")
def make_batch_transforms(num_classes: int, device: torch.device, train_path: str, randaug_n: int,
                          randaug_m: float, erase_p: float, mixup: float, cutmix: float,
                          switch_prob: float, label_smoothing: float) -> tuple[BatchAugment, MixCut]:
    """Per-image RandAugment/erasing and per-batch MixUp/CutMix with smoothed soft targets."""
    mean, std = dataset_stats(train_path)  # 0-255, what the loader normalised with
    aug = BatchAugment((mean / 255).tolist(), (std / 255).tolist(), randaug_n=randaug_n,
                       randaug_m=randaug_m, erase_p=erase_p).to(device)
    return aug, MixCut(num_classes, mixup_alpha=mixup, cutmix_alpha=cutmix, switch_prob=switch_prob,
                       smoothing=label_smoothing)


@param("lr.base_lr")
@param("lr.lr")
@param("lr.warmup_epochs")
@param("lr.t0_epochs")
@param("lr.t_mult")
@param("lr.eta_min")
@param("training.epochs")
def make_lr_schedule(global_batch: int, steps_per_epoch: int, base_lr: float, warmup_epochs: float,
                     t0_epochs: float, t_mult: float, eta_min: float, epochs: int, lr: float | None = None):
    """step -> lr, and the peak lr (lr.lr, else base_lr x global_batch / 512)."""
    peak = lr if lr is not None else scaled_lr(base_lr, global_batch)
    kw = dict(peak_lr=peak, steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs,
              t0_epochs=t0_epochs or epochs, t_mult=t_mult, eta_min=eta_min)
    return (lambda step: lr_at(step, **kw)), peak


@param("training.device")
@param("training.amp")
@param("training.compile")
def resolve_speed(device: str, amp: str, compile: str) -> tuple[str, bool, bool]:
    """(device request, bf16 autocast on?, torch.compile on?) with 'auto' resolved for this machine."""
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--training.device=cuda but torch sees no CUDA device; use cpu or auto")
    cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    return device, (amp == "bf16" or (amp == "auto" and cuda)), (compile == "on" or (compile == "auto" and cuda))


def train_epoch(model, loader, opt, ema, aug, mix, criterion, lr_fn, step: int, *, amp: bool,
                grad_clip: float, log_interval: int, bar: tqdm, dump: list | None) -> tuple[dict, int]:
    """One pass over ``loader``; returns the epoch's mean train loss (all ranks) and the next step."""
    model.train()
    meter = Meter(("loss",), next(model.parameters()).device)
    params = [p for p in model.parameters() if p.requires_grad]
    t0, seen = time.perf_counter(), 0
    for i, (x, y) in enumerate(loader):
        if dump is not None:
            dump.append(y.tolist())
        lr = lr_fn(step)
        for g in opt.param_groups:
            g["lr"] = lr
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
        if (i + 1) % log_interval == 0 or i + 1 == len(loader):  # the only host syncs
            m = meter.read()
            seen = m["count"]
            bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{lr:.2e}",
                            img_s=f"{seen / (time.perf_counter() - t0):.0f}", refresh=False)
            bar.update((i + 1) - bar.n)
    m = meter.read()
    return {"train_loss": m["loss"], "images": m["count"], "lr": lr_fn(step - 1)}, step


@torch.no_grad()
def evaluate(models: dict[str, torch.nn.Module], loader, *, amp: bool) -> dict[str, float]:
    """Loss, top-1 and top-5 (fractions) of each model on the whole validation set (all ranks)."""
    dev = next(next(iter(models.values())).parameters()).device
    meters = {name: Meter(("loss", "top1", "top5"), dev) for name in models}
    for m in models.values():
        m.eval()
    for x, y in loader:
        for name, m in models.items():
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = m(x).float()
            top1, top5 = topk_correct(logits, y, (1, 5))
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            meters[name].add(x.shape[0], loss=loss, top1=top1, top5=top5)
    out = {}
    for name, meter in meters.items():
        r = meter.read()
        prefix = "" if name == "model" else f"{name}_"
        out |= {f"{prefix}val_loss" if prefix else "val_loss": r["loss"], f"{prefix}top1": r["top1"],
                f"{prefix}top5": r["top5"]}
    return out


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP (in-place compile keeps parameter names unprefixed)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


@param("logging.folder")
@param("model.spec")
@param("training.resume")
def make_run_folder(info: DistInfo, folder: str, spec: str, resume: bool) -> tuple[Path, Path | None]:
    """The run folder and the checkpoint to resume from (None: a fresh run). Refuses to overwrite a run."""
    if not folder:
        name = Path(spec).stem if spec.endswith(".json") else "spec"
        folder = str(Path("runs") / name)
    run = Path(folder)
    ckpt = run / "checkpoint.pt"
    if not resume and (ckpt.exists() or (run / "metrics.jsonl").exists()):
        raise UsageError(f"--logging.folder={run} already holds a run; pass --training.resume=1 to continue "
                         f"it or choose another folder")
    barrier()  # every rank has looked before rank 0 creates anything
    if info.is_main:
        run.mkdir(parents=True, exist_ok=True)
    return run, ckpt if resume and ckpt.exists() else None


def check_files(paths: list[str]) -> None:
    """Fail early, naming the missing .beton and how to write it."""
    for p in paths:
        if not Path(p).is_file():
            raise UsageError(f"data file '{p}' not found; write it with data_prep/write_*.py "
                             f"(e.g. python data_prep/write_fashion_mnist.py --cfg.write_dir=data/fashion_mnist)")


@param("training.epochs")
@param("training.seed")
@param("training.weight_decay")
@param("training.grad_clip")
@param("training.loss")
@param("training.channels_last")
@param("training.stop_after")
@param("ema.enabled")
@param("ema.decay")
@param("ema.warmup")
@param("resolution.min_res")
@param("resolution.max_res")
@param("resolution.start_ramp")
@param("resolution.end_ramp")
@param("data.train_path")
@param("data.val_path")
@param("logging.log_interval")
@param("logging.progress")
@param("dist.dump_samples")
def main(epochs: int, seed: int, weight_decay: float, grad_clip: float, loss: str, channels_last: bool,
         stop_after: int, enabled: bool, decay: float, warmup: bool, min_res: int, max_res: int,
         start_ramp: int, end_ramp: int, train_path: str, val_path: str, log_interval: int,
         progress: bool, dump_samples: bool) -> int:
    # ---- checks and setup: everything that can be wrong with the command line fails here (exit 2)
    check_files([train_path, val_path])
    num_classes = int(read_sidecar(train_path)["num_classes"])
    torch.manual_seed(seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model, _, spec_record = make_model(num_classes)
    device_req, amp, compile_ = resolve_speed()
    info = init_distributed(device_req)
    run, resume_from = make_run_folder(info)
    torch.manual_seed(seed + info.rank)  # per-rank augmentation streams

    model = model.to(info.device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    ema = ModelEma(model, decay=decay, warmup=warmup) if enabled else None
    stride = model.stride
    res_kw = dict(min_res=min_res, max_res=max_res, start_ramp=start_ramp, end_ramp=end_ramp, stride=stride)
    train_loader = make_train_data(info, res_at(0, **res_kw))
    val_loader = make_val_data(info)
    steps_per_epoch = len(train_loader)
    lr_fn, peak_lr = make_lr_schedule(info.world_size * train_loader.batch_size, steps_per_epoch)
    opt = make_adamw(model, lr=peak_lr, weight_decay=weight_decay)
    aug, mix = make_batch_transforms(num_classes, info.device)
    criterion = make_criterion(bce=loss == "bce")

    start_epoch, step, best, train_time = 0, 0, 0.0, 0.0
    if resume_from is not None:
        ck = load_checkpoint(resume_from, map_location=info.device)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ema is not None:
            ema.module.load_state_dict(ck["ema"])
        start_epoch, step, best, train_time = ck["epoch"], ck["step"], ck["best_top1"], ck["train_time_s"]
        if len(ck["rng"]) == info.world_size:
            set_rng_state(ck["rng"][info.rank])
        if info.is_main:  # drop lines of epochs after the checkpoint (a crash between the two writes)
            rows = [r for r in read_jsonl(run / "metrics.jsonl") if r["epoch"] <= start_epoch]
            write_jsonl(run / "metrics.jsonl", rows)
    elif info.is_main:
        write_json(run / "config.json", {**config_to_dict(), "git": git_revision(REPO), "world_size":
                                         info.world_size, "global_batch": info.world_size * train_loader.batch_size,
                                         "peak_lr": peak_lr, "torch": torch.__version__})
        write_json(run / "spec.json", spec_record)
    if compile_:
        model.compile()
        if ema is not None:
            ema.module.compile()
    ddp_model = wrap_ddp(model, info)
    n_params = sum(p.numel() for p in model.parameters())
    if info.is_main:
        print(f"{spec_record['canonical']}: {n_params / 1e6:.2f}M params, {info.world_size} x {info.device}, "
              f"{steps_per_epoch} steps/epoch, peak lr {peak_lr:.3g}, amp={amp}, compile={compile_}, run {run}")

    # ---- the epoch loop
    last_epoch = epochs if not stop_after else min(epochs, stop_after)
    for epoch in range(start_epoch, last_epoch):
        res = res_at(epoch, **res_kw)
        set_train_resolution(train_loader, res)
        train_loader.next_epoch = epoch  # data order is a function of (seed, epoch), also after a resume
        order = train_loader.next_traversal_order() if dump_samples else None
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{epochs} @{res}px",
                   disable=not (progress and info.is_main), dynamic_ncols=True, leave=True)
        dump = [] if dump_samples else None
        t0 = time.perf_counter()
        stats, step = train_epoch(ddp_model, train_loader, opt, ema, aug, mix, criterion, lr_fn, step,
                                  amp=amp, grad_clip=grad_clip, log_interval=log_interval, bar=bar, dump=dump)
        epoch_time = time.perf_counter() - t0
        bar.close()
        train_time += epoch_time
        evals = evaluate({"model": model, **({"ema": ema.module} if ema else {})}, val_loader, amp=amp)
        best = max(best, evals["top1"])
        record = {"epoch": epoch + 1, "train_loss": stats["train_loss"], **evals, "lr": stats["lr"],
                  "res": res, "img_per_s": stats["images"] / epoch_time, "epoch_time": epoch_time}
        if dump is not None:
            dump_rank(run, info, epoch, order, dump, model)
        rngs = gather_rng(info)
        if info.is_main:
            append_jsonl(run / "metrics.jsonl", record)
            save_checkpoint(run / "checkpoint.pt", {
                "model": model.state_dict(), "ema": ema.module.state_dict() if ema else None,
                "optimizer": opt.state_dict(), "epoch": epoch + 1, "step": step, "rng": rngs,
                "best_top1": best, "train_time_s": train_time})
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        barrier()

    if info.is_main and last_epoch == epochs:
        last = read_jsonl(run / "metrics.jsonl")[-1]
        write_json(run / "results.json", {
            "top1": last["top1"], "top5": last["top5"], "ema_top1": last.get("ema_top1"),
            "ema_top5": last.get("ema_top5"), "best_top1": best, "epochs": epochs,
            "train_time_s": train_time, "params": n_params, "spec": spec_record["canonical"]})
        plot_run(run)
    cleanup()
    return 0


def gather_rng(info: DistInfo) -> list:
    """Every rank's RNG states, in rank order (so a resumed DDP run continues each stream)."""
    state = rng_state()
    if not info.distributed:
        return [state]
    out = [None] * info.world_size
    torch.distributed.all_gather_object(out, state)
    return out


def dump_rank(run: Path, info: DistInfo, epoch: int, order, labels: list, model: torch.nn.Module) -> None:
    """Debug (dist.dump_samples): the indices this rank read, the labels it saw, a parameter checksum."""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    n = sum(len(b) for b in labels)
    rec = {"rank": info.rank, "world_size": info.world_size, "epoch": epoch + 1,
           "indices": [int(i) for i in order[:n]], "labels": [v for b in labels for v in b],
           "param_sum": float(flat.sum()), "param_abs_sum": float(flat.abs().sum()),
           "param_weighted": float((flat * torch.arange(flat.numel(), dtype=torch.float64).remainder(7)).sum())}
    write_json(run / f"samples_rank{info.rank}_epoch{epoch + 1}.json", rec)


def cli(argv: list[str]) -> int:
    """Parse the command line (``--spec X`` is short for ``--model.spec=X``) and train; 2 on a usage error."""
    args, i = [], 0
    while i < len(argv):
        if argv[i] == "--spec" and i + 1 < len(argv):
            args.append(f"--model.spec={argv[i + 1]}")
            i += 2
            continue
        args.append("--model.spec=" + argv[i][len("--spec="):] if argv[i].startswith("--spec=") else argv[i])
        i += 1
    parse_config(args, description=__doc__.split("\n")[0], prog="train_ffcv.py")
    try:
        return main()
    except UsageError as e:
        print(f"train_ffcv.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
