"""Checkpoints: atomic writes, ``weights_only`` loads, and every RNG state needed for an exact resume."""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sdpnet.files import temp_path

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


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back; the message names the file and why."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, fsynced, then a rename.

    A failed write (disk full, permission) raises the ``OSError`` itself, not torch's wrapper of it;
    the previous file at ``path`` is then untouched and no temporary file is left.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError as e:   # torch's zip writer wraps the write error of the file object
                if isinstance(e.__context__, OSError):
                    raise e.__context__ from None
                raise
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain types only).

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for one that is
    truncated, damaged or not a checkpoint.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint '{path}'")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:   # torch raises RuntimeError, UnpicklingError, EOFError, ... for damaged files
        first = str(e).strip().split("\n")[0][:200]
        raise CheckpointError(f"'{path}' cannot be read: it is truncated or damaged ({type(e).__name__}: "
                              f"{first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' holds a {type(state).__name__}, not a checkpoint")
    return state
