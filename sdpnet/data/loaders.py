"""The train/val loaders train_ffcv.py uses, on one of two engines that give the same batches.

- ``ffcv`` (:mod:`sdpnet.data.ffcv_loaders`): FFCV's numba-compiled pipeline, decoding in threads.
- ``torch`` (:mod:`sdpnet.data.torch_loader`): numpy reads the .beton, DataLoader worker processes decode with
  OpenCV/Pillow; no FFCV, so it runs where FFCV does not build (macOS, Windows, newer Pythons).
- ``auto`` (the default): FFCV where it imports, else torch, with a one-line note on stderr (once per process).

Both serve the same samples in the same order, the same crops, flips and shifts, and normalise with the same
table: raw images give bit-identical batches (with FFCV's ``num_workers=1``, the only setting where FFCV's draws
replay), JPEG images differ by the decoders' rounding (:mod:`sdpnet.data.beton_reader`). Batches are
``(images, labels)``: images float32 (B, 3, res, res), normalised, channels_last unless asked otherwise; labels
int64 (B,); on ``device``. Sample order, sharding and seeding: :mod:`sdpnet.data.pipeline`.

FFCV is imported here, at the top, when it can be: a failure (no ffcv package, or its import failing, as
``libc.so.6`` does on macOS) is kept as :data:`FFCV_ERROR` and decides ``auto``.
"""
from __future__ import annotations

import sys
from typing import Any, Sequence

import torch

from . import torch_loader
from .betons import check_beton
from .pipeline import LoaderError, rank_world, shard_indices, subset_indices
from .sidecar import dataset_stats

try:
    from . import ffcv_loaders
    FFCV_ERROR: str | None = None
except (ImportError, OSError) as e:   # OSError: FFCV loads libc.so.6 by name, which only Linux has
    ffcv_loaders = None
    FFCV_ERROR = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else 'no message'}"

__all__ = ["make_train_loader", "make_val_loader", "set_train_resolution", "resolve_engine", "ENGINES",
           "FFCV_ERROR", "subset_indices", "shard_indices", "dataset_stats", "LoaderError"]

ENGINES = ("auto", "ffcv", "torch")
_noted = False


def resolve_engine(engine: str) -> tuple[str, str | None]:
    """``(engine, note)``: ``ffcv`` or ``torch`` for ``engine`` (auto|ffcv|torch), and for ``auto`` without FFCV the
    one-line note that says why the torch engine reads the files. ``ffcv`` where FFCV does not import is a
    ValueError saying why."""
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: use one of {', '.join(ENGINES)}")
    if engine == "torch" or (engine == "ffcv" and FFCV_ERROR is None):
        return engine, None
    if FFCV_ERROR is None:
        return "ffcv", None
    if engine == "ffcv":
        raise ValueError(f"engine=ffcv but FFCV is not importable ({FFCV_ERROR}); use the torch engine (torch or "
                         f"auto), which reads the same .beton files")
    return "torch", f"FFCV is not importable ({FFCV_ERROR}); reading .beton files with the torch engine"


def _engine(engine: str) -> Any:
    """The engine's module; for ``auto`` without FFCV, the note is printed once per process."""
    global _noted
    name, note = resolve_engine(engine)
    if note and not _noted:
        print(f"note: {note}", file=sys.stderr)
        _noted = True
    return ffcv_loaders if name == "ffcv" else torch_loader


def make_train_loader(path: str, *, batch_size: int, res: int, num_workers: int = 2,
                      device: str | torch.device = "cpu", distributed: bool = False, seed: int = 0,
                      subset: int | None = None, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                      translate: int = 0, mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None, channels_last: bool = True,
                      drop_last: bool = True, os_cache: bool = True, order: str = "random",
                      engine: str = "auto") -> Any:
    """Training loader: RandomResizedCrop to ``res``, optional flip and translate, normalise.

    Args:
        res: output side; change it between epochs with :func:`set_train_resolution`.
        num_workers: FFCV's decoding threads, or the torch engine's worker processes.
        subset: read only a fixed seeded random subset of this many samples (quick runs).
        translate: if > 0, shift each image by up to this many pixels, zero-filling (28-px data).
        mean, std: per-channel, 0-255 scale; None takes them from the sidecar, else ImageNet's.
        os_cache: FFCV's: read through the OS page cache rather than its process cache (torch: always the former).
        order: 'random' (a new permutation each epoch) or 'sequential'.
        seed: data order, subset and augmentation; crops, flips and shifts replay exactly (same seed and epoch,
            e.g. after a resume) with the random order, on the torch engine always, on FFCV with ``num_workers=1``.
        engine: 'auto', 'ffcv' or 'torch' (the module notes).
    """
    module = _engine(engine)
    info = check_beton(path, sidecar=False)   # sizes against the header: a truncated file is an error, not SIGBUS
    if order not in ("random", "sequential"):
        raise ValueError(f"order={order!r}: use 'random' or 'sequential'")
    if res < 1 or batch_size < 1:
        raise ValueError(f"res={res} and batch_size={batch_size} must be positive")
    mean_, std_ = dataset_stats(path, mean, std)
    rank, world = rank_world(distributed)
    return module.train_loader(path, batch_size=batch_size, res=res, num_workers=num_workers,
                               device=torch.device(device), rank=rank, world=world, seed=seed,
                               indices=subset_indices(info.num_samples, subset, seed), scale=tuple(scale),
                               ratio=tuple(ratio), flip=flip, translate=translate, mean=mean_, std=std_,
                               channels_last=channels_last, drop_last=drop_last, os_cache=os_cache,
                               shuffle=order == "random")


def make_val_loader(path: str, *, batch_size: int, res: int, num_workers: int = 2,
                    device: str | torch.device = "cpu", distributed: bool = False,
                    subset: int | None = None, crop_ratio: float = 224 / 256,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    channels_last: bool = True, os_cache: bool = True, engine: str = "auto") -> Any:
    """Evaluation loader: centre crop of ``crop_ratio`` x the short side, resized to ``res``; in order.

    Keeps the last partial batch; with ``distributed`` every sample is read by exactly one rank.
    """
    module = _engine(engine)
    info = check_beton(path, sidecar=False)
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio={crop_ratio} must be in (0, 1]")
    if res < 1 or batch_size < 1:
        raise ValueError(f"res={res} and batch_size={batch_size} must be positive")
    mean_, std_ = dataset_stats(path, mean, std)
    rank, world = rank_world(distributed)
    return module.val_loader(path, batch_size=batch_size, res=res, num_workers=num_workers,
                             device=torch.device(device), rank=rank, world=world,
                             indices=subset_indices(info.num_samples, subset, 0), crop_ratio=crop_ratio,
                             mean=mean_, std=std_, channels_last=channels_last, os_cache=os_cache)


def set_train_resolution(loader: Any, res: int) -> None:
    """Set the training crop's output side to ``res`` from the next ``iter(loader)`` (next epoch), on either engine
    (no rebuild: FFCV sizes its buffers when an epoch starts, the torch engine's batches carry their size)."""
    if res < 1:
        raise ValueError(f"res={res} must be positive")
    module = torch_loader if torch_loader.is_loader(loader) else ffcv_loaders
    if module is None or not module.is_loader(loader):
        raise TypeError(f"{type(loader).__name__} is not a loader of sdpnet.data.loaders")
    module.set_train_resolution(loader, res)
