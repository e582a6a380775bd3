"""Data: readers of raw datasets, the atomic .beton writer, .beton checks and reader, the train/val loaders.

Names are imported on first use (PEP 562): importing FFCV costs seconds of numba
compilation, which the writers' argument checks and error messages should not pay.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "make_train_loader": "loaders", "make_val_loader": "loaders", "set_train_resolution": "loaders",
    "resolve_engine": "loaders", "subset_indices": "pipeline", "shard_indices": "pipeline",
    "dataset_stats": "sidecar", "read_sidecar": "sidecar", "sidecar_path": "sidecar", "IMAGENET_MEAN": "sidecar",
    "IMAGENET_STD": "sidecar", "DataPrepError": "sources", "LoaderError": "pipeline", "BetonReader": "beton_reader",
    "check_beton": "betons", "check_same_classes": "betons", "BetonInfo": "betons", "DataFileError": "betons",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sdpnet.data' has no attribute '{name}'")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted(__all__)
