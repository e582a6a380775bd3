"""Screen hybrid designs on Fashion-MNIST: a short one-cycle run of each spec string, and the peer CNN.

Data in memory (grey images repeated to 3 channels, normalised), flips, label smoothing 0.1, AdamW
(weight decay 0.05 except norms, biases, tokens and position tables), one-cycle over ``--epochs``
(20% warm-up), batch 128, channels_last, the peer's recipe. One run per spec, one after the other;
the table gives test top-1 and training seconds. A quick screen of what learns per unit of time,
not the demo (``bench_demo.py`` runs that):

    python bench/bench_designs.py peer "CT3(d=32),CONV3(act=relu,d=64),CT3(d=128)+CLS2-POS-DWC3+MLP,ENC-LIN"
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import sdpnet  # noqa: E402
from bench_demo import FMNIST, one_cycle, peer_net, top1_accuracy  # noqa: E402
from sdpnet.data.sources import read_fashion_mnist  # noqa: E402
from sdpnet.train.optim import make_adamw  # noqa: E402


def load() -> tuple[torch.Tensor, ...]:
    """Train and test images (N, 3, 28, 28), normalised with the training mean and std, and labels."""
    tr, te = read_fashion_mnist(FMNIST, "train"), read_fashion_mnist(FMNIST, "val")
    xtr = torch.tensor(tr.images).unsqueeze(1).float().div(255)
    xte = torch.tensor(te.images).unsqueeze(1).float().div(255)
    m, s = xtr.mean(), xtr.std()

    def rgb(x: torch.Tensor) -> torch.Tensor:
        return ((x - m) / s).expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)

    return rgb(xtr), torch.tensor(tr.labels), rgb(xte), torch.tensor(te.labels)


def screen(name: str, data: tuple[torch.Tensor, ...], epochs: float, lr: float, dim: int) -> dict:
    """Train ``name`` (a spec string, or ``peer``) for ``epochs``; its test top-1 and training time."""
    xtr, ytr, xte, yte = data
    torch.manual_seed(0)
    if name == "peer":
        net = peer_net()
        net[0] = torch.nn.Conv2d(3, 32, 3, padding=1)
    else:
        net = sdpnet.build(name, dim=dim, num_classes=10, img_size=28)
    net = net.to(memory_format=torch.channels_last)
    opt = make_adamw(net, lr=lr, weight_decay=0.05)
    *_, train_s = one_cycle(net, opt, xtr, ytr, epochs, lr)
    top1 = top1_accuracy(net, xte, yte)
    return {"design": name, "params": sum(p.numel() for p in net.parameters()), "top1": top1,
            "train_s": train_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("designs", nargs="+", help="spec strings (quoted), or 'peer' for the plain CNN")
    ap.add_argument("--epochs", type=float, default=1.0, help="length of each one-cycle run")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    ap.add_argument("--dim", type=int, default=64, help="the specs' default width")
    args = ap.parse_args()
    data = load()
    rows = [screen(d, data, args.epochs, args.lr, args.dim) for d in tqdm(args.designs, desc="designs", unit="run")]
    print("\n| design | params | test top-1 | train s |\n|---|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['design']}` | {r['params']:,} | {r['top1']:.4f} | {r['train_s']:.0f} |")


if __name__ == "__main__":
    main()
