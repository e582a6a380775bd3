"""Write Fashion-MNIST (IDX files, .gz or raw) to FFCV: ``<write_dir>/train.beton`` and ``val.beton``.

    python data_prep/write_fashion_mnist.py --cfg.write_dir=data/fashion_mnist

Images are stored raw at 28x28 with the grey level replicated to 3 channels (FFCV
has no grayscale field), so pixels read back exactly. Each sidecar records the
class names, counts and the per-channel mean/std of the training pixels (0-255).
Bad input: one line and exit status 2, nothing written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sdpnet.train.config import option, options_dict, parse_options
from sdpnet.data.sources import FASHION_MNIST_CLASSES, read_fashion_mnist
from sdpnet.data.writer import check_target, run_cli, write_raw_splits


@dataclass(frozen=True, kw_only=True)
class Cfg:
    """Fashion-MNIST -> train.beton, val.beton"""
    data_dir: str = option("/usr/share/datasets/fashion-mnist", "folder with the four IDX files")
    write_dir: str = option(help="output folder for train.beton and val.beton")
    num_workers: int = option(min(8, os.cpu_count() or 1), "writer processes", ge=1)
    overwrite: bool = option(False, "replace existing output files")


@dataclass(frozen=True)
class Options:
    cfg: Cfg


def main(c: Cfg) -> None:
    targets = {split: check_target(Path(c.write_dir) / f"{split}.beton", c.overwrite) for split in ("train", "val")}
    splits = {split: read_fashion_mnist(c.data_dir, split) for split in targets}  # validate both first
    write_raw_splits(splits, targets, classes=FASHION_MNIST_CLASSES, kind="fashion-mnist", data_dir=c.data_dir,
                     resolution=28, settings=options_dict(Options(c))["cfg"], num_workers=c.num_workers)


if __name__ == "__main__":
    cfg = parse_options(Options, description=__doc__.split("\n")[0]).cfg
    run_cli(lambda: main(cfg))
