"""Time to a target test accuracy on Fashion-MNIST: the demo hybrid against the plain-CNN peer, in one run.

The demo runs as the README's main job does (``train_ffcv.py`` on the ``.beton`` files, its own
config); the peer is the 4-conv CNN of ``shared/peers/fashion_cnn.py`` with its own recipe
(data in memory, AdamW 3e-3, one-cycle, flips, label smoothing 0.1), run for ``--peer-epochs``, by
default as many as fit in the demo's training time (timed on 30 peer steps first): equal time.
Both evaluate on the 10,000 test images after every epoch. Times are training time (evaluation
excluded) and the process wall time, on the same machine one after the other.

    python bench/bench_demo.py [--target 0.92 0.94] [--peer-epochs N] [--out runs/bench-demo] [-- TRAIN_OPTIONS]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from sdpnet.data.sources import read_fashion_mnist  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"


def peer_net() -> nn.Module:
    """The plain CNN of shared/peers/fashion_cnn.py (468k parameters, 1 input channel)."""
    def block(i: int, o: int) -> list[nn.Module]:
        return [nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU()]
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64), *block(64, 64),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 49, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def one_cycle(net: nn.Module, opt: torch.optim.Optimizer, xtr: torch.Tensor, ytr: torch.Tensor, epochs: float,
              lr: float = 3e-3, bs: int = 128) -> Iterator[float]:
    """Train with the peer's recipe (one-cycle over ``epochs``, 20% warm-up, flips, label smoothing 0.1);
    yield the cumulative training seconds at the end of every epoch (and of a last partial one)."""
    steps_per_epoch = len(xtr) // bs
    total = int(epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=total, pct_start=0.2)
    train_time = 0.0
    for start in range(0, total, steps_per_epoch):
        net.train()
        t0, perm = time.perf_counter(), torch.randperm(len(xtr))
        for i in range(min(steps_per_epoch, total - start)):
            idx = perm[i * bs:(i + 1) * bs]
            x, y = xtr[idx], ytr[idx]
            x = torch.where((torch.rand(bs) < 0.5)[:, None, None, None], x.flip(3), x)
            loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        train_time += time.perf_counter() - t0
        yield train_time


def top1_accuracy(net: nn.Module, xte: torch.Tensor, yte: torch.Tensor) -> float:
    """Top-1 accuracy of ``net`` on the test images, in eval mode."""
    net.eval()
    with torch.no_grad():
        correct = sum((net(xte[i:i + 500]).argmax(1) == yte[i:i + 500]).sum().item() for i in range(0, len(xte), 500))
    return correct / len(xte)


def run_peer(epochs: int, targets: list[float], seconds: float) -> dict:
    """Train the peer with its own recipe for ``epochs`` (0: as many as fit in ``seconds``); per-epoch test
    accuracy and cumulative training time."""
    torch.manual_seed(0)
    tr, te = read_fashion_mnist(FMNIST, "train"), read_fashion_mnist(FMNIST, "val")
    xtr = torch.tensor(tr.images).unsqueeze(1).float().div(255)
    xte = torch.tensor(te.images).unsqueeze(1).float().div(255)
    ytr, yte = torch.tensor(tr.labels), torch.tensor(te.labels)
    m, s = xtr.mean(), xtr.std()
    xtr, xte = (xtr - m) / s, (xte - m) / s
    epochs = epochs or peer_epochs_in(seconds, xtr, ytr)
    torch.manual_seed(0)
    net = peer_net()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    curve, t_start = [], time.perf_counter()
    for train_time in one_cycle(net, opt, xtr, ytr, epochs):
        curve.append((train_time, top1_accuracy(net, xte, yte)))
        print(f"peer epoch {len(curve)}: top1 {curve[-1][1]:.4f} train {train_time:.0f}s", flush=True)
    params = sum(p.numel() for p in net.parameters())
    return summarize("plain CNN peer", params, curve, targets, time.perf_counter() - t_start)


def peer_epochs_in(seconds: float, xtr: torch.Tensor, ytr: torch.Tensor, steps: int = 30, bs: int = 128) -> int:
    """How many peer epochs fit in ``seconds`` of training, from ``steps`` timed steps on the training images."""
    net = peer_net().train()
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=0.05)
    for i in range(steps + 5):
        if i == 5:   # after oneDNN's first-call set-up
            t0 = time.perf_counter()
        idx = torch.randint(len(xtr), (bs,))
        loss = F.cross_entropy(net(xtr[idx]), ytr[idx], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    epoch_s = (time.perf_counter() - t0) / steps * (len(xtr) // bs)
    return max(1, round(seconds / epoch_s))


def run_demo(config: str, spec: str, targets: list[float], extra: list[str], out: str | None) -> dict:
    """Run train_ffcv.py on the demo config (run folder ``out``, else a temporary one); read its metrics back."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(out) if out else Path(tmp) / "run"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "train_ffcv.py"), "--spec", spec, "-C", config,
                        f"--logging.folder={run}", "--logging.progress=0", *extra], cwd=ROOT, check=True)
        wall = time.perf_counter() - t0
        lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        results = json.loads((run / "results.json").read_text())
    curve, train_time = [], 0.0
    for rec in lines:
        train_time += rec["epoch_time"]
        curve.append((train_time, max(rec["top1"], rec.get("ema_top1") or 0.0)))
    return summarize("sdpnet demo hybrid", results["params"], curve, targets, wall)


