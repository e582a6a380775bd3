"""Write Fashion-MNIST (IDX files, .gz or raw) to FFCV: ``<write_dir>/train.beton`` and ``val.beton``.

    python data_prep/write_fashion_mnist.py --cfg.write_dir=data/fashion_mnist

Images are stored raw at 28x28 with the grey level replicated to 3 channels (FFCV
has no grayscale field), so pixels read back exactly. Each sidecar records the
class names, counts and the per-channel mean/std of the training pixels (0-255).
"""
from __future__ import annotations

import os
from pathlib import Path

from fastargs import Param, Section
from fastargs.decorators import param, section
from fastargs.validation import And, InRange

from sdpnet.config import Bool, config_to_dict, parse_config
from sdpnet.data.sources import FASHION_MNIST_CLASSES, read_fashion_mnist
from sdpnet.data.writer import check_target, run_cli, write_beton

Section("cfg", "Fashion-MNIST -> train.beton, val.beton").params(
    data_dir=Param(str, "folder with the four IDX files", default="/usr/share/datasets/fashion-mnist"),
    write_dir=Param(str, "output folder for train.beton and val.beton", required=True),
    num_workers=Param(And(int, InRange(1)), "writer processes", default=min(8, os.cpu_count() or 1)),
    overwrite=Param(Bool(), "replace existing output files", default=False),
)


@section("cfg")
@param("data_dir")
@param("write_dir")
@param("num_workers")
@param("overwrite")
def main(data_dir: str, write_dir: str, num_workers: int, overwrite: bool) -> None:
    targets = {split: check_target(Path(write_dir) / f"{split}.beton", overwrite)
               for split in ("train", "val")}
    splits = {split: read_fashion_mnist(data_dir, split) for split in targets}  # validate both first
    mean, std = splits["train"].channel_stats()
    for split, src in splits.items():
        sidecar = {
            "num_classes": len(FASHION_MNIST_CLASSES), "classes": FASHION_MNIST_CLASSES,
            "class_to_idx": {c: i for i, c in enumerate(FASHION_MNIST_CLASSES)},
            "mean": mean, "std": std, "stats_from": "all training pixels (0-255 scale)",
            "source": {"kind": "fashion-mnist", "path": os.path.abspath(data_dir), "split": split},
            "settings": {**config_to_dict()["cfg"], "write_mode": "raw", "resolution": 28},
        }
        meta = write_beton(src, targets[split], sidecar, write_mode="raw", num_workers=num_workers,
                           strict=True, labels=src.labels, max_image_bytes=28 * 28 * 3)
        print(f"wrote {meta['num_samples']} {split} images to {targets[split]}")


if __name__ == "__main__":
    parse_config(description=__doc__.split("\n")[0])
    run_cli(main)
