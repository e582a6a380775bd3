"""Attention and autocast on the CPU: what ``sdpnet.blocks.attention.attend`` and ``--training.amp=auto`` rest on.

1. Attention forward + backward at several (batch, heads, tokens, head_dim), fp32 and bf16: PyTorch's fused
   ``F.scaled_dot_product_attention`` against the written-out ``softmax(q k^T / sqrt(d)) v``; the ratio
   fused / written-out (> 1: the written-out form is faster). ``attend`` writes it out for bf16 on the CPU only.
2. A training step (forward, cross-entropy, backward, AdamW) of a spec at batch 128, 28 px, fp32 against bf16
   autocast (the demo's shape); the ratio bf16 / fp32 img/s. The CPU's AMX support is printed with it
   (``auto`` turns bf16 on where it is).

The two sides of each row alternate within each round; the medians over rounds are printed.

    python bench/bench_attention.py [--rounds 5] [--spec specs/fashion_mnist.json ...]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import sdpnet  # noqa: E402
from sdpnet.train.precision import native_bf16  # noqa: E402

SHAPES = [(128, 4, 49, 16), (32, 6, 197, 64), (8, 12, 197, 64), (4, 6, 785, 64)]
TRUNK = "CONV3(act=relu,d=32),CT3(d=32,norm=bn),CONV3(act=relu,d=64),CT3(d=64,norm=bn)-DOWN7(d=128)-GAP+MLP"


def written_out(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1) @ v


def seconds(fn: Callable[[], None], steps: int) -> float:
    """Seconds per call of ``fn`` over ``steps`` calls, after 2 warm-up calls."""
    for _ in range(2):
        fn()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t) / steps


def attention_rows(rounds: int, steps: int) -> list[str]:
    rows = []
    for b, h, n, d in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            q, k, v = (torch.randn(b, h, n, d, dtype=dtype, requires_grad=True) for _ in range(3))
            fused, plain = [], []
            for _ in range(rounds):
                fused.append(seconds(lambda: F.scaled_dot_product_attention(q, k, v).sum().backward(), steps))
                plain.append(seconds(lambda: written_out(q, k, v).sum().backward(), steps))
            f, p = statistics.median(fused) * 1e3, statistics.median(plain) * 1e3
            rows.append(f"| {b}x{h}x{n}x{d} | {str(dtype).split('.')[1]} | {f:.1f} | {p:.1f} | {f / p:.2f} |")
    return rows


def step_rows(specs: list[str], rounds: int, steps: int) -> list[str]:
    rows = []
    x = torch.randn(128, 3, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    for spec in specs:
        model = (sdpnet.build(spec) if spec.endswith(".json") else sdpnet.build(spec, num_classes=10, img_size=28))
        model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), 1e-3)

        def step(amp: bool) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        fp32, bf16 = [], []
        for _ in range(rounds):
            fp32.append(128 / seconds(lambda: step(False), steps))
            bf16.append(128 / seconds(lambda: step(True), steps))
        a, b = statistics.median(fp32), statistics.median(bf16)
        rows.append(f"| `{spec}` | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="timed calls per round and side")
    p.add_argument("--spec", nargs="+", default=["specs/fashion_mnist.json", TRUNK])
    a = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, AMX: {native_bf16('cpu')}")
    print("\n| q/k/v (B x heads x N x d) | dtype | fused ms | written-out ms | fused / written-out |")
    print("|---|---|---:|---:|---:|")
    print("\n".join(attention_rows(a.rounds, a.steps)))
    print("\n| spec (batch 128, 28 px, training step) | fp32 img/s | bf16 img/s | bf16 / fp32 |\n|---|---:|---:|---:|")
    print("\n".join(step_rows(a.spec, a.rounds, a.steps)))


if __name__ == "__main__":
    main()
