"""``python -m sdpnet predict RUN IMAGE...``: the top-k classes of image files, with probabilities.

Each file goes through what a validation image of the run went through: decoded to RGB as the ``.beton``
writers decode (:func:`sdpnet.data.sources.load_rgb`: grey, palette, RGBA, CMYK... to RGB), downscaled as the
writer did (its ``max_resolution``, if any), then FFCV's own centre crop and resize (``crop_ratio`` of the
short side, area interpolation, to ``res``) and its normalisation table (the run's mean/std). A raw-written
``.beton`` image and the same pixels in a PNG file thus give the model the same tensor.

    python -m sdpnet predict runs/fashion_mnist shoe.png shirt.jpg --topk 3
    python -m sdpnet predict model.safetensors photos/*.jpg --json predictions.json

A file that cannot be read gets one error line (on stderr) and the others are still classified; the exit
status is then 1.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from sdpnet.data.ffcv_import import import_ffcv

__all__ = ["crop", "normalise", "prepare", "load_image", "predict_files", "main"]


def crop(rgb: np.ndarray, preprocess: dict[str, Any]) -> np.ndarray:
    """An HxWx3 uint8 image -> the (res, res, 3) uint8 crop the run's validation loader would make of it:
    the writer's downscale (``max_resolution``), then FFCV's centre crop and area resize."""
    import_ffcv()
    from ffcv.fields.rgb_image import get_center_crop, resizer
    from ffcv.libffcv import resize_crop

    res = int(preprocess["res"])
    img = np.ascontiguousarray(resizer(rgb, preprocess.get("max_resolution") or None))
    h, w = img.shape[:2]
    i, j, ch, cw = get_center_crop(h, w, None, float(preprocess["crop_ratio"]))
    if ch < 1 or cw < 1:
        raise ValueError(f"image of {w}x{h} px is too small for a centre crop of ratio {preprocess['crop_ratio']}")
    out = np.empty((res, res, 3), np.uint8)
    resize_crop(img, i, i + ch, j, j + cw, out)
    return out


def normalise(pixels: np.ndarray, preprocess: dict[str, Any]) -> torch.Tensor:
    """A (res, res, 3) uint8 crop -> (3, res, res) float32 with FFCV's own normalisation table (run's mean/std)."""
    import_ffcv()
    from ffcv.transforms import NormalizeImage

    table = NormalizeImage(np.asarray(preprocess["mean"], np.float64), np.asarray(preprocess["std"], np.float64),
                           np.float32).lookup_table   # (256, 3): the exact float32 values FFCV writes
    return torch.from_numpy(np.ascontiguousarray(table[pixels, np.arange(3)])).permute(2, 0, 1)


def prepare(rgb: np.ndarray, preprocess: dict[str, Any]) -> torch.Tensor:
    """An HxWx3 uint8 image -> the (3, res, res) float32 tensor the run's validation loader would make of it."""
    return normalise(crop(rgb, preprocess), preprocess)


def load_image(path: str | Path, preprocess: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
    """The model input (3, res, res) for an image file and the (res, res, 3) uint8 crop it was made of; raises
    ValueError with the reason when the file is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    from sdpnet.data.sources import load_rgb

    p = Path(path)
    if not p.is_file():
        raise ValueError("no such file" if not p.exists() else "not a file")
    try:
        rgb = load_rgb(str(p))
    except UnidentifiedImageError:
        raise ValueError("not an image PIL can read (unknown format or damaged header)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode the image ({type(e).__name__}: {e})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"decoded to an array of shape {rgb.shape} and type {rgb.dtype}, not an RGB image")
    pixels = crop(rgb, preprocess)
    return normalise(pixels, preprocess), pixels


@torch.no_grad()
def predict_files(trained, paths: Sequence[str], *, topk: int, device: torch.device,
                  batch_size: int = 64) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Classify ``paths``; returns (one record per readable file, (path, reason) per unreadable one)."""
    pre = trained.preprocess
    cl = pre.get("channels_last", True)
    model = trained.model.to(device, memory_format=torch.channels_last if cl else torch.preserve_format).eval()
    good, bad = [], []
    for p in paths:
        try:
            good.append((p, load_image(p, pre)[0]))
        except ValueError as e:
            bad.append((p, str(e)))
    k = min(topk, trained.num_classes)
    out = []
    for start in range(0, len(good), batch_size):
        chunk = good[start:start + batch_size]
        x = torch.stack([t for _, t in chunk]).to(device)
        x = x.contiguous(memory_format=torch.channels_last) if cl else x
        probs = model(x).float().softmax(-1).cpu()
        top = probs.topk(k, dim=-1)
        for (p, _), vals, idx in zip(chunk, top.values, top.indices):
            out.append({"file": p, "top": [{"index": int(i), "class": trained.class_name(int(i)), "prob": float(v)}
                                           for v, i in zip(vals, idx)]})
    return out, bad


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sdpnet.tools.runs import add_source_args

    add_source_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...; any mode)")
    p.add_argument("--topk", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--json", metavar="FILE", help="also write the predictions to this JSON file")


def run(args: argparse.Namespace) -> int:
    from sdpnet.tools.runs import RunError, open_trained, pick_device
    from sdpnet.files import write_json

    try:
        if args.topk < 1 or args.batch_size < 1:
            raise RunError(f"--topk={args.topk} and --batch-size={args.batch_size} must be positive")
        device = pick_device(args.device)
        trained = open_trained(args.run, args.weights)
    except RunError as e:
        print(f"predict: error: {e}", file=sys.stderr)
        return 2
    results, failed = predict_files(trained, args.images, topk=args.topk, device=device,
                                    batch_size=args.batch_size)
    for p, why in failed:
        print(f"predict: error: {p}: {why}", file=sys.stderr)
    for r in results:
        print(f"{r['file']}: " + ", ".join(f"{t['class']} {100 * t['prob']:.1f}%" for t in r["top"]))
    if args.json:
        write_json(args.json, {"source": trained.source, "weights": trained.weights, "predictions": results,
                               "failed": [{"file": p, "error": why} for p, why in failed]})
    if failed:
        print(f"predict: {len(failed)} of {len(args.images)} file(s) could not be classified", file=sys.stderr)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sdpnet predict", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
