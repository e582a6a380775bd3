"""FFCV loaders for training and evaluation: the factory train_ffcv.py uses.

Batches are ``(images, labels)``: images float32 (B, 3, res, res), normalised, in
channels_last memory format; labels int64 (B,). With a CUDA device the uint8 crops are
copied to the GPU (non_blocking) and normalised there; on CPU everything stays on the
host. The Loader reuses its output buffers from batch to batch: copy (``.clone()``)
anything kept beyond the current step.

Sharding: each loader serves a fixed index list (all samples, or a seeded random
``subset`` of N). The training order is a fresh permutation of that list every epoch
(seed + epoch, identical on every rank); rank r takes the r-th of ``world_size`` equal
contiguous slices, dropping the remainder so that ranks run the same number of
batches. Validation shards are ``indices[r::world_size]``: disjoint and together
covering every sample (counts may differ by one, so keep collectives out of the
validation loop and all-reduce the sums after it).

Replayable augmentation: FFCV's crop, flip and translate draw from numba's per-thread
generator, which nothing seeds. The training decoder seeds it at the start of every batch
from ``seed`` and the batch's sample indices (a new permutation each epoch, so new draws),
so with ``num_workers=1`` (the whole pipeline in one thread) the crops, flips and shifts of
a batch are a function of (seed, epoch) and a resumed run sees exactly the images an
uninterrupted one would. With more workers the draws happen in numba's worker threads,
and with the sequential order (same batches every epoch) nothing is seeded: still random,
but not replayable.
"""
from __future__ import annotations

from queue import Full
from typing import Callable, Sequence

import numpy as np
import torch

from .ffcv_import import import_ffcv

import_ffcv()
from ffcv.fields.basics import IntDecoder
from ffcv.fields.rgb_image import CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder
from ffcv.loader import Loader
from ffcv.loader.epoch_iterator import IS_CUDA, EpochIterator
from ffcv.pipeline.compiler import Compiler
from ffcv.reader import Reader
from ffcv.transforms import (NormalizeImage, RandomHorizontalFlip, RandomTranslate, Squeeze,
                             ToDevice, ToTensor, ToTorchImage)
from ffcv.traversal_order.base import TraversalOrder

from .betons import check_beton
from .sidecar import IMAGENET_MEAN, IMAGENET_STD, read_sidecar

__all__ = ["make_train_loader", "make_val_loader", "set_train_resolution", "subset_indices",
           "shard_indices", "dataset_stats", "LoaderError"]


def subset_indices(num_samples: int, subset: int | None, seed: int = 0) -> np.ndarray:
    """All indices, or a sorted seeded random choice of ``subset`` of them (the quick-run subset)."""
    if subset is None or subset >= num_samples:
        return np.arange(num_samples, dtype=np.int64)
    if subset < 1:
        raise ValueError(f"subset={subset}: give a positive number of samples (or None for all)")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_samples, subset, replace=False)).astype(np.int64)


