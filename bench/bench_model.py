"""Model benchmark: CPU training-step throughput against timm, and speed + peak memory of SdP-Net models.

1. Our zoo specs against timm's models of the same name: ``vit_small_patch16_224``, ``convnext_tiny``,
   ``caformer_s18``, ``mixer_s16_224``, ``resnet18``, ``resnet50``, ``efficientnet_b0``,
   ``mobilenetv3_large_100``, ``coatnet_nano_rw_224``, ``vit_small_patch16_rope_224`` and ``poolformerv2_s12``
   (``--families`` picks some). A training step (forward,
   cross-entropy, backward; no optimizer step) at batch 32, 224 px, fp32 on the CPU. The two models of a
   family alternate within each round, in ABBA order across rounds so drift in machine load hits both alike.
   The figure to read (target >= 1.0) is the median over rounds of each round's ratio (ours / timm): the two
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
    python bench/bench_model.py --rounds 3 --steps 1 --families convnext_tiny caformer_s18 mixer_s16_224 --no-sdpnet
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
FAMILIES = ("vit_small_patch16_224", "convnext_tiny", "caformer_s18", "mixer_s16_224",  # timm name = zoo spec name
            "resnet18", "resnet50", "efficientnet_b0", "mobilenetv3_large_100", "coatnet_nano_rw_224",
            "vit_small_patch16_rope_224", "poolformerv2_s12")


def train_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, amp: bool = False) -> None:
    """One forward (under bf16 autocast if ``amp``) + backward; gradients are freed afterwards (set to None), as
    ``zero_grad`` does."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    model.zero_grad(set_to_none=True)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a timer read before this measures launches)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int,
                      amp: bool = False) -> float:
    synchronize(x.device)
    start = time.perf_counter()
    for _ in range(steps):
        train_step(model, x, y, amp)
    synchronize(x.device)
    return steps * x.shape[0] / (time.perf_counter() - start)


def batch(size: int, img: int, classes: int = 1000,
          device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(size, 3, img, img, generator=g), torch.randint(0, classes, (size,), generator=g)
    return x.to(device), y.to(device)


def compare_with_timm(name: str, rounds: int, steps: int, size: int, img: int, device: str | torch.device = "cpu",
                      amp: bool = False) -> dict[str, float]:
    """Median img/s of timm's model ``name`` and our ``specs/zoo/<name>.json``, alternating; the ratios; the
    parameter count (equal: tests/test_families.py, tests/test_families_conv.py, tests/test_zoo.py). Both run
    eagerly on ``device``, under bf16 autocast if ``amp`` (bench/gpu_proof.py races them on a GPU)."""
    import timm

    import sdpnet

    torch.manual_seed(0)
    try:  # timm's models with a fixed input size (ViT, Mixer) are made for ``img``
        ref = timm.create_model(name, pretrained=False, img_size=img)
    except TypeError:  # convolutional ones take any size
        ref = timm.create_model(name, pretrained=False)
    models = {"timm": ref.train(), "ours": sdpnet.build(REPO / "specs" / "zoo" / f"{name}.json", img_size=img).train()}
    models = {key: model.to(device) for key, model in models.items()}
    x, y = batch(size, img, device=device)
    for model in models.values():  # warm-up: first-call allocations and kernel selection
        train_step(model, x, y, amp)
    rates: dict[str, list[float]] = {key: [] for key in models}
    for r in tqdm(range(rounds), desc=f"{name}: timm vs ours", unit="round"):
        order = list(models) if r % 2 == 0 else list(reversed(models))
        for key in order:
            rates[key].append(images_per_second(models[key], x, y, steps, amp))
    result = {key: statistics.median(v) for key, v in rates.items()}
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
    from sdpnet.models.builder import count_params

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
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES,
                        help="the zoo models to race against timm's")
    parser.add_argument("--no-sdpnet", action="store_true", help="skip the SdP-Net speed and memory rows")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one spec, print JSON
    parser.add_argument("--overrides", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, json.loads(args.overrides), args.steps, args.batch, args.img_size)))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, batch {args.batch}, "
          f"{args.img_size} px, forward + backward; start: {load()}")
    rows: list[tuple[str, int, float, float | None]] = []
    races = {}
    for name in args.families:
        vs = races[name] = compare_with_timm(name, args.rounds, args.steps, args.batch, args.img_size)
        rows += [(f"{name} (timm)", vs["params"], vs["timm"], None), (f"{name} (ours)", vs["params"], vs["ours"], None)]
    if not args.no_sdpnet:
        for label, spec, overrides in (("specs/xxs.json", str(REPO / "specs/xxs.json"), {}),
                                       (f"{CARD_EXAMPLE} dim=96", CARD_EXAMPLE, {"dim": 96})):
            m = run_isolated(spec, overrides, args.steps, args.batch, args.img_size)
            rows.append((label, m["params"], m["img_s"], m["peak_mib"]))
    print(f"\n{'model':<46} {'params':>12} {'img/s':>8} {'peak MiB':>9}")
    for label, params, rate, peak in rows:
        p = f"{params:,}"
        mem = f"{peak:.0f}" if peak is not None else "-"
        print(f"{label:<46} {p:>12} {rate:>8.2f} {mem:>9}")
    print(f"\nours / timm img/s over {args.rounds} rounds x {args.steps} steps (target >= 1.0):")
    print(f"{'model':<28} {'median of per-round ratios':>27} {'ratio of medians':>17} {'of best rounds':>15}")
    for name, vs in races.items():
        print(f"{name:<28} {vs['ratio']:>27.3f} {vs['ratio_of_medians']:>17.3f} {vs['ratio_best']:>15.3f}")
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
