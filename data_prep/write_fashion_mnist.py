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
from sdpnet.data.writer import check_target, run_cli, write_raw_splits

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
    write_raw_splits(splits, targets, classes=FASHION_MNIST_CLASSES, kind="fashion-mnist", data_dir=data_dir,
                     resolution=28, settings=config_to_dict()["cfg"], num_workers=num_workers)


if __name__ == "__main__":
    parse_config(description=__doc__.split("\n")[0])
    run_cli(main)
