"""Model benchmark: CPU training-step throughput against timm, and speed + peak memory of SdP-Net models.

1. Our ``specs/zoo/vit_small_patch16_224.json`` against timm's ``vit_small_patch16_224``: a training step
   (forward, cross-entropy, backward; no optimizer step) at batch 32, 224 px, fp32 on the CPU. The two models
   alternate within each round, in ABBA order across rounds so drift in machine load hits both alike. The
   figure to read (target >= 1.0) is the median over rounds of each round's ratio (ours / timm): the two
   runs of a round are adjacent in time, so the pair shares the machine's state. The ratio of the two
   models' median img/s and of their best rounds (the least disturbed by other processes) are printed too.
2. ``specs/xxs.json`` and the design card's example ``P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP`` at ``dim=96``:
   img/s of the same training step, and peak memory. Each runs in a fresh subprocess. Peak memory is the
   process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``, reset through
   ``/proc/self/clear_refs`` once the model and batch exist) minus the resident set at that moment: the
   memory the steps themselves add (activations, gradients, autograd buffers). Python-level tracers
   (tracemalloc) miss torch's allocations, and sampling RSS from a thread misses short peaks.

Run from the repository root (CPU timings are noisy; the load average is printed with the table)::

    python bench/bench_model.py --rounds 10 --steps 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
CARD_EXAMPLE = "P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP"


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    """One forward + backward; gradients are freed afterwards (set to None), as ``zero_grad`` does."""
    F.cross_entropy(model(x), y).backward()
    model.zero_grad(set_to_none=True)


def images_per_second(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, x, y)
    return steps * x.shape[0] / (time.perf_counter() - start)


def batch(size: int, img: int, classes: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(size, 3, img, img, generator=g), torch.randint(0, classes, (size,), generator=g)


def compare_with_timm(rounds: int, steps: int, size: int, img: int) -> dict[str, float]:
    """Median img/s of timm's vit_small_patch16_224 and ours, alternating; the ratios; our parameter count."""
    import timm

    import sdpnet

    torch.manual_seed(0)
    models = {"timm": timm.create_model("vit_small_patch16_224", pretrained=False).train(),
              "ours": sdpnet.build(REPO / "specs/zoo/vit_small_patch16_224.json").train()}
    x, y = batch(size, img)
    for model in models.values():  # warm-up: first-call allocations and kernel selection
        train_step(model, x, y)
    rates: dict[str, list[float]] = {name: [] for name in models}
    for r in tqdm(range(rounds), desc="vit_small: timm vs ours", unit="round"):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for name in order:
            rates[name].append(images_per_second(models[name], x, y, steps))
    result = {name: statistics.median(v) for name, v in rates.items()}
    result["ratio"] = statistics.median(o / t for o, t in zip(rates["ours"], rates["timm"]))
    result["ratio_of_medians"] = result["ours"] / result["timm"]
    result["ratio_best"] = max(rates["ours"]) / max(rates["timm"])  # best rounds: least disturbed by other load
    result["params"] = sum(p.numel() for p in models["ours"].parameters())
    return result


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure_one(spec: str, overrides: dict, steps: int, size: int, img: int) -> dict[str, float]:
    """img/s and peak step memory of one spec (run in a fresh process: see the module docstring)."""
    import sdpnet
    from sdpnet.builder import count_params

    torch.manual_seed(0)
    model = sdpnet.build(spec, **overrides).train()
    x, y = batch(size, img, model.num_classes)
    base = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    train_step(model, x, y)  # warm-up (counted in the peak: it allocates what every step needs)
    rate = images_per_second(model, x, y, steps)
    peak = _rss_kib("VmHWM") - base
    return {"params": count_params(model), "img_s": rate, "peak_mib": peak / 1024, "base_mib": base / 1024}


def run_isolated(spec: str, overrides: dict, steps: int, size: int, img: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--one", spec, "--overrides", json.dumps(overrides),
           "--steps", str(steps), "--batch", str(size), "--img-size", str(img)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if out.returncode:
        raise RuntimeError(f"measuring {spec} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="alternation rounds of timm vs ours")
    parser.add_argument("--steps", type=int, default=2, help="timed training steps per model per round")
    parser.add_argument("--batch", type=int, default=32, help="batch size")
    parser.add_argument("--img-size", type=int, default=224, help="image side in pixels")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one spec, print JSON
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, json.loads(args.overrides), args.steps, args.batch, args.img_size)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, batch {args.batch}, "
          f"{args.img_size} px, forward + backward; start: {load()}")
    vs = compare_with_timm(args.rounds, args.steps, args.batch, args.img_size)
    rows = [("vit_small_patch16_224 (timm)", vs["params"], vs["timm"], None),
            ("vit_small_patch16_224 (ours)", vs["params"], vs["ours"], None)]
    for label, spec, overrides in (("specs/xxs.json", str(REPO / "specs/xxs.json"), {}),
                                   (f"{CARD_EXAMPLE} dim=96", CARD_EXAMPLE, {"dim": 96})):
        m = run_isolated(spec, overrides, args.steps, args.batch, args.img_size)
        rows.append((label, m["params"], m["img_s"], m["peak_mib"]))
    print(f"\n{'model':<46} {'params':>12} {'img/s':>8} {'peak MiB':>9}")
    for label, params, rate, peak in rows:
        p = f"{params:,}"
        mem = f"{peak:.0f}" if peak is not None else "-"
        print(f"{label:<46} {p:>12} {rate:>8.2f} {mem:>9}")
    print(f"\nours / timm img/s over {args.rounds} rounds x {args.steps} steps: median of per-round ratios "
          f"{vs['ratio']:.3f} (target >= 1.0); ratio of medians {vs['ratio_of_medians']:.3f}, "
          f"of best rounds {vs['ratio_best']:.3f}; end: {load()}")


if __name__ == "__main__":
    main()
