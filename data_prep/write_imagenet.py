"""Write an ImageFolder tree (ImageNet's train/ or val/, one folder per class) to an FFCV .beton.

    python data_prep/write_imagenet.py --cfg.data_dir=/data/imagenet/train \\
        --cfg.write_path=/data/imagenet/train_500_0.50_90.beton

Fields: ``image`` (RGBImageField) and ``label`` (IntField, the class folder's index in
sorted order, as torchvision's ImageFolder). Defaults are ffcv-imagenet's published
ones (proportion mode, 500 px, 50% JPEG at quality 90); ``--cfg.write_mode=raw
--cfg.max_resolution=256`` loads several times faster on few CPU cores at the cost
of a larger file (see bench/bench_data.py). A sidecar ``<write_path>.json`` records
the classes, counts, channel statistics, source and settings. Files that cannot be
decoded are skipped and listed (``--cfg.strict=1`` fails instead).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np
from fastargs import Param, Section
from fastargs.decorators import param, section
from fastargs.validation import And, InRange, OneOf

from sdpnet.config import Bool, config_to_dict, parse_config
from sdpnet.data.sources import DataPrepError, image_stats, scan_image_folder
from sdpnet.data.writer import check_target, run_cli, write_beton

Section("cfg", "ImageFolder -> .beton").params(
    data_dir=Param(str, "ImageFolder root: one sub-folder of images per class", required=True),
    write_path=Param(str, "output .beton path (a sidecar <path>.json is written beside it)", required=True),
    write_mode=Param(OneOf(["raw", "jpg", "proportion"]), "raw pixels, JPEG, or a random mix", default="proportion"),
    max_resolution=Param(And(int, InRange(0)), "longest side after resizing (0 keeps the size)", default=500),
    jpeg_quality=Param(And(int, InRange(1, 100)), "JPEG quality for compressed images", default=90),
    compress_probability=Param(And(float, InRange(0, 1)), "share of images stored as JPEG in proportion mode", default=0.5),
    num_workers=Param(And(int, InRange(1)), "writer processes", default=min(16, os.cpu_count() or 1)),
    subset=Param(int, "write a seeded random subset of this many images (-1: all)", default=-1),
    strict=Param(Bool(), "fail on the first undecodable file instead of skipping it", default=False),
    overwrite=Param(Bool(), "replace an existing output file", default=False),
    stats_images=Param(And(int, InRange(1)), "images sampled for the channel mean/std", default=1000),
)


@section("cfg")
@param("data_dir")
@param("write_path")
@param("write_mode")
@param("max_resolution")
@param("jpeg_quality")
@param("compress_probability")
@param("num_workers")
@param("subset")
@param("strict")
@param("overwrite")
@param("stats_images")
def main(data_dir: str, write_path: str, write_mode: str, max_resolution: int, jpeg_quality: int,
         compress_probability: float, num_workers: int, subset: int, strict: bool, overwrite: bool,
         stats_images: int) -> None:
    target = check_target(write_path, overwrite)
    source = scan_image_folder(data_dir)
    if source.bad and strict:
        path, why = source.bad[0]
        raise DataPrepError(f"'{path}' is not a readable image ({why}); {len(source.bad)} such "
                            f"file(s) under '{data_dir}'. With --cfg.strict=0 they are skipped and listed")
    if source.bad:
        print(f"skipping {len(source.bad)} unreadable file(s):", file=sys.stderr)
        for path, why in source.bad:
            print(f"  {path}: {why}", file=sys.stderr)
    if not len(source):
        raise DataPrepError(f"no readable image under '{data_dir}' ({len(source.bad)} unreadable)")
    if 0 < subset < len(source):
        keep = np.sort(np.random.default_rng(0).choice(len(source), subset, replace=False))
        source = source.subset(keep.tolist())
    elif subset == 0 or subset < -1:
        raise DataPrepError(f"--cfg.subset={subset}: give a positive number of images, or -1 for all")

    mean, std, n_stats = image_stats([p for p, _ in source.samples], stats_images)
    fit = [min(1.0, max_resolution / max(w, h)) if max_resolution else 1.0 for w, h in source.sizes]
    max_bytes = max(3 * (int(w * f) + 1) * (int(h * f) + 1) for (w, h), f in zip(source.sizes, fit))

    sidecar = {
        "num_classes": len(source.classes), "classes": source.classes,
        "class_to_idx": {c: i for i, c in enumerate(source.classes)},
        "mean": mean, "std": std, "stats_from": f"{n_stats} random source images (0-255 scale)",
        "source": {"kind": "imagefolder", "path": os.path.abspath(data_dir),
                   "images_found": len(source) + len(source.bad)},
        "settings": config_to_dict()["cfg"],
        "skipped": [{"path": p, "error": why} for p, why in source.bad],
    }
    t0 = time.perf_counter()
    meta = write_beton(source, target, sidecar, write_mode=write_mode, max_resolution=max_resolution,
                       jpeg_quality=jpeg_quality, compress_probability=compress_probability,
                       num_workers=num_workers, strict=strict, labels=[l for _, l in source.samples],
                       max_image_bytes=max_bytes, describe=lambda i: source.samples[i][0])
    dt = time.perf_counter() - t0
    print(f"wrote {meta['num_samples']} images of {meta['num_classes']} classes to {target} "
          f"({target.stat().st_size / 2**20:.1f} MiB, {meta['num_samples'] / dt:.0f} images/s); "
          f"skipped {len(meta['skipped'])}")


if __name__ == "__main__":
    parse_config(description=__doc__.split("\n")[0])
    run_cli(main)
