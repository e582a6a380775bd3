"""Checkpoints: atomic writes and every RNG state needed for an exact resume (``weights_only`` loads:
:func:`sdpnet.models.weights.load_checkpoint`, re-exported here)."""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpnet.files import atomic_file
from sdpnet.models.weights import CheckpointError, load_checkpoint   # models read what training writes

__all__ = ["rng_state", "set_rng_state", "save_checkpoint", "load_checkpoint", "CheckpointError"]


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states, as tensors and ints (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states captured by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"].tolist()), p["gauss"]))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (:func:`sdpnet.files.atomic_file`): a temporary file in the same
    folder, fsynced, then a rename; streamed, not held in memory twice.

    A failed write (disk full, permission) raises the ``OSError`` itself, not torch's wrapper of it;
    the previous file at ``path`` is then untouched and no temporary file is left.
    """
    with atomic_file(path) as f:
        try:
            torch.save(state, f)
        except RuntimeError as e:   # torch's zip writer wraps the write error of the file object
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise
