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
from sdpnet.data.writer import check_target, run_cli, write_beton

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
    mean, std = splits["train"][0].channel_stats()
    for split, (src, classes, kind) in splits.items():
        sidecar = {
            "num_classes": len(classes), "classes": classes,
            "class_to_idx": {c: i for i, c in enumerate(classes)},
            "mean": mean, "std": std, "stats_from": "all training pixels (0-255 scale)",
            "source": {"kind": kind, "path": os.path.abspath(data_dir), "split": split},
            "settings": {**config_to_dict()["cfg"], "write_mode": "raw", "resolution": 32},
        }
        meta = write_beton(src, targets[split], sidecar, write_mode="raw", num_workers=num_workers,
                           strict=True, labels=src.labels, max_image_bytes=32 * 32 * 3)
        print(f"wrote {meta['num_samples']} {split} images of {kind} to {targets[split]}")


if __name__ == "__main__":
    parse_config(description=__doc__.split("\n")[0])
    run_cli(main)
