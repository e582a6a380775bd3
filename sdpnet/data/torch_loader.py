"""The torch engine: .beton files read with numpy (:mod:`sdpnet.data.beton_reader`), decoded and cropped in torch
DataLoader workers; no FFCV. The same batches as the FFCV engine (:mod:`sdpnet.data.ffcv_loaders`):

- the same samples in the same order: the sharded orders of :mod:`sdpnet.data.pipeline`, batches as FFCV cuts
  them (``len`` from epoch 0's order, ``drop_last`` for training, the last partial batch kept for validation);
- the same crops, flips and shifts: FFCV's arithmetic (:mod:`sdpnet.data.crops`), drawn from a RandomState
  seeded per batch like FFCV's numba generator (:func:`~sdpnet.data.pipeline.batch_seed`). A batch's draws are
  its own, whatever the worker count, so every epoch replays (FFCV's only with one thread and the random order;
  with the sequential order, which FFCV leaves unseeded, the epoch joins the seed: new draws each epoch);
- the same pixels: raw images bit-identical to FFCV's (OpenCV's INTER_AREA resize, as libffcv's), JPEG images
  within the two decoders' difference (:mod:`sdpnet.data.beton_reader`), each pixel normalised with FFCV's own
  float32 table (:func:`~sdpnet.data.pipeline.normalisation_table`), on the device after a uint8 copy, so the
  floats are FFCV's too;
- the same batch format: float32 (B, 3, res, res) in channels_last (or contiguous), int64 labels (B,), on the
  device; ``set_train_resolution``, ``next_epoch`` and ``next_traversal_order()`` as on FFCV's Loader.

Each DataLoader item is one whole batch (its sample indices and output side, chosen in the main process when the
epoch starts), so a resolution change takes effect at the next epoch with persistent workers. ``num_workers``
are processes here (threads in FFCV); 0 decodes in the calling process. The file is mapped read-only in each
worker (the OS page cache serves every process: FFCV's ``os_cache`` has no counterpart here). A sample that fails
to decode raises :class:`~sdpnet.data.pipeline.LoaderError` naming it, in the consuming loop.
"""
from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from . import crops
from .beton_reader import BetonReader
from .pipeline import LoaderError, batch_seed, normalisation_table, shard_indices

__all__ = ["TorchLoader", "train_loader", "val_loader", "set_train_resolution", "is_loader"]


class _Failed:
    """What a worker returns instead of a batch it could not make: the reason, one line (a worker's exception
    reaches the main process as a multi-line traceback)."""

    def __init__(self, reason: str):
        self.reason = reason


