"""``python -m sdpnet predict RUN IMAGE...``: the top-k classes of image files, with probabilities.

Each file goes through what a validation image of the run went through (:mod:`sdpnet.tools.images`): decoded
to RGB as the ``.beton`` writers decode, downscaled as the writer did, then FFCV's own centre crop, resize and
normalisation, so a raw-written ``.beton`` image and the same pixels in a PNG file give the model the same tensor.

    python -m sdpnet predict runs/fashion_mnist shoe.png shirt.jpg --topk 3
    python -m sdpnet predict model.safetensors photos/*.jpg --json predictions.json

A file that cannot be read gets one error line (on stderr) and the others are still classified; the exit
status is then 1.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import torch

from sdpnet.files import write_json
from sdpnet.tools.cli import UsageError, command_main
from sdpnet.tools.images import load_image
from sdpnet.tools.runs import add_source_args, open_trained, pick_device

__all__ = ["predict_files", "main"]


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
    add_source_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...; any mode)")
    p.add_argument("--topk", type=int, default=5, help="classes to show per image (default 5)")
    p.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    p.add_argument("--json", metavar="FILE", help="also write the predictions to this JSON file")


def run(args: argparse.Namespace) -> int:
    if args.topk < 1 or args.batch_size < 1:
        raise UsageError(f"--topk={args.topk} and --batch-size={args.batch_size} must be positive")
    device = pick_device(args.device)
    trained = open_trained(args.run, args.weights)
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


main = command_main("predict")
