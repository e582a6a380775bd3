"""The JSON sidecar written beside every .beton: classes, counts, statistics, source, settings.

``train.beton`` has ``train.beton.json``. Keys written by our writers:
``num_samples``, ``num_classes``, ``classes`` (index -> name), ``class_to_idx``,
``counts`` (name -> written samples), ``mean``/``std`` (per-channel, 0-255 scale),
``stats_from``, ``source``, ``settings``, ``skipped`` (files left out, with reasons).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = ["sidecar_path", "read_sidecar", "dataset_stats", "IMAGENET_MEAN", "IMAGENET_STD"]

# ImageNet's per-channel statistics on the 0-255 scale (as ffcv-imagenet uses them).
IMAGENET_MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
IMAGENET_STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]


def sidecar_path(beton_path: str | Path) -> Path:
    """Where the sidecar of ``beton_path`` lives: the same name plus ``.json``."""
    p = Path(beton_path)
    return p.with_name(p.name + ".json")


def read_sidecar(beton_path: str | Path) -> dict[str, Any]:
    """The sidecar of ``beton_path`` as a dict (includes num_classes, classes, mean, std, counts)."""
    p = sidecar_path(beton_path)
    try:
        return json.loads(p.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no sidecar '{p}' beside '{beton_path}'; it is written by "
                                f"data_prep/write_*.py together with the .beton") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"sidecar '{p}' is not valid JSON ({e}); write the .beton again") from None


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
