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

Three phases: the options are parsed and checked (each option is spelt once, in the
dataclasses below); :func:`prepare` checks everything that needs the data files, the model
or the run folder; only then :func:`train` loads, writes and trains. Any refusal before
:func:`train` is one line naming the key, exit status 2, and nothing written.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

import sdpnet
from sdpnet.train.config import (ConfigError, altering_keys, load_options, option, option_defaults, options_dict,
                           parse_options)
from sdpnet.data import (BetonInfo, DataFileError, LoaderError, check_beton, check_same_classes, dataset_stats,
                         make_train_loader, make_val_loader, set_train_resolution)
from sdpnet.train.schedule import TimeBudget, lr_at_progress
from sdpnet.tools.evaluate import evaluate
from sdpnet.train.finetune import freeze_stem, init_from, lr_scales
from sdpnet.data.record import DATA_FILE, data_record
from sdpnet.models.weights import WeightsError
from sdpnet.train import (BatchAugment, CheckpointError, DistInfo, Meter, MixCut, ModelEma, autocast_on, barrier,
                          cleanup, git_revision, init_distributed, load_checkpoint, lr_at, make_adamw, make_criterion,
                          os_error_text, plot_run, remove_stale_temps, res_at, rng_state, save_checkpoint,
                          scaled_lr, set_rng_state, wrap_ddp, write_json, write_jsonl)

REPO = Path(__file__).resolve().parent
PROG = "train_ffcv.py"


class UsageError(ValueError):
    """A problem with the command line, the data files or the run folder: one line, exit 2, nothing written."""


class RunError(RuntimeError):
    """The run cannot go on (diverged, disk full, loader failed); the message says what is saved."""


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


# ---- options: one dataclass per section; the checks of each run right after parsing ------------

@dataclass(frozen=True)
class Model:
    """the network"""
    spec: str = option(help="spec file (.json) or spec string; also given as --spec")
    drop_path: float | None = option(None, "stochastic depth rate (default: the spec's)", ge=0, lt=1)
    dropout: float | None = option(None, "dropout rate (default: the spec's)", ge=0, lt=1)
    init_from: str = option("", "start from trained weights: a run folder, checkpoint.pt or .safetensors (another "
                                "class count: new classifier; another resolution: position tables resampled)")
    freeze_stem: bool = option(False, "do not train the stem's parameters (fine-tuning)")


@dataclass(frozen=True)
class Data:
    """FFCV .beton files"""
    train_path: str = option("data/imagenet/train.beton", "training .beton", alters=False)
    val_path: str = option("data/imagenet/val.beton", "validation .beton", alters=False)
    num_workers: int = option(8, "FFCV decoding threads per process", ge=1, alters=False)
    train_subset: int = option(0, "train on a fixed random subset of N samples (0: all)", ge=0)
    val_subset: int = option(0, "validate on a fixed random subset of N samples (0: all)", ge=0)
    os_cache: bool = option(True, "read through the OS page cache (dataset fits in RAM) instead of FFCV's "
                                  "process cache", alters=False)


@dataclass(frozen=True)
class Resolution:
    """progressive resolution: min_res until start_ramp, linear to max_res at end_ramp"""
    min_res: int = option(160, "first training resolution (px)", ge=1)
    max_res: int = option(192, "final training resolution (px)", ge=1)
    start_ramp: int = option(0, "epoch (0-based) the ramp starts", ge=0)
    end_ramp: int = option(150, "epoch the ramp reaches max_res", ge=0)

    def __post_init__(self) -> None:
        _need(self.min_res <= self.max_res, f"--resolution.min_res={self.min_res} is above --resolution.max_res="
                                            f"{self.max_res}: make min_res <= max_res")
        _need(self.start_ramp <= self.end_ramp, f"--resolution.start_ramp={self.start_ramp} is after "
                                                f"--resolution.end_ramp={self.end_ramp}: make start_ramp <= end_ramp")


