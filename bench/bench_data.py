"""FFCV train loader and our torch engine vs torchvision ImageFolder + DataLoader, on generated photo-like JPEGs.

    python bench/bench_data.py               # 5,000 images, 3 alternating rounds
    python bench/bench_data.py --quick       # 600 images, 2 rounds (a smoke run)
    python bench/bench_data.py --n 2000 --rounds 3 --cache-dir /tmp/bench_data

Generates ImageNet-like JPEGs (about 400x350: smooth colour fields, shapes, blur and
mild noise, quality 90) into --cache-dir once, writes two .beton files with
data_prep's writer — ffcv-imagenet's defaults (proportion, 500 px, 50% JPEG q90) and
raw pixels at 256 px — then times one epoch of each loader in turn, round after
round, so that load from other processes hits all of them alike. Each .beton is read by
both engines of sdpnet.data (FFCV's, and the torch engine: numpy + a torch DataLoader,
no FFCV, worker processes instead of threads). Every loader does
RandomResizedCrop to --res, a horizontal flip and normalisation to float32 with
--workers workers; torchvision decodes with PIL. Prints markdown tables: loader
images/s (median over rounds) with the ratio to torchvision and, for the torch
engine, to FFCV on the same file (the engine ratio), and writer images/s
with the file size against the source JPEGs. The first FFCV epoch (numba
compilation) is run before timing.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))   # run as a script without installing sdpnet

from sdpnet.data.sources import scan_image_folder  # noqa: E402
from sdpnet.data.writer import write_beton  # noqa: E402

ENGINES = {"ffcv": "FFCV", "torch": "torch engine"}   # sdpnet.data's loader engines, as the table names them


def photo(seed: int) -> Image.Image:
    """A photo-like image: smooth colour field, a few shapes, blur, mild noise; about 400x350."""
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(300, 501)), int(rng.integers(250, 451))
    field = rng.integers(0, 256, (int(rng.integers(2, 5)), int(rng.integers(2, 5)), 3), dtype=np.uint8)
    im = Image.fromarray(field).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(20, h // 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(3)
        if kind == 0:
            draw.ellipse([x0, y0, x1, y1], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x1, y1], fill=colour)
        else:
            draw.polygon([tuple(int(v) for v in rng.integers(0, (w, h))) for _ in range(5)], fill=colour)
    im = im.filter(ImageFilter.GaussianBlur(1.2))
    arr = np.asarray(im, np.float32) + rng.normal(0, 5, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _save(job: tuple[int, str]) -> None:
    seed, path = job
    photo(seed).save(path, quality=90)


def make_folder(root: Path, n: int, classes: int = 10, workers: int = 2) -> Path:
    """n photo-like JPEGs in ``classes`` class folders; reused if already complete."""
    jobs = [(i, str(root / f"c{i % classes:02d}" / f"{i:06d}.jpg")) for i in range(n)]
    todo = [j for j in jobs if not os.path.exists(j[1])]
    for c in range(classes):
        (root / f"c{c:02d}").mkdir(parents=True, exist_ok=True)
    if todo:
        print(f"generating {len(todo)} JPEGs in {root}", file=sys.stderr)
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_save, todo, chunksize=32))
    return root


def write(root: Path, out: Path, workers: int, **settings) -> tuple[float, int]:
    """Write ``root`` to ``out`` with ``settings``; returns (images/s, bytes)."""
    src = scan_image_folder(str(root))
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    write_beton(src, out, {"classes": src.classes, "num_classes": len(src.classes)}, num_workers=workers,
                labels=[l for _, l in src.samples], max_image_bytes=3 * 500 * 500, **settings)
    return len(src) / (time.perf_counter() - t0), out.stat().st_size


def torchvision_loader(root: Path, res: int, batch_size: int, workers: int):
    import torch
    from torchvision import datasets, transforms
    tf = transforms.Compose([transforms.RandomResizedCrop(res), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return torch.utils.data.DataLoader(datasets.ImageFolder(str(root), tf), batch_size=batch_size,
                                       shuffle=True, num_workers=workers, drop_last=True,
                                       persistent_workers=True)


def epoch(loader) -> float:
    """Images per second over one full epoch."""
    n, t0 = 0, time.perf_counter()
    for x, _ in loader:
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=5000, help="number of generated JPEGs (default 5000)")
    ap.add_argument("--quick", action="store_true", help="600 images, 2 rounds")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed epochs per loader")
    ap.add_argument("--res", type=int, default=160, help="RandomResizedCrop output side")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2, help="loader workers (threads for FFCV)")
    ap.add_argument("--cache-dir", default="/tmp/sdpnet_bench_data")
    args = ap.parse_args()
    n, rounds = (600, 2) if args.quick else (args.n, args.rounds)
    cache = Path(args.cache_dir)
    root = make_folder(cache / f"jpeg_{n}", n, workers=args.workers)
    src_bytes = sum(f.stat().st_size for f in root.rglob("*.jpg"))

    settings = {"proportion 500px q90 (ffcv-imagenet)": dict(write_mode="proportion", max_resolution=500,
                                                             jpeg_quality=90, compress_probability=0.5),
                "raw 256px": dict(write_mode="raw", max_resolution=256)}
    betons, writer_rows = {}, []
    for name, s in settings.items():
        out = cache / f"{name.split()[0]}_{s['max_resolution']}_{n}.beton"
        ips, size = write(root, out, args.workers, **s)
        betons[name] = out
        writer_rows.append(f"| {name} | {ips:.0f} | {size / 2**20:.1f} MiB | {src_bytes / 2**20:.1f} MiB "
                           f"| {size / src_bytes:.2f}x |")

    import torch
    from sdpnet.data import make_train_loader
    torch.set_num_threads(1)
    loaders = {f"{label}, {name}": make_train_loader(str(path), batch_size=args.batch_size, res=args.res,
                                                     num_workers=args.workers, engine=engine)
               for name, path in betons.items() for engine, label in ENGINES.items()}
    loaders["torchvision ImageFolder + DataLoader (PIL)"] = torchvision_loader(root, args.res, args.batch_size,
                                                                               args.workers)
    for name, loader in loaders.items():   # warm-up: numba compilation, worker start, page cache
        print(f"warm-up: {name}: {epoch(loader):.0f} img/s", file=sys.stderr)
    speeds: dict[str, list[float]] = {name: [] for name in loaders}
    for r in range(rounds):
        for name, loader in loaders.items():
            speeds[name].append(epoch(loader))
            print(f"round {r + 1}: {name}: {speeds[name][-1]:.0f} img/s", file=sys.stderr)

    tv = statistics.median(speeds["torchvision ImageFolder + DataLoader (PIL)"])
    load = os.getloadavg()
    print(f"\n{n} generated JPEGs (~400x350), RandomResizedCrop {args.res} + flip + normalise, batch "
          f"{args.batch_size}, {args.workers} workers, CPU only, {os.cpu_count()} cores, load average "
          f"{load[0]:.1f} / {load[1]:.1f}; median of {rounds} alternating epochs\n")
    print("| Loader | images/s | vs torchvision | torch engine vs FFCV |\n|---|---:|---:|---:|")
    for name, s in speeds.items():
        med = statistics.median(s)
        label, setting = name.split(", ", 1) if name.split(", ")[0] in ENGINES.values() else (name, "")
        vs_ffcv = f"{med / statistics.median(speeds[f'FFCV, {setting}']):.2f}x" if label != "FFCV" and setting else ""
        print(f"| {name} | {med:.0f} | {med / tv:.2f}x | {vs_ffcv} |")
    print("\n| Writer setting | images/s | .beton size | source JPEGs | size ratio |\n|---|---:|---:|---:|---:|")
    print("\n".join(writer_rows))


if __name__ == "__main__":
    main()
