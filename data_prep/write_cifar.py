"""Write CIFAR-10 or CIFAR-100 (the python-pickle folders) to ``<write_dir>/train.beton`` and ``val.beton``.

    python data_prep/write_cifar.py --cfg.data_dir=cifar-10-batches-py --cfg.write_dir=data/cifar10

``data_dir`` is the extracted ``cifar-10-batches-py`` or ``cifar-100-python`` folder
(detected from its meta file). Images are stored raw at 32x32, so pixels read back
exactly; the sidecars record the class names, counts and the per-channel mean/std of
the training pixels (0-255). The pickles are read with an unpickler that only admits
arrays and plain containers. Bad input: one line and exit status 2, nothing written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sdpnet.train.config import option, options_dict, parse_options
from sdpnet.data.sources import read_cifar
from sdpnet.data.writer import check_target, run_cli, write_raw_splits


@dataclass(frozen=True, kw_only=True)
class Cfg:
    """CIFAR -> train.beton, val.beton"""
    data_dir: str = option(help="cifar-10-batches-py or cifar-100-python folder")
    write_dir: str = option(help="output folder for train.beton and val.beton")
    label_type: str = option("fine", "CIFAR-100 only: 100 fine or 20 coarse classes", choices=("fine", "coarse"))
    num_workers: int = option(min(8, os.cpu_count() or 1), "writer processes", ge=1)
    overwrite: bool = option(False, "replace existing output files")


@dataclass(frozen=True)
class Options:
    cfg: Cfg


def main(c: Cfg) -> None:
    targets = {split: check_target(Path(c.write_dir) / f"{split}.beton", c.overwrite) for split in ("train", "val")}
    splits = {split: read_cifar(c.data_dir, split, c.label_type) for split in targets}  # validate both first
    _, classes, kind = splits["train"]
    write_raw_splits({split: src for split, (src, _, _) in splits.items()}, targets, classes=classes, kind=kind,
                     data_dir=c.data_dir, resolution=32, settings=options_dict(Options(c))["cfg"],
                     num_workers=c.num_workers)


if __name__ == "__main__":
    cfg = parse_options(Options, description=__doc__.split("\n")[0]).cfg
    run_cli(lambda: main(cfg))