@dataclass(frozen=True)
class Augment:
    """data augmentation; any of them is off at 0"""
    scale_min: float = option(0.08, "RandomResizedCrop: smallest crop area fraction", gt=0, le=1)
    scale_max: float = option(1.0, "RandomResizedCrop: largest crop area fraction", gt=0, le=1)
    ratio_min: float = option(3 / 4, "RandomResizedCrop: smallest aspect ratio", gt=0)
    ratio_max: float = option(4 / 3, "RandomResizedCrop: largest aspect ratio", gt=0)
    flip: bool = option(True, "random horizontal flip")
    translate: int = option(0, "random translation up to N px, zero-filled (small images)", ge=0)
    randaug_n: int = option(2, "RandAugment: operations per image (0: off)", ge=0, le=15)  # kornia's 15 ops
    randaug_m: float = option(9.0, "RandAugment: magnitude", gt=0, lt=30)
    erase_p: float = option(0.25, "random erasing probability per image", ge=0, le=1)
    mixup: float = option(0.8, "MixUp Beta alpha (0: off)", ge=0)
    cutmix: float = option(1.0, "CutMix Beta alpha (0: off)", ge=0)
    switch_prob: float = option(0.5, "probability of MixUp rather than CutMix when both are on", ge=0, le=1)
    label_smoothing: float = option(0.1, "label smoothing of the targets", ge=0, lt=1)

    def __post_init__(self) -> None:
        _need(self.scale_min <= self.scale_max, f"--augment.scale_min={self.scale_min:g} is above "
                                                f"--augment.scale_max={self.scale_max:g}: make scale_min <= scale_max")
        _need(self.ratio_min <= self.ratio_max, f"--augment.ratio_min={self.ratio_min:g} is above "
                                                f"--augment.ratio_max={self.ratio_max:g}: make ratio_min <= ratio_max")


@dataclass(frozen=True)
class Lr:
    """AdamW learning rate: linear warm-up, then cosine annealing with warm restarts"""
    base_lr: float = option(0.001, "lr per 512 images of global batch (linear scaling rule)", gt=0)
    lr: float | None = option(None, "peak lr; overrides base_lr x global_batch / 512 when given", gt=0)
    warmup_epochs: float = option(5.0, "linear warm-up epochs", ge=0)
    t0_epochs: float = option(0.0, "length of the first cosine cycle in epochs (0: all epochs, plain cosine)", ge=0)
    t_mult: float = option(1.0, "each cosine cycle is t_mult times longer than the previous", ge=1)
    eta_min: float = option(1e-6, "lr at the bottom of each cycle (at most the peak lr)", ge=0)
    layer_decay: float = option(1.0, "layer-wise lr decay: layer n of L+1 (stem 0, body blocks, head) learns at "
                                     "lr x layer_decay^(L+1-n) (1: off)", gt=0, le=1)


@dataclass(frozen=True)
class Training:
    """optimisation and speed"""
    epochs: int = option(200, "training epochs", ge=1)
    batch_size: int = option(128, "batch size per process (global = x world size)", ge=1)
    weight_decay: float = option(0.05, "AdamW weight decay (not on norms, biases, tokens, positions)", ge=0)
    grad_clip: float = option(1.0, "clip the global gradient norm (0: off)", ge=0)
    loss: str = option("ce", "cross-entropy or per-class binary cross-entropy on the soft targets",
                       choices=("ce", "bce"))
    seed: int = option(0, "seed of model init, data order and augmentation", ge=0, lt=2 ** 32)
    device: str = option("auto", "auto: CUDA when available", choices=("auto", "cpu", "cuda"), alters=False)
    amp: str = option("auto", "bf16 autocast; auto: on CUDA and on CPUs with AMX (native bf16), else off",
                      choices=("auto", "bf16", "off"))
    compile: str = option("auto", "torch.compile; auto: on with CUDA", choices=("auto", "on", "off"), alters=False)
    channels_last: bool = option(True, "channels_last memory format for images and model", alters=False)
    resume: bool = option(False, "continue from logging.folder/checkpoint.pt (start fresh when there is none)",
                          alters=False)
    resume_changed: bool = option(False, "let a resumed run change options that alter it (recorded in "
                                         "config.json)", alters=False)
    stop_after: int = option(0, "stop after this many epochs, as if interrupted (0: never)", ge=0, alters=False)


@dataclass(frozen=True)
class Ema:
    """exponential moving average of the weights"""
    enabled: bool = option(True, "keep and evaluate an EMA of the weights")
    decay: float = option(0.9998, "EMA decay per step", ge=0, lt=1)
    warmup: bool = option(False, "decay = min(decay, (1+step)/(10+step))")