def summarize(name: str, params: int, curve: list[tuple[float, float]], targets: list[float],
              wall: float) -> dict:
    """Per target: (epoch, cumulative training seconds) of the first epoch that reaches it, or None."""
    hits = {target: next(((i + 1, t) for i, (t, acc) in enumerate(curve) if acc >= target), None)
            for target in targets}
    return {"model": name, "params": params, "hits": hits, "final_top1": curve[-1][1],
            "train_time": curve[-1][0], "wall": wall, "epochs": len(curve)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", type=float, nargs="+", default=[0.92, 0.94], help="test top-1 targets")
    ap.add_argument("--peer-epochs", type=int, default=0,
                    help="the peer's one-cycle schedule length (0: as many epochs as fit in the demo's training time)")
    ap.add_argument("--out", default=None, help="keep the demo's run folder here (default: a temporary folder)")
    ap.add_argument("--config", default="configs/fashion_mnist.yaml")
    ap.add_argument("--spec", default="specs/fashion_mnist.json")
    ap.add_argument("extra", nargs="*", help="extra train_ffcv.py options, e.g. --training.epochs=3")
    args = ap.parse_args()
    torch.set_num_threads(2)
    demo = run_demo(args.config, args.spec, args.target, args.extra, args.out)
    rows = [demo, run_peer(args.peer_epochs, args.target, demo["train_time"])]
    heads = " | ".join(f"time to {t:.0%} (train s)" for t in args.target)
    print(f"\n| model | params | epochs | {heads} | final top-1 | train s | wall s |")
    print("|---|---:|---:|" + "---:|" * len(args.target) + "---:|---:|---:|")
    for r in rows:
        cells = " | ".join(f"{hit[1]:.0f} (epoch {hit[0]})" if hit else "not reached" for hit in r["hits"].values())
        print(f"| {r['model']} | {r['params']:,} | {r['epochs']} | {cells} | {r['final_top1']:.4f} | "
              f"{r['train_time']:.0f} | {r['wall']:.0f} |")
    demo, peer = rows
    for target in args.target:
        if demo["hits"][target] and peer["hits"][target]:
            print(f"demo / peer time to {target:.0%}: {demo['hits'][target][1] / peer['hits'][target][1]:.2f}x")
    print(f"final top-1, demo - peer: {100 * (demo['final_top1'] - peer['final_top1']):+.2f} points "
          f"({demo['train_time']:.0f} s against {peer['train_time']:.0f} s of training)")


if __name__ == "__main__":
    main()
