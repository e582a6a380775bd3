"""FFCV data: writers' building blocks (sources, atomic .beton writer) and the train/val loaders."""
from .loaders import (dataset_stats, make_train_loader, make_val_loader, set_train_resolution,
                      shard_indices, subset_indices)
from .sidecar import IMAGENET_MEAN, IMAGENET_STD, read_sidecar, sidecar_path
from .sources import DataPrepError

__all__ = ["make_train_loader", "make_val_loader", "set_train_resolution", "read_sidecar",
           "sidecar_path", "subset_indices", "shard_indices", "dataset_stats", "DataPrepError",
           "IMAGENET_MEAN", "IMAGENET_STD"]
