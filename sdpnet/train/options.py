"""The trainer's options: one frozen dataclass per section, each option spelt once.

``option(default, help, ge=.., lt=.., choices=.., alters=..)`` (:mod:`sdpnet.train.config`) declares a
field; the checks that relate the fields of one section run in its ``__post_init__``. What needs the
data, the model or the run folder is checked later, by :func:`sdpnet.train.prepare.prepare`.
No torch here: the sweep checks every grid point's options with :func:`read_options` before it
imports torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from sdpnet.train.config import ConfigError, load_options, option

__all__ = ["Model", "Data", "Resolution", "Augment", "Lr", "Training", "Ema", "Validation", "Logging", "Dist",
           "Budget", "Options", "expand_spec", "read_options"]


def _need(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


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
    """.beton files and how they are read"""
    train_path: str = option("data/imagenet/train.beton", "training .beton", alters=False)
    val_path: str = option("data/imagenet/val.beton", "validation .beton", alters=False)
    num_workers: int = option(8, "decoding threads per process (FFCV; worker processes with the torch engine)", ge=1,
                              alters=False)
    train_subset: int = option(0, "train on a fixed random subset of N samples (0: all)", ge=0)
    val_subset: int = option(0, "validate on a fixed random subset of N samples (0: all)", ge=0)
    os_cache: bool = option(True, "read through the OS page cache (dataset fits in RAM) instead of FFCV's "
                                  "process cache", alters=False)
    # alters=False: both engines read the same samples in the same order with the same crops and flips; raw images
    # are bit-identical, JPEGs differ by the decoders' rounding (about 1 level), like the kernels of another device
    engine: str = option("auto", "what reads the .beton files: ffcv, torch (numpy + a DataLoader, no FFCV: the same "
                                 "batches) or auto (ffcv where it imports, else torch, with a note)",
                         choices=("auto", "ffcv", "torch"), alters=False)


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
    tensorboard: bool = option(False, "also write TensorBoard event files in the run folder (per-epoch scalars, lr, "
                                      "img/s, the hyperparameters and the spec)", alters=False)


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