@dataclass(frozen=True)
class Validation:
    """evaluation after every epoch, at one fixed resolution"""
    res: int = option(224, "validation resolution (px); a multiple of the model's stride", ge=1)
    batch_size: int = option(256, "batch size per process", ge=1)
    crop_ratio: float = option(224 / 256, "centre crop of this fraction of the short side", gt=0, le=1)
    flip: bool = option(False, "test-time augmentation: average the logits of each image and its mirror image")


@dataclass(frozen=True)
class Logging:
    """run folder and progress"""
    folder: str = option("", "run folder (default: runs/<spec name>)", alters=False)
    log_interval: int = option(50, "steps between progress-bar updates and loss checks (one host sync each)",
                               ge=1, alters=False)
    progress: bool = option(True, "show a progress bar per epoch", alters=False)


@dataclass(frozen=True)
class Dist:
    """data-parallel training (launch with torchrun)"""
    dump_samples: bool = option(False, "debug: each rank writes the sample indices it read and a parameter "
                                       "checksum", alters=False)


@dataclass(frozen=True)
class Budget:
    """a fixed cost per run: training time instead of epochs (python -m sdpnet sweep --budget.minutes)"""
    minutes: float = option(0.0, "train this many minutes of training time (evaluation and the first step, which "
                                 "compiles, not counted), the lr schedule and resolution ramp of training.epochs laid "
                                 "over them; 0: train training.epochs epochs", ge=0)


@dataclass(frozen=True)
class Options:
    """Every option of a run, checked; the sections' fields are plain values."""
    model: Model
    data: Data
    resolution: Resolution
    augment: Augment
    lr: Lr
    training: Training
    ema: Ema
    validation: Validation
    logging: Logging
    dist: Dist
    budget: Budget


def expand_spec(argv: list[str]) -> list[str]:
    """``--spec X`` and ``--spec=X`` are short for ``--model.spec=X``."""
    args, i = [], 0
    while i < len(argv):
        if argv[i] == "--spec" and i + 1 < len(argv):
            args.append(f"--model.spec={argv[i + 1]}")
            i += 2
            continue
        args.append("--model.spec=" + argv[i][len("--spec="):] if argv[i].startswith("--spec=") else argv[i])
        i += 1
    return args


def read_options(argv: list[str]) -> Options:
    """The checked options of a command line (raises ConfigError naming every bad value)."""
    return load_options(Options, expand_spec(argv))


# ---- prepare: every check that needs the data, the model or the run folder; nothing written ----

@dataclass
class Resume:
    """A checkpoint to continue from, with the epochs it holds and the option changes it is resumed with."""
    state: dict
    rows: list[dict]
    changes: dict[str, list]


@dataclass
class Job:
    """What :func:`prepare` checked and decided, for :func:`train` to carry out."""
    opts: Options
    info: DistInfo
    model: torch.nn.Module
    spec_record: dict
    num_classes: int
    amp: bool
    compile: bool
    peak_lr: float
    run: Path
    record: dict               # config.json of this run (for a resumed one: as it will be after the resume)
    resume: Resume | None = None
    notes: list[str] = field(default_factory=list)


