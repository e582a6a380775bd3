"""What both loader engines (FFCV's, :mod:`sdpnet.data.ffcv_loaders`; torch's, :mod:`sdpnet.data.torch_loader`)
share, so that they read the same samples in the same order and draw the same augmentation.

Sharding: each loader serves a fixed index list (all samples, or a seeded random ``subset`` of N). The training
order is a fresh permutation of that list every epoch (seed + epoch, identical on every rank); rank r takes the
r-th of ``world_size`` equal contiguous slices, dropping the remainder so that ranks run the same number of
batches. Validation shards are ``indices[r::world_size]``: disjoint and together covering every sample (counts
may differ by one, so keep collectives out of the validation loop and all-reduce the sums after it).

Replayable augmentation: the random generator of a batch's crops, flips and shifts is seeded from the loader seed
and the batch's sample indices (:func:`batch_seed`; a new permutation each epoch, so new draws).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["subset_indices", "shard_indices", "batch_seed", "normalisation_table", "rank_world", "LoaderError"]

_PRIME = 4294967291   # the largest prime below 2**32: numba's np.random.seed takes a uint32


class LoaderError(RuntimeError):
    """Reading or decoding a batch failed (in FFCV's thread or a DataLoader worker); raised in the training loop
    instead of a hang."""


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


def batch_seed(batch_indices: Sequence[int], seed: int) -> int:
    """The seed of a batch's augmentation draws: a hash of the loader seed and every sample index, in order.

    The FFCV engine seeds numba's generator with it (``_seed_numba``, the same arithmetic compiled); the torch
    engine a ``np.random.RandomState``. Every intermediate stays below 2**52 (no int64 overflow in numba).
    """
    h = seed % _PRIME
    for i in batch_indices:
        h = (h * 1000003 + int(i)) % _PRIME
    return h


def normalisation_table(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(256, 3) float32: pixel value v of channel c -> (v - mean[c]) / std[c], computed in float64 and rounded once
    (FFCV's NormalizeImage lookup table: both engines normalise with exactly these values)."""
    table = (np.arange(256)[:, None] - np.asarray(mean, np.float64)[None, :]) / np.asarray(std, np.float64)[None, :]
    return table.astype(np.float32)


def rank_world(distributed: bool) -> tuple[int, int]:
    """(rank, world size) of this process: (0, 1) unless ``distributed`` (which needs the process group)."""
    if not distributed:
        return 0, 1
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        raise RuntimeError("distributed=True needs torch.distributed.init_process_group() first")
    return torch.distributed.get_rank(), torch.distributed.get_world_size()
