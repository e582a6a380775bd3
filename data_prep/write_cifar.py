"""Write CIFAR-10 or CIFAR-100 (the python-pickle folders) to ``<write_dir>/train.beton`` and ``val.beton``.

    python data_prep/write_cifar.py --cfg.data_dir=cifar-10-batches-py --cfg.write_dir=data/cifar10

``data_dir`` is the extracted ``cifar-10-batches-py`` or ``cifar-100-python`` folder
(detected from its meta file). Images are stored raw at 32x32, so pixels read back
exactly; the sidecars record the class names, counts and the per-channel mean/std of
the training pixels (0-255). The pickles are read with an unpickler that only admits
arrays and plain containers.
"""
from __future__ import annotations

import os
from pathlib import Path

from fastargs import Param, Section
from fastargs.decorators import param, section
from fastargs.validation import And, InRange, OneOf

from sdpnet.config import Bool, config_to_dict, parse_config
from sdpnet.data.sources import read_cifar
from sdpnet.data.writer import check_target, run_cli, write_raw_splits

Section("cfg", "CIFAR -> train.beton, val.beton").params(
    data_dir=Param(str, "cifar-10-batches-py or cifar-100-python folder", required=True),
    write_dir=Param(str, "output folder for train.beton and val.beton", required=True),
    label_type=Param(OneOf(["fine", "coarse"]), "CIFAR-100 only: 100 fine or 20 coarse classes", default="fine"),
    num_workers=Param(And(int, InRange(1)), "writer processes", default=min(8, os.cpu_count() or 1)),
    overwrite=Param(Bool(), "replace existing output files", default=False),
)


@section("cfg")
@param("data_dir")
@param("write_dir")
@param("label_type")
@param("num_workers")
@param("overwrite")
def main(data_dir: str, write_dir: str, label_type: str, num_workers: int, overwrite: bool) -> None:
    targets = {split: check_target(Path(write_dir) / f"{split}.beton", overwrite)
               for split in ("train", "val")}
    splits = {split: read_cifar(data_dir, split, label_type) for split in targets}  # validate both first
    _, classes, kind = splits["train"]
    write_raw_splits({split: src for split, (src, _, _) in splits.items()}, targets, classes=classes, kind=kind,
                     data_dir=data_dir, resolution=32, settings=config_to_dict()["cfg"], num_workers=num_workers)


if __name__ == "__main__":
    parse_config(description=__doc__.split("\n")[0])
    run_cli(main)
