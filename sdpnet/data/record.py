"""What a run keeps of its data (``data.json`` in the run folder): class names, normalisation, sources."""
from __future__ import annotations

from typing import Any

from sdpnet.data.sidecar import dataset_stats, read_sidecar

DATA_FILE = "data.json"   # in a run folder: class names and the validation normalisation (train_ffcv.py)


def data_record(train_path: str, val_path: str) -> dict[str, Any]:
    """What a run keeps of its data (``data.json``, written by train_ffcv.py): the class names, the validation
    loader's normalisation (0-255), the writer's downscale of the validation images, and both files' sources."""
    train, val = read_sidecar(train_path), read_sidecar(val_path)
    mean, std = dataset_stats(val_path)   # what make_val_loader normalises with
    return {"classes": val.get("classes") or train.get("classes"), "num_classes": val.get("num_classes"),
            "mean": mean.tolist(), "std": std.tolist(),
            "max_resolution": (val.get("settings") or {}).get("max_resolution") or None,
            "train": {"path": str(train_path), "num_samples": train.get("num_samples"), "source": train.get("source")},
            "val": {"path": str(val_path), "num_samples": val.get("num_samples"), "source": val.get("source")}}
