"""Write an ImageFolder tree (ImageNet's train/ or val/, one folder per class) to an FFCV .beton.

    python data_prep/write_imagenet.py --cfg.data_dir=/data/imagenet/train \\
        --cfg.write_path=/data/imagenet/train_500_0.50_90.beton

Fields: ``image`` (RGBImageField) and ``label`` (IntField, the class folder's index in
sorted order, as torchvision's ImageFolder). Defaults are ffcv-imagenet's published
ones (proportion mode, 500 px, 50% JPEG at quality 90); ``--cfg.write_mode=raw
--cfg.max_resolution=256`` loads several times faster on few CPU cores at the cost
of a larger file (see bench/bench_data.py). A sidecar ``<write_path>.json`` records
the classes, counts, channel statistics, source and settings. Files that cannot be
decoded are skipped and listed (``--cfg.strict=1`` fails instead). Images in nested
sub-folders of a class belong to it (as torchvision's ImageFolder); 16-bit and float grey
images are scaled to 8 bits (:func:`sdpnet.data.sources.to_rgb`). Bad input: one line and
exit status 2, nothing written.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np

from sdpnet.train.config import ConfigError, option, options_dict, parse_options
from sdpnet.data.sources import DataPrepError, image_stats, scan_image_folder
from sdpnet.data.writer import check_target, run_cli, write_beton


@dataclass(frozen=True, kw_only=True)
class Cfg:
    """ImageFolder -> .beton"""
    data_dir: str = option(help="ImageFolder root: one sub-folder of images per class (nested sub-folders too)")
    write_path: str = option(help="output .beton path (a sidecar <path>.json is written beside it)")
    write_mode: str = option("proportion", "raw pixels, JPEG, or a random mix", choices=("raw", "jpg", "proportion"))
    max_resolution: int = option(500, "longest side after resizing (0 keeps the size)", ge=0)
    jpeg_quality: int = option(90, "JPEG quality for compressed images", ge=1, le=100)
    compress_probability: float = option(0.5, "share of images stored as JPEG in proportion mode", ge=0, le=1)
    num_workers: int = option(min(16, os.cpu_count() or 1), "writer processes", ge=1)
    subset: int = option(-1, "write a seeded random subset of this many images (-1: all)", ge=-1)
    strict: bool = option(False, "fail on the first undecodable file instead of skipping it")
    overwrite: bool = option(False, "replace an existing output file")
    stats_images: int = option(1000, "images sampled for the channel mean/std", ge=1)

    def __post_init__(self) -> None:
        if self.subset == 0:
            raise ConfigError("--cfg.subset=0: give a positive number of images, or -1 for all")


@dataclass(frozen=True)
class Options:
    cfg: Cfg


def main(c: Cfg) -> None:
    target = check_target(c.write_path, c.overwrite)
    source = scan_image_folder(c.data_dir)
    if source.bad and c.strict:
        path, why = source.bad[0]
        raise DataPrepError(f"'{path}' is not a readable image ({why}); {len(source.bad)} such "
                            f"file(s) under '{c.data_dir}'. With --cfg.strict=0 they are skipped and listed")
    if source.bad:
        print(f"skipping {len(source.bad)} unreadable file(s):", file=sys.stderr)
        for path, why in source.bad:
            print(f"  {path}: {why}", file=sys.stderr)
    if not len(source):
        raise DataPrepError(f"no readable image under '{c.data_dir}' ({len(source.bad)} unreadable)")
    if 0 < c.subset < len(source):
        keep = np.sort(np.random.default_rng(0).choice(len(source), c.subset, replace=False))
        source = source.subset(keep.tolist())

    mean, std, n_stats = image_stats([p for p, _ in source.samples], c.stats_images)
    fit = [min(1.0, c.max_resolution / max(w, h)) if c.max_resolution else 1.0 for w, h in source.sizes]
    max_bytes = max(3 * (int(w * f) + 1) * (int(h * f) + 1) for (w, h), f in zip(source.sizes, fit))

    sidecar = {
        "num_classes": len(source.classes), "classes": source.classes,
        "class_to_idx": {name: i for i, name in enumerate(source.classes)},
        "mean": mean, "std": std, "stats_from": f"{n_stats} random source images (0-255 scale)",
        "source": {"kind": "imagefolder", "path": os.path.abspath(c.data_dir),
                   "images_found": len(source) + len(source.bad)},
        "settings": options_dict(Options(c))["cfg"],
        "skipped": [{"path": p, "error": why} for p, why in source.bad],
    }
    t0 = time.perf_counter()
    meta = write_beton(source, target, sidecar, write_mode=c.write_mode, max_resolution=c.max_resolution,
                       jpeg_quality=c.jpeg_quality, compress_probability=c.compress_probability,
                       num_workers=c.num_workers, strict=c.strict, labels=[lab for _, lab in source.samples],
                       max_image_bytes=max_bytes, describe=lambda i: source.samples[i][0])
    dt = time.perf_counter() - t0
    print(f"wrote {meta['num_samples']} images of {meta['num_classes']} classes to {target} "
          f"({target.stat().st_size / 2**20:.1f} MiB, {meta['num_samples'] / dt:.0f} images/s); "
          f"skipped {len(meta['skipped'])}")


if __name__ == "__main__":
    cfg = parse_options(Options, description=__doc__.split("\n")[0]).cfg
    run_cli(lambda: main(cfg))