class _Batches(Dataset):
    """Item ``(indices, res, seed)``: those samples decoded, cropped and resized to ``res``, flipped and shifted
    (draws seeded with ``seed``), as uint8 (B, res, res, 3) with their int64 labels (B,). Training crops at random,
    validation at the centre."""

    def __init__(self, reader: BetonReader, *, train: bool, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip: bool = False, translate: int = 0, crop_ratio: float = 1.0):
        self.reader, self.train = reader, train
        self.scale, self.ratio = np.array(scale, np.float64), np.array(ratio, np.float64)
        self.flip, self.translate, self.crop_ratio = flip, translate, crop_ratio

    def __getitem__(self, work: tuple[np.ndarray, int, int]) -> tuple[torch.Tensor, torch.Tensor] | _Failed:
        indices, res, seed = work
        rng = np.random.RandomState(seed) if self.train else None
        out = np.empty((len(indices), res, res, 3), np.uint8)
        for k, i in enumerate(indices):
            try:
                image = self.reader.image(int(i))
                h, w = image.shape[:2]
                box = (crops.random_crop(rng, h, w, self.scale, self.ratio) if self.train
                       else crops.center_crop(h, w, self.crop_ratio))
                out[k] = crops.resize(image, box, res)
            except Exception as e:   # one line naming the sample, not a worker traceback
                return _Failed(f"sample {int(i)}: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
        if self.flip:
            crops.flip(out, rng)
        if self.translate > 0:
            crops.translate(out, rng, self.translate)
        return torch.from_numpy(out), torch.from_numpy(self.reader.labels[indices])


class _WorkOrders(Sampler):
    """The current epoch's batches, as the loader laid them out (in place, in ``work``) when the epoch started.

    It holds the list, not the loader: a reference cycle would leave the DataLoader's workers to the garbage
    collector, whose late shutdown waits 5 s for each of them."""

    def __init__(self, work: list[tuple[np.ndarray, int, int]]):
        self.work = work

    def __iter__(self) -> Iterator[tuple[np.ndarray, int, int]]:
        return iter(list(self.work))


def _worker_init(_: int) -> None:
    if crops.cv2 is not None:
        crops.cv2.setNumThreads(1)   # one process per core already: OpenCV's own threads would oversubscribe


class TorchLoader:
    """A .beton loader on a torch DataLoader with FFCV's Loader interface (see the module notes).

    Attributes:
        next_epoch: the epoch the next ``iter()`` serves (its order and draws); set it to replay an epoch.
        res: the output side (training: change it with :func:`set_train_resolution`).
    """

    def __init__(self, reader: BetonReader, batches: _Batches, *, batch_size: int, res: int, num_workers: int,
                 device: torch.device, rank: int, world: int, seed: int, indices: np.ndarray, shuffle: bool,
                 drop_last: bool, mean: np.ndarray, std: np.ndarray, channels_last: bool):
        self.fname, self.reader, self.batches = reader.path, reader, batches
        self.batch_size, self.res, self.device = batch_size, res, device
        self.rank, self.world, self.seed, self.indices, self.shuffle = rank, world, seed, indices, shuffle
        self.drop_last, self.channels_last = drop_last, channels_last
        self.next_epoch = 0
        self._ordered = len(self.next_traversal_order())   # FFCV's len: epoch 0's order
        self._work: list[tuple[np.ndarray, int, int]] = []
        self._loader = DataLoader(batches, batch_size=None, sampler=_WorkOrders(self._work), num_workers=num_workers,
                                  pin_memory=device.type == "cuda", persistent_workers=num_workers > 0,
                                  worker_init_fn=_worker_init if num_workers > 0 else None)
        table = torch.from_numpy(normalisation_table(mean, std))   # (256, 3)
        self._table = table.view(-1).to(device)
        self._channel = torch.arange(3, dtype=torch.int32, device=device)

    def next_traversal_order(self) -> np.ndarray:
        """The sample indices this rank reads in epoch ``next_epoch``, in order (before cutting into batches)."""
        return shard_indices(self.indices, rank=self.rank, world_size=self.world, epoch=self.next_epoch,
                             seed=self.seed, shuffle=self.shuffle)

    def __len__(self) -> int:
        return self._ordered // self.batch_size if self.drop_last else math.ceil(self._ordered / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, b = self.next_epoch, self.batch_size
        order = self.next_traversal_order()[:len(self) * b]
        self.next_epoch += 1
        # FFCV's seed for the random order; the sequential order repeats its batches, so the epoch joins the seed
        seed = self.seed if self.shuffle else self.seed + epoch
        self._work[:] = [(order[i:i + b], self.res, batch_seed(order[i:i + b], seed)) for i in range(0, len(order), b)]
        return self._epoch(iter(self._loader))

    def _epoch(self, batches: Iterator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            try:
                item = next(batches)
            except StopIteration:
                return
            except Exception as e:   # a worker that died (killed, out of memory) or failed outside a sample
                raise LoaderError(f"the data loader failed reading '{self.fname}' ({type(e).__name__}: "
                                  f"{str(e).strip().splitlines()[0] if str(e).strip() else 'no message'})") from e
            if isinstance(item, _Failed):
                raise LoaderError(f"the data loader failed reading '{self.fname}' ({item.reason})")
            yield self._finish(*item)

    def _finish(self, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, H, W, 3) -> normalised float32 (B, 3, H, W) on the device: the uint8 batch is copied (4x less
        than float32), then each value v of channel c becomes table[3 v + c], FFCV's lookup (its GPU kernel's)."""
        x = pixels.to(self.device, non_blocking=True)
        y = labels.to(self.device, non_blocking=True)
        index = x.to(torch.int32).mul_(3).add_(self._channel)   # (B, H, W, 3)
        x = self._table.index_select(0, index.view(-1)).view(index.shape).permute(0, 3, 1, 2)
        return (x if self.channels_last else x.contiguous()), y


def train_loader(path: str, *, batch_size: int, res: int, num_workers: int, device: torch.device, rank: int,
                 world: int, seed: int, indices: np.ndarray, scale: tuple[float, float], ratio: tuple[float, float],
                 flip: bool, translate: int, mean: np.ndarray, std: np.ndarray, channels_last: bool,
                 drop_last: bool, shuffle: bool, **_ffcv_only) -> TorchLoader:
    """RandomResizedCrop to ``res``, optional flip and translate, normalise (arguments checked by the caller,
    :func:`sdpnet.data.loaders.make_train_loader`; ``os_cache`` is FFCV's and ignored)."""
    reader = BetonReader(path)
    batches = _Batches(reader, train=True, scale=scale, ratio=ratio, flip=flip, translate=translate)
    return TorchLoader(reader, batches, batch_size=batch_size, res=res, num_workers=num_workers, device=device,
                       rank=rank, world=world, seed=seed, indices=indices, shuffle=shuffle, drop_last=drop_last,
                       mean=mean, std=std, channels_last=channels_last)


def val_loader(path: str, *, batch_size: int, res: int, num_workers: int, device: torch.device, rank: int,
               world: int, indices: np.ndarray, crop_ratio: float, mean: np.ndarray, std: np.ndarray,
               channels_last: bool, **_ffcv_only) -> TorchLoader:
    """Centre crop of ``crop_ratio`` x the short side, resized to ``res``, normalised; in order, the last partial
    batch kept (arguments checked by :func:`sdpnet.data.loaders.make_val_loader`)."""
    reader = BetonReader(path)
    batches = _Batches(reader, train=False, crop_ratio=crop_ratio)
    return TorchLoader(reader, batches, batch_size=batch_size, res=res, num_workers=num_workers, device=device,
                       rank=rank, world=world, seed=0, indices=indices, shuffle=False, drop_last=False,
                       mean=mean, std=std, channels_last=channels_last)


def is_loader(loader: object) -> bool:
    """Whether ``loader`` is one of this engine's."""
    return isinstance(loader, TorchLoader)


def set_train_resolution(loader: TorchLoader, res: int) -> None:
    """Crop to ``res`` x ``res`` from the next ``iter(loader)`` (next epoch)."""
    if not loader.batches.train:
        raise ValueError("this loader has no RandomResizedCrop decoder (is it a validation loader?)")
    loader.res = res