def prepare(o: Options) -> Job:
    """Check the data files, the model, the machine and the run folder; raise UsageError on any problem."""
    d, t = o.data, o.training
    try:
        train_data = check_beton(d.train_path, name=f"--data.train_path={d.train_path}")
        val_data = check_beton(d.val_path, name=f"--data.val_path={d.val_path}")
        check_same_classes(train_data, val_data, f"--data.train_path={d.train_path}", f"--data.val_path={d.val_path}")
    except (DataFileError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    for key, subset, data in (("train_subset", d.train_subset, train_data), ("val_subset", d.val_subset, val_data)):
        if subset > data.num_samples:
            raise UsageError(f"--data.{key}={subset} is more than the {data.num_samples} samples of {data.path}; "
                             f"use at most {data.num_samples} (0: all)")
    device, amp, compile_ = resolve_speed(t)
    info = init_distributed(device)
    samples = (d.train_subset or train_data.num_samples) // info.world_size
    if t.batch_size > samples:
        where = f"--data.train_subset={d.train_subset}" if d.train_subset else f"all of {d.train_path}"
        per = f" per process ({info.world_size} processes)" if info.distributed else ""
        raise UsageError(f"--training.batch_size={t.batch_size} is larger than the {samples} training samples{per} "
                         f"({where}): not one batch per epoch; use a batch size of at most {samples}")
    torch.manual_seed(t.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model, spec_record = make_model(o, train_data.num_classes)
    global_batch = info.world_size * t.batch_size
    peak = o.lr.lr if o.lr.lr is not None else scaled_lr(o.lr.base_lr, global_batch)
    if o.lr.eta_min > peak:
        how = "--lr.lr" if o.lr.lr is not None else f"--lr.base_lr={o.lr.base_lr:g} x {global_batch} / 512"
        raise UsageError(f"--lr.eta_min={o.lr.eta_min:g} is above the peak lr {peak:g} ({how}); make eta_min "
                         f"at most {peak:g}")
    run = run_folder(o)
    record = {**options_dict(o), "git": git_revision(REPO), "world_size": info.world_size,
              "global_batch": global_batch, "peak_lr": peak, "torch": torch.__version__,
              "data_files": {"train": _fingerprint(train_data), "val": _fingerprint(val_data)}, "changes": []}
    job = Job(o, info, model, spec_record, train_data.num_classes, amp, compile_, peak, run, record)
    if t.resume and (run / "checkpoint.pt").exists():
        job.resume = open_resume(job)
    if o.model.init_from and job.resume is None:   # a resumed run has its own weights
        try:
            report = init_from(model, o.model.init_from, classes=train_data.classes)
        except (WeightsError, FileNotFoundError) as e:
            raise UsageError(f"--model.init_from={o.model.init_from}: {e}") from None
        lines = report.lines()
        job.notes += [f"--model.init_from={o.model.init_from}: {lines[0]}", *lines[1:]]
    if o.model.freeze_stem:
        job.notes.append(f"stem frozen: {freeze_stem(model):,} parameters not trained")
    return job


def _fingerprint(data: BetonInfo) -> dict:
    return {"num_samples": data.num_samples, "num_classes": data.num_classes}


def resolve_speed(t: Training) -> tuple[str, bool, bool]:
    """(device request, bf16 autocast on?, torch.compile on?) with 'auto' resolved for this machine."""
    if t.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--training.device=cuda but torch sees no CUDA device; use cpu or auto")
    cuda = torch.cuda.is_available() if t.device == "auto" else t.device == "cuda"
    compile_ = t.compile == "on" or (t.compile == "auto" and cuda)
    if compile_ and not cuda and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise UsageError(f"--training.compile={t.compile} on the CPU needs a C++ compiler and none is on PATH "
                         f"(g++, c++, clang++); install one or use --training.compile=off")
    return t.device, autocast_on(t.amp, "cuda" if cuda else "cpu"), compile_


def make_model(o: Options, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """Build the spec (on CPU) with the data's class count; returns the model and its spec.json record."""
    res = o.validation.res
    overrides = {"num_classes": num_classes, "img_size": res}
    overrides |= {k: v for k, v in (("drop_path", o.model.drop_path), ("dropout", o.model.dropout)) if v is not None}
    try:
        model_spec = sdpnet.load_spec(o.model.spec, **overrides)
        model = sdpnet.build(model_spec)
    except sdpnet.SpecError as e:
        raise UsageError(f"bad --model.spec: {e}") from None
    if res % model.stride:
        raise UsageError(f"--validation.res={res} is not a multiple of the model's stride {model.stride}; "
                         f"use {max(model.stride, res // model.stride * model.stride)}")
    return model, {**model_spec.to_json(), "canonical": str(model_spec.arch)}


def run_folder(o: Options) -> Path:
    """The run folder, refused (nothing created) if it holds a run and resume is off, or cannot be written."""
    run = Path(o.logging.folder or Path("runs") / (Path(o.model.spec).stem if o.model.spec.endswith(".json")
                                                     else "spec"))
    if run.exists() and not run.is_dir():
        raise UsageError(f"--logging.folder={run} is a file, not a folder; choose another path")
    if not o.training.resume and ((run / "checkpoint.pt").exists() or (run / "metrics.jsonl").exists()):
        raise UsageError(f"--logging.folder={run} already holds a run; pass --training.resume=1 to continue "
                         f"it or choose another folder")
    base = run
    while not base.exists():   # the nearest folder that exists: the run folder is created inside it
        base = base.parent
    try:
        if not base.is_dir():
            raise NotADirectoryError(f"{base} is a file")
        fd, probe = tempfile.mkstemp(dir=base, prefix=".sdpnet-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = os_error_text(e) if e.errno else str(e)
        raise UsageError(f"--logging.folder={run} cannot be written: no file can be created in {base} ({why}); "
                         f"choose a folder you can write to") from None
    return run


CHECKPOINT_KEYS = ("model", "ema", "optimizer", "epoch", "step", "rng", "best_top1", "train_time_s", "metrics")


def open_resume(job: Job) -> Resume:
    """Load and check the checkpoint and compare the run's config.json/spec.json with this command line."""
    run, o = job.run, job.opts
    path = run / "checkpoint.pt"
    restart = f"move it away (mv {path} {path}.bad) to restart this run from epoch 0, or use a new --logging.folder"
    try:
        state = load_checkpoint(path)
    except CheckpointError as e:
        raise UsageError(f"{e}: --training.resume=1 cannot continue from it; {restart}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)} (written by an older or another program); {restart}")
    rows = state["metrics"]
    if not isinstance(rows, list) or [r.get("epoch") for r in rows] != list(range(1, state["epoch"] + 1)):
        raise UsageError(f"{path} is damaged: its metrics do not cover epochs 1..{state['epoch']}; {restart}")
    changes = config_changes(run, job.record, job.spec_record)
    if changes and not o.training.resume_changed:
        listed = ", ".join(f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changes.items())
        raise UsageError(f"--training.resume=1 with options that change the run in {run}/config.json: {listed}; "
                         f"resume with the run's values, pass --training.resume_changed=1 to continue with the new "
                         f"ones (recorded in config.json), or use a new --logging.folder")
    try:
        job.model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().split("\n")[0]
        raise UsageError(f"{path} does not fit the model of --model.spec ({first}); {restart}") from None
    return Resume(state, rows, changes)


def config_changes(run: Path, record: dict, spec_record: dict) -> dict[str, list]:
    """{key: [run's value, this command line's]} for every option, spec entry or data file that differs."""
    old, old_spec = {}, {}
    for name in ("config.json", "spec.json"):
        try:
            loaded = json.loads((run / name).read_text())
        except (OSError, ValueError):
            loaded = {"unreadable": name}   # nothing to compare with: every value counts as changed
        old, old_spec = (loaded, old_spec) if name == "config.json" else (old, loaded)
    absent = "(absent)"
    defaults = option_defaults(Options)   # an option the run predates counts as its default
    out = {}
    for key in sorted(altering_keys(Options)):
        sec, name = key.split(".")
        section = old.get(sec) if isinstance(old.get(sec), dict) else {}
        before = section.get(name, absent if "unreadable" in old else defaults[key])
        if before != record[sec][name]:
            out[key] = [before, record[sec][name]]
    for key in ("world_size", "data_files"):
        if old.get(key, absent) != record[key]:
            out[key] = [old.get(key, absent), record[key]]
    for key in sorted(set(old_spec) | set(spec_record)):
        if old_spec.get(key, absent) != spec_record.get(key, absent):
            out[f"spec.{key}"] = [old_spec.get(key, absent), spec_record.get(key, absent)]
    return out


# ---- train: from here on the run folder is written ----------------------------------------------

def start_run_folder(job: Job) -> list[dict]:
    """Create or reopen the run folder (rank 0): config.json, spec.json, metrics.jsonl; returns the epochs done."""
    run, resume = job.run, job.resume
    run.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_temps(run):
        job.notes.append(f"removed {p.name}, left by a killed run")
    if resume is None:   # a fresh run (also --training.resume=1 with no checkpoint yet)
        write_json(run / "config.json", job.record)
        write_json(run / "spec.json", job.spec_record)
        write_json(run / DATA_FILE, data_record(job.opts.data.train_path, job.opts.data.val_path))  # class names
        for stale in ("metrics.jsonl", "results.json"):   # of an attempt that saved no epoch
            (run / stale).unlink(missing_ok=True)
        return []
    if resume.changes:
        old = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        record = {**job.record, "changes": [*old.get("changes", []),
                                            {"epoch": resume.state["epoch"], "values": resume.changes}]}
        write_json(run / "config.json", record)
        write_json(run / "spec.json", job.spec_record)
        job.notes.append(f"resumed with changes (recorded in config.json): {', '.join(resume.changes)}")
    text = "".join(json.dumps(r) + "\n" for r in resume.rows)
    metrics = run / "metrics.jsonl"
    if not metrics.is_file() or metrics.read_text() != text:
        write_jsonl(metrics, resume.rows)
        job.notes.append(f"metrics.jsonl rewritten from checkpoint.pt (epochs 1-{resume.state['epoch']}): it had "
                         f"a missing, damaged or extra line")
    return list(resume.rows)


def make_batch_transforms(a: Augment, num_classes: int, device: torch.device, train_path: str
                          ) -> tuple[BatchAugment, MixCut]:
    """Per-image RandAugment/erasing and per-batch MixUp/CutMix with smoothed soft targets."""
    mean, std = dataset_stats(train_path)  # 0-255, what the loader normalised with
    aug = BatchAugment((mean / 255).tolist(), (std / 255).tolist(), randaug_n=a.randaug_n, randaug_m=a.randaug_m,
                       erase_p=a.erase_p).to(device)
    return aug, MixCut(num_classes, mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, switch_prob=a.switch_prob,
                       smoothing=a.label_smoothing)


def make_lr_schedule(lr: Lr, peak: float, steps_per_epoch: int, epochs: int):
    """step -> lr: linear warm-up to the cosine (with warm restarts) from ``peak``."""
    kw = dict(peak_lr=peak, steps_per_epoch=steps_per_epoch, warmup_epochs=lr.warmup_epochs,
              t0_epochs=lr.t0_epochs or epochs, t_mult=lr.t_mult, eta_min=lr.eta_min)
    return lambda step: lr_at(step, **kw)


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
                               f"{lr:.3g}): the run diverged and {_saved(epoch)}; lower --lr.lr or --lr.base_lr "
                               f"(or clip with --training.grad_clip)")
            bar.set_postfix(loss=f"{m['loss']:.4f}", lr=f"{lr:.2e}",
                            img_s=f"{m['count'] / (time.perf_counter() - t0):.0f}", refresh=False)
            bar.update((i + 1) - bar.n)
    m = meter.read()
    return {"train_loss": m["loss"], "images": m["count"], "lr": lr_fn(step - 1)}, step


def _saved(epoch: int) -> str:
    """What a run that fails in (0-based) ``epoch`` has saved, and how to go on."""
    if epoch == 0:
        return "no epoch is saved: start again"
    return (f"epoch {epoch + 1} is not saved (the run folder holds epoch {epoch}): continue with "
            f"--training.resume=1 --training.resume_changed=1")


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP (in-place compile keeps parameter names unprefixed)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def commit(run: Path, state: dict) -> None:
    """Save one epoch: the checkpoint (which holds every epoch's metrics), then metrics.jsonl rewritten from it.

    The checkpoint's rename is the commit: a failure before it leaves the previous epoch's
    checkpoint and metrics; a failure after it leaves a metrics.jsonl that the next resume
    rewrites from the checkpoint. No failure duplicates or loses an epoch.
    """
    epoch, path = state["epoch"], run / "checkpoint.pt"
    kept = f"the run folder holds epoch {epoch - 1}" if epoch > 1 else "no epoch is saved yet"
    try:
        save_checkpoint(path, state)
    except OSError as e:
        raise RunError(f"cannot write {path}: {os_error_text(e)}; epoch {epoch} is not saved and {kept}: make room "
                       f"(or fix the permissions) and continue with --training.resume=1") from None
    try:
        write_jsonl(run / "metrics.jsonl", state["metrics"])
    except OSError as e:
        raise RunError(f"cannot write {run / 'metrics.jsonl'}: {os_error_text(e)}; checkpoint.pt holds epoch "
                       f"{epoch} and --training.resume=1 rewrites metrics.jsonl from it") from None


def train(job: Job) -> int:
    """Load the data, train epoch by epoch (checkpointing each), and write results.json and curves.png."""
    o, info, run = job.opts, job.info, job.run
    rows = start_run_folder(job) if info.is_main else list(job.resume.rows if job.resume else [])
    barrier()  # the folder exists before any rank reads or writes in it
    torch.manual_seed(o.training.seed + info.rank)  # per-rank augmentation streams
    flops = model_flops(job.model, o.validation.res) if info.is_main else None   # on the CPU, before it moves
    model = job.model.to(info.device, memory_format=torch.channels_last if o.training.channels_last
                         else torch.preserve_format)
    ema = ModelEma(model, decay=o.ema.decay, warmup=o.ema.warmup) if o.ema.enabled else None
    res_kw = dict(min_res=o.resolution.min_res, max_res=o.resolution.max_res, start_ramp=o.resolution.start_ramp,
                  end_ramp=o.resolution.end_ramp, stride=model.stride)
    d, a, t = o.data, o.augment, o.training
    train_loader = make_train_loader(d.train_path, batch_size=t.batch_size, res=res_at(0, **res_kw),
                                     num_workers=d.num_workers, device=info.device, distributed=info.distributed,
                                     seed=t.seed, subset=d.train_subset or None, scale=(a.scale_min, a.scale_max),
                                     ratio=(a.ratio_min, a.ratio_max), flip=a.flip, translate=a.translate,
                                     channels_last=t.channels_last, os_cache=d.os_cache)
    val_loader = make_val_loader(d.val_path, batch_size=o.validation.batch_size, res=o.validation.res,
                                 num_workers=d.num_workers, device=info.device, distributed=info.distributed,
                                 subset=d.val_subset or None, crop_ratio=o.validation.crop_ratio,
                                 channels_last=t.channels_last, os_cache=d.os_cache)
    steps_per_epoch = len(train_loader)
    lr_fn = make_lr_schedule(o.lr, job.peak_lr, steps_per_epoch, t.epochs)
    budget = None
    if o.budget.minutes > 0:   # the schedule of t.epochs laid over the time: progress = time spent / budget
        spent = (job.resume.state.get("budget_spent_s") or 0.0) if job.resume else 0.0
        budget = TimeBudget(60 * o.budget.minutes, spent=spent, shared=info.distributed)
        kw = dict(peak_lr=job.peak_lr, warmup_epochs=o.lr.warmup_epochs, t0_epochs=o.lr.t0_epochs or t.epochs,
                  t_mult=o.lr.t_mult, eta_min=o.lr.eta_min)
        lr_fn = lambda step: lr_at_progress(budget.progress, epochs=t.epochs, steps_per_epoch=steps_per_epoch, **kw)  # noqa: E731
    opt = make_adamw(model, lr=job.peak_lr, weight_decay=t.weight_decay,
                     lr_scale=lr_scales(model, o.lr.layer_decay) if o.lr.layer_decay < 1 else None)
    aug, mix = make_batch_transforms(a, job.num_classes, info.device, d.train_path)
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

    # ---- the epoch loop (with a time budget: until the time is spent)
    last_epoch = t.epochs if budget is None else 10 ** 9
    last_epoch = min(last_epoch, t.stop_after) if t.stop_after else last_epoch
    agree = (lambda v: all_reduce_max(v, info.device)) if budget is not None and info.distributed else None
    for epoch in range(start_epoch, last_epoch):
        if budget is not None and budget.done:
            break
        res = res_at(epoch if budget is None else int(budget.progress * t.epochs), **res_kw)
        set_train_resolution(train_loader, res)
        train_loader.next_epoch = epoch  # data order is a function of (seed, epoch), also after a resume
        order = train_loader.next_traversal_order() if o.dist.dump_samples else None
        bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{t.epochs} @{res}px",
                   disable=not (o.logging.progress and info.is_main), dynamic_ncols=True, leave=True)
        dump = [] if o.dist.dump_samples else None
        t0 = time.perf_counter()
        if budget is not None:
            budget.resume()
        stats, step = train_epoch(ddp_model, train_loader, opt, ema, aug, mix, criterion, lr_fn, step, epoch=epoch,
                                  amp=job.amp, grad_clip=t.grad_clip, log_interval=o.logging.log_interval, bar=bar,
                                  dump=dump, budget=budget, agree=agree)
        if budget is not None:
            budget.pause()
        epoch_time = time.perf_counter() - t0
        bar.close()
        train_time += epoch_time
        evals = evaluate({"model": model, **({"ema": ema.module} if ema else {})}, val_loader, amp=job.amp,
                         flip=o.validation.flip)
        best = max(best, evals["top1"])
        record = {"epoch": epoch + 1, "train_loss": stats["train_loss"], **evals, "lr": stats["lr"],
                  "res": res, "img_per_s": stats["images"] / epoch_time, "epoch_time": epoch_time}
        if budget is not None:
            record["progress"] = budget.progress
        bad = [k for k, v in record.items() if not math.isfinite(v)]
        if bad:
            raise RunError(f"{bad[0]} is {record[bad[0]]} after epoch {epoch + 1}: the model diverged and "
                           f"{_saved(epoch)}; lower --lr.lr or --lr.base_lr")
        rows.append(record)
        if dump is not None:
            dump_rank(run, info, epoch, order, dump, model)
        rngs = gather_rng(info)
        if info.is_main:
            commit(run, {"model": model.state_dict(), "ema": ema.module.state_dict() if ema else None,
                         "optimizer": opt.state_dict(), "epoch": epoch + 1, "step": step, "rng": rngs,
                         "best_top1": best, "train_time_s": train_time, "metrics": rows,
                         "budget_spent_s": budget.spent if budget is not None else None})
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        barrier()

    finished = budget.done if budget is not None else last_epoch == t.epochs
    if info.is_main and finished:
        last = rows[-1]
        breaks = compile_graph_breaks() if job.compile else None
        later = rows[1:] or rows   # the first epoch pays FFCV's compilation
        cost = {"flops": flops, "flops_res": o.validation.res,
                "img_per_s": sum(r["img_per_s"] * r["epoch_time"] for r in later) / sum(r["epoch_time"] for r in later),
                **peak_memory(info.device)}
        if budget is not None:
            cost |= {"budget_s": budget.seconds, "budget_time_s": budget.spent, "budget_excluded_s": budget.excluded}
        write_json(run / "results.json", {
            "top1": last["top1"], "top5": last["top5"], "ema_top1": last.get("ema_top1"),
            "ema_top5": last.get("ema_top5"), "best_top1": best,
            "epochs": t.epochs if budget is None else round(step / steps_per_epoch, 3),
            "train_time_s": train_time, "params": n_params, "spec": job.spec_record["canonical"],
            "graph_breaks": breaks, **cost})
        if breaks:
            print(f"warning: torch.compile broke the graph {breaks} time(s) (run with TORCH_LOGS=graph_breaks "
                  f"to see where): the compiled model runs slower than it could", file=sys.stderr)
        plot_run(run)
    return 0


def model_flops(model: torch.nn.Module, res: int) -> int:
    """FLOPs of one image at ``res`` px, counted as ``python -m sdpnet summary`` counts them (eval mode)."""
    from sdpnet.models.summary import summarize

    was_training = model.training
    try:
        return summarize(model.eval(), res)["flops"]
    finally:
        model.train(was_training)


def peak_memory(device: torch.device) -> dict:
    """The run's peak memory in MiB: CUDA memory allocated on a GPU, the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return {"peak_mem_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20, "peak_mem_kind": "cuda_allocated"}
    import resource
    return {"peak_mem_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_mem_kind": "cpu_rss"}


def all_reduce_max(value: float, device: torch.device) -> float:
    """The largest ``value`` over the ranks (the time a data-parallel budget agrees on)."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return float(t.item())


def compile_graph_breaks() -> int:
    """How many graph breaks torch.compile (dynamo) met in this process."""
    from torch._dynamo.utils import counters
    return sum(counters["graph_break"].values())


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
    """Parse, check, train. Exit status 2: refused before any work; 1: the run failed (message says why)."""
    opts = parse_options(Options, expand_spec(argv), description=__doc__.split("\n")[0], prog=PROG)
    try:
        try:
            job = prepare(opts)
        except UsageError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        return train(job)
    except (RunError, LoaderError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: cannot write {e.filename or 'a run file'}: {os_error_text(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue from the last saved epoch with --training.resume=1", file=sys.stderr)
        return 130
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