def shard_indices(indices: np.ndarray, *, rank: int, world_size: int, epoch: int, seed: int,
                  shuffle: bool) -> np.ndarray:
    """The indices rank ``rank`` of ``world_size`` reads in ``epoch``; shards are disjoint.

    shuffle=True (training): permute with seed+epoch, give each rank an equal contiguous
    slice and drop the remainder (< world_size samples). shuffle=False (validation):
    ``indices[rank::world_size]``, which covers every sample.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if not shuffle:
        return indices[rank::world_size]
    order = np.random.default_rng(seed + epoch).permutation(indices)
    per = len(order) // world_size
    return order[rank * per:(rank + 1) * per]


class _ShardOrder(TraversalOrder):
    """FFCV traversal order built on :func:`shard_indices` (FFCV accepts an instance it can call)."""

    def __init__(self, rank: int, world_size: int, seed: int, shuffle: bool):
        self.rank, self.world_size, self.seed_, self.shuffle = rank, world_size, seed, shuffle

    def __call__(self, loader: Loader) -> "_ShardOrder":
        super().__init__(loader)
        return self

    def sample_order(self, epoch: int) -> Sequence[int]:
        return shard_indices(self.indices, rank=self.rank, world_size=self.world_size, epoch=epoch,
                             seed=self.seed_, shuffle=self.shuffle)


class LoaderError(RuntimeError):
    """The FFCV pipeline failed in its thread; raised in the training loop instead of a hang."""


class _CheckedEpochIterator(EpochIterator):
    """FFCV's epoch thread, except that an exception in it reaches the consumer.

    FFCV's ``EpochIterator.run`` catches only StopIteration: any other error ends the thread
    and ``__next__`` then waits on the batch queue forever. Here the error is queued like a
    batch and :meth:`__next__` raises it as a :class:`LoaderError`.
    """

    def run(self) -> None:
        try:
            super().run()
        except BaseException as e:   # anything, so that the consumer never waits for a dead thread
            while not self.terminate_event.is_set():
                try:
                    self.output_queue.put(e, timeout=0.5)
                    return
                except Full:
                    pass

    def __next__(self):
        item = self.output_queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise LoaderError(f"the data loader failed reading '{self.loader.fname}' "
                              f"({type(item).__name__}: {item})") from item
        if item is None:
            self.close()
            raise StopIteration
        slot, batch = item
        if IS_CUDA:
            self.current_stream.wait_stream(self.cuda_streams[slot])   # the batch's copy is done
        return batch


class _ThreadKeepingLoader(Loader):
    """An FFCV Loader that leaves the caller's torch thread count alone and never hangs on an error.

    ``Loader.__init__`` and ``__iter__`` call ``Compiler.set_num_threads(num_workers)``, which
    also runs ``torch.set_num_threads(num_workers)`` in the calling thread: with num_workers=1
    the model would then train on one thread of a multi-core CPU (1.5x slower on 2 cores).
    The count is restored after both; FFCV's decoding threads are numba's, which this does not
    touch. (Importing ffcv sets torch's count to 1 too: undone where this module imports it.)
    ``__iter__`` is FFCV 1.0's, with :class:`_CheckedEpochIterator` in place of its iterator.
    """

    def __init__(self, *args, **kwargs) -> None:
        threads = torch.get_num_threads()
        super().__init__(*args, **kwargs)
        torch.set_num_threads(threads)

    def __iter__(self) -> _CheckedEpochIterator:
        threads = torch.get_num_threads()
        Compiler.set_num_threads(self.num_workers)
        order = self.next_traversal_order()
        self.next_epoch += 1
        if self.code is None or self.recompile:
            self.generate_code()
        iterator = _CheckedEpochIterator(self, order[:len(self) * self.batch_size])
        torch.set_num_threads(threads)
        return iterator


def _seed_numba(batch_indices: np.ndarray, seed: int) -> None:
    """Seed this thread's numba generator from the loader seed and every index of the batch."""
    h = seed % 4294967291
    for i in range(len(batch_indices)):
        h = (h * 1000003 + np.int64(batch_indices[i])) % 4294967291   # < 2**52: no int64 overflow
    np.random.seed(h)   # inside numba-compiled code this seeds numba's generator, not numpy's


class _SeededRandomResizedCrop(RandomResizedCropRGBImageDecoder):
    """FFCV's RandomResizedCrop decoder, seeding numba's generator per batch (see the module notes).

    The ops after it in the same thread (flip, translate) then draw from the seeded stream too.
    """

    def __init__(self, output_size: tuple[int, int], scale: tuple[float, float],
                 ratio: tuple[float, float], seed: int) -> None:
        super().__init__(output_size, scale=scale, ratio=ratio)
        self.seed = seed

    def generate_code(self) -> Callable:
        crop = Compiler.compile(super().generate_code())   # FFCV's decode-and-crop loop, unchanged
        seed_c = Compiler.compile(_seed_numba)
        seed = int(self.seed)

        def decode(batch_indices, my_storage, metadata, storage_state):
            seed_c(batch_indices, seed)
            return crop(batch_indices, my_storage, metadata, storage_state)

        return decode


def _rank_world(distributed: bool) -> tuple[int, int]:
    if not distributed:
        return 0, 1
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError("distributed=True needs torch.distributed.init_process_group() first")
    return torch.distributed.get_rank(), torch.distributed.get_world_size()


def dataset_stats(path: str, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """mean/std (0-255) as given, else from the .beton's sidecar, else (no sidecar) ImageNet's.

    A sidecar that is not valid JSON raises ValueError (it is never silently replaced).
    """
    try:
        meta = read_sidecar(path) if mean is None or std is None else {}
    except FileNotFoundError:
        meta = {}
    if not isinstance(meta, dict):
        raise ValueError(f"sidecar of '{path}' holds a {type(meta).__name__}, expected a JSON object")
    mean = mean if mean is not None else meta.get("mean", IMAGENET_MEAN)
    std = std if std is not None else meta.get("std", IMAGENET_STD)
    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    if mean.shape != (3,) or std.shape != (3,) or not (np.isfinite(mean).all() and np.isfinite(std).all()) \
            or (std <= 0).any():
        raise ValueError(f"mean/std must be 3 finite values each with std > 0, got mean={mean}, std={std}")
    return mean, std


class _Contiguous(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous()


def _tail(device: torch.device, mean: np.ndarray, std: np.ndarray, channels_last: bool) -> list:
    """uint8 HWC crops -> normalised float32 NCHW tensors on ``device``."""
    norm = NormalizeImage(mean, std, np.float32)
    if device.type == "cuda":   # copy uint8 (4x less than float32), normalise on the GPU (cupy kernel)
        ops = [ToTensor(), ToDevice(device, non_blocking=True),
               ToTorchImage(channels_last=True, convert_back_int16=False), norm]   # FFCV's GPU op needs NHWC
        return ops if channels_last else ops + [_Contiguous()]
    return [norm, ToTensor(), ToTorchImage(channels_last=channels_last, convert_back_int16=False)]


def _label_pipeline(device: torch.device) -> list:
    ops = [IntDecoder(), ToTensor(), Squeeze(1)]
    return ops + [ToDevice(device, non_blocking=True)] if device.type == "cuda" else ops


def _loader(path: str, image_ops: list, *, batch_size: int, num_workers: int, device: torch.device,
            distributed: bool, seed: int, subset: int | None, shuffle: bool, drop_last: bool,
            os_cache: bool) -> Loader:
    rank, world = _rank_world(distributed)
    num_samples = Reader(path).num_samples
    return _ThreadKeepingLoader(path, batch_size=batch_size, num_workers=num_workers, os_cache=os_cache,
                  order=_ShardOrder(rank, world, seed, shuffle), seed=seed,
                  indices=subset_indices(num_samples, subset, seed), drop_last=drop_last,
                  pipelines={"image": image_ops, "label": _label_pipeline(device)})


def make_train_loader(path: str, *, batch_size: int, res: int, num_workers: int = 2,
                      device: str | torch.device = "cpu", distributed: bool = False, seed: int = 0,
                      subset: int | None = None, scale: tuple[float, float] = (0.08, 1.0),
                      ratio: tuple[float, float] = (3 / 4, 4 / 3), flip: bool = True,
                      translate: int = 0, mean: Sequence[float] | None = None,
                      std: Sequence[float] | None = None, channels_last: bool = True,
                      drop_last: bool = True, os_cache: bool = True, order: str = "random") -> Loader:
    """Training loader: RandomResizedCrop to ``res``, optional flip and translate, normalise.

    Args:
        res: output side; change it between epochs with :func:`set_train_resolution`.
        subset: read only a fixed seeded random subset of this many samples (quick runs).
        translate: if > 0, shift each image by up to this many pixels, zero-filling (28-px data).
        mean, std: per-channel, 0-255 scale; None takes them from the sidecar, else ImageNet's.
        order: 'random' (a new permutation each epoch) or 'sequential'.
        seed: data order, subset and augmentation; crops, flips and shifts replay exactly
            (same seed and epoch, e.g. after a resume) with ``num_workers=1`` and the random order.
    """
    check_beton(path, sidecar=False)   # sizes against the header: a truncated file is an error, not SIGBUS
    if order not in ("random", "sequential"):
        raise ValueError(f"order={order!r}: use 'random' or 'sequential'")
    if res < 1 or batch_size < 1:
        raise ValueError(f"res={res} and batch_size={batch_size} must be positive")
    device = torch.device(device)
    mean_, std_ = dataset_stats(path, mean, std)
    # seeding per batch needs batches that differ between epochs: only the random order gives that
    ops = [_SeededRandomResizedCrop((res, res), scale=tuple(scale), ratio=tuple(ratio), seed=seed)
           if order == "random" else RandomResizedCropRGBImageDecoder((res, res), scale=tuple(scale),
                                                                    ratio=tuple(ratio))]
    ops += [RandomHorizontalFlip()] if flip else []
    ops += [RandomTranslate(padding=translate)] if translate > 0 else []
    return _loader(path, ops + _tail(device, mean_, std_, channels_last), batch_size=batch_size,
                   num_workers=num_workers, device=device, distributed=distributed, seed=seed,
                   subset=subset, shuffle=order == "random", drop_last=drop_last, os_cache=os_cache)


def make_val_loader(path: str, *, batch_size: int, res: int, num_workers: int = 2,
                    device: str | torch.device = "cpu", distributed: bool = False,
                    subset: int | None = None, crop_ratio: float = 224 / 256,
                    mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                    channels_last: bool = True, os_cache: bool = True) -> Loader:
    """Evaluation loader: centre crop of ``crop_ratio`` x the short side, resized to ``res``; in order.

    Keeps the last partial batch; with ``distributed`` every sample is read by exactly one rank.
    """
    check_beton(path, sidecar=False)
    if not 0 < crop_ratio <= 1:
        raise ValueError(f"crop_ratio={crop_ratio} must be in (0, 1]")
    device = torch.device(device)
    mean_, std_ = dataset_stats(path, mean, std)
    ops = [CenterCropRGBImageDecoder((res, res), ratio=crop_ratio)]
    return _loader(path, ops + _tail(device, mean_, std_, channels_last), batch_size=batch_size,
                   num_workers=num_workers, device=device, distributed=distributed, seed=0,
                   subset=subset, shuffle=False, drop_last=False, os_cache=os_cache)


def set_train_resolution(loader: Loader, res: int) -> None:
    """Set the RandomResizedCrop output side to ``res`` from the next ``iter(loader)`` (next epoch).

    FFCV sizes its buffers when an epoch starts, so no rebuild or recompile is needed
    (ffcv-imagenet's progressive resizing does the same).
    """
    spec = loader.pipeline_specs["image"]
    decoders = [op for op in [spec.decoder, *spec.transforms]
                if isinstance(op, RandomResizedCropRGBImageDecoder)]
    if not decoders:
        raise ValueError("this loader has no RandomResizedCrop decoder (is it a validation loader?)")
    if res < 1:
        raise ValueError(f"res={res} must be positive")
    decoders[0].output_size = (res, res)
