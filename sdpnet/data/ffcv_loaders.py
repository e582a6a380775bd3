"""The FFCV engine: train/val loaders whose decoding and augmentation run in FFCV's numba-compiled pipeline.

Use it through :mod:`sdpnet.data.loaders` (``engine="ffcv"``, or ``"auto"`` where FFCV imports); this module
imports FFCV at the top and so fails to import where FFCV does not build.

Batches are ``(images, labels)``: images float32 (B, 3, res, res), normalised, in
channels_last memory format; labels int64 (B,). With a CUDA device the uint8 crops are
copied to the GPU (non_blocking) and normalised there; on CPU everything stays on the
host. The Loader reuses its output buffers from batch to batch: copy (``.clone()``)
anything kept beyond the current step.

Sample order and sharding: :mod:`sdpnet.data.pipeline`.

Replayable augmentation: FFCV's crop, flip and translate draw from numba's per-thread
generator, which nothing seeds. The training decoder seeds it at the start of every batch
(:func:`sdpnet.data.pipeline.batch_seed`), so with ``num_workers=1`` (the whole pipeline in
one thread) the crops, flips and shifts of a batch are a function of (seed, epoch) and a
resumed run sees exactly the images an uninterrupted one would. With more workers the draws
happen in numba's worker threads, and with the sequential order (same batches every epoch)
nothing is seeded: still random, but not replayable.
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
from ffcv.transforms import (NormalizeImage, RandomHorizontalFlip, RandomTranslate, Squeeze,
                             ToDevice, ToTensor, ToTorchImage)
from ffcv.traversal_order.base import TraversalOrder

from .pipeline import LoaderError, shard_indices

__all__ = ["train_loader", "val_loader", "set_train_resolution", "is_loader"]


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
    """Seed this thread's numba generator with :func:`sdpnet.data.pipeline.batch_seed` (the same arithmetic)."""
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
            rank: int, world: int, seed: int, indices: np.ndarray, shuffle: bool, drop_last: bool,
            os_cache: bool) -> Loader:
    return _ThreadKeepingLoader(path, batch_size=batch_size, num_workers=num_workers, os_cache=os_cache,
                                order=_ShardOrder(rank, world, seed, shuffle), seed=seed, indices=indices,
                                drop_last=drop_last, pipelines={"image": image_ops, "label": _label_pipeline(device)})


def train_loader(path: str, *, batch_size: int, res: int, num_workers: int, device: torch.device, rank: int,
                 world: int, seed: int, indices: np.ndarray, scale: tuple[float, float], ratio: tuple[float, float],
                 flip: bool, translate: int, mean: np.ndarray, std: np.ndarray, channels_last: bool,
                 drop_last: bool, os_cache: bool, shuffle: bool) -> Loader:
    """RandomResizedCrop to ``res``, optional flip and translate, normalise (arguments checked by the caller,
    :func:`sdpnet.data.loaders.make_train_loader`)."""
    # seeding per batch needs batches that differ between epochs: only the random order gives that
    ops = [_SeededRandomResizedCrop((res, res), scale=tuple(scale), ratio=tuple(ratio), seed=seed)
           if shuffle else RandomResizedCropRGBImageDecoder((res, res), scale=tuple(scale), ratio=tuple(ratio))]
    ops += [RandomHorizontalFlip()] if flip else []
    ops += [RandomTranslate(padding=translate)] if translate > 0 else []
    return _loader(path, ops + _tail(device, mean, std, channels_last), batch_size=batch_size,
                   num_workers=num_workers, device=device, rank=rank, world=world, seed=seed, indices=indices,
                   shuffle=shuffle, drop_last=drop_last, os_cache=os_cache)


def val_loader(path: str, *, batch_size: int, res: int, num_workers: int, device: torch.device, rank: int,
               world: int, indices: np.ndarray, crop_ratio: float, mean: np.ndarray, std: np.ndarray,
               channels_last: bool, os_cache: bool) -> Loader:
    """Centre crop of ``crop_ratio`` x the short side, resized to ``res``, normalised; in order, the last partial
    batch kept (arguments checked by :func:`sdpnet.data.loaders.make_val_loader`)."""
    ops = [CenterCropRGBImageDecoder((res, res), ratio=crop_ratio)]
    return _loader(path, ops + _tail(device, mean, std, channels_last), batch_size=batch_size,
                   num_workers=num_workers, device=device, rank=rank, world=world, seed=0, indices=indices,
                   shuffle=False, drop_last=False, os_cache=os_cache)


def is_loader(loader: object) -> bool:
    """Whether ``loader`` is one of this engine's."""
    return isinstance(loader, Loader)


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
    decoders[0].output_size = (res, res)
