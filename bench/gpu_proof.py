"""GPU proof: sdpnet_xl's training speed, MFU and memory, the FFCV loader's headroom, and ViT-S against timm.

One script, sized to run in under 8 minutes on one GPU (H100 class), in three parts; each part that fails leaves
a row saying why and the others still run:

(a) ``specs/xl.json`` (sdpnet_xl, 102M parameters) at 192 px, trained as ``train_ffcv.py`` trains it: the trainer's
    own step (:func:`sdpnet.train.loop.train_epoch`: bf16 autocast, fused AdamW, drop-path and dropout on), the model
    compiled in place and in channels_last, fed from memory (one batch already on the device, every step). img/s
    over ``--steps`` steps after a warm-up; MFU = 3 x forward FLOPs per image (FlopCounterMode on the model's
    ``forward``, as trained; the backward counted as twice the forward) x img/s / the device's peak dense bf16
    FLOP/s (:data:`PEAK_BF16`, by device name; n/a on an unknown device or the CPU); peak memory
    (``torch.cuda.max_memory_allocated``; on the CPU the process's peak resident set).
(b) A ``.beton`` of synthetic photo-like JPEGs (``--images`` of them, sides 256-320 px, quality 90) written by our
    writer (:func:`sdpnet.data.writer.write_beton`), read by the training loader (``--engine``, FFCV by default:
    RandomResizedCrop to 192 px, flip, normalise, to the device in channels_last): the loader alone (img/s of an
    epoch), then the same model and step fed by it against fed from memory (memory, loader, memory: the ratio is
    to the mean of the two memory runs). Loader-fed / memory-fed near 1.0 means the loader keeps up; loader alone /
    memory-fed is its headroom.
(c) ViT-S/16 (``specs/zoo/vit_small_patch16_224.json``) against timm's ``vit_small_patch16_224``: the training step
    of ``bench/bench_model.py`` (its code: same batch, rounds alternating ABBA, median of per-round ratios), eager,
    bf16 autocast on the GPU.

``--tiny`` runs the same code paths at a tiny size (the test's CPU mode, tests/test_gpu_proof.py): sdpnet_xl's
architecture at width 32, 56 px, batch 8; 64 JPEGs of 48-64 px; ViT-S at 32 px, batch 2. ``--compile auto``
compiles on CUDA only (on the CPU inductor's C++ build takes minutes); the table says which.

    python bench/gpu_proof.py --device cuda --json runs/gpu_proof.json
    python bench/gpu_proof.py --tiny --device cpu --json /tmp/gpu_proof.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))   # bench_model, beside this file
import bench_model  # noqa: E402

import sdpnet  # noqa: E402
from sdpnet.data.loaders import make_train_loader, resolve_engine  # noqa: E402
from sdpnet.data.sidecar import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from sdpnet.train.cost import model_flops, peak_memory  # noqa: E402
from sdpnet.train.loop import train_epoch  # noqa: E402
from sdpnet.train.optim import make_adamw  # noqa: E402

# Peak dense bf16 tensor FLOP/s by device name (NVIDIA's data sheets; the sparse figures are twice these). Matched
# in order, as substrings of torch.cuda.get_device_name(): the NVL and PCIe parts before the plain names.
PEAK_BF16 = (("H100 NVL", 835e12), ("H100 PCIe", 756e12), ("H100", 989e12), ("H200 NVL", 835e12),
             ("H200", 989e12), ("B200", 2250e12), ("A100", 312e12), ("L40S", 362e12), ("A10G", 70e12))
VIT = "vit_small_patch16_224"


class Sizes:
    """What each part runs: the full size (a GPU) or ``--tiny`` (the CPU test)."""

    def __init__(self, tiny: bool, batch: int | None, steps: int | None, images: int | None):
        self.tiny = tiny
        self.xl = dict(dim=32, heads=2) if tiny else {}   # sdpnet_xl's architecture, its width cut for the CPU
        self.res = 56 if tiny else 192
        self.batch = batch or (8 if tiny else 128)
        self.warmup = 2 if tiny else 10
        self.steps = steps or (3 if tiny else 50)
        self.images = images or (64 if tiny else 10240)
        self.sides = (48, 64) if tiny else (256, 320)
        self.vit = dict(rounds=2, steps=1, size=2, img=32) if tiny else dict(rounds=6, steps=10, size=128, img=224)


def peak_for(name: str) -> float | None:
    """Peak dense bf16 FLOP/s of the device called ``name`` (:data:`PEAK_BF16`; None when it is not listed)."""
    return next((peak for key, peak in PEAK_BF16 if key in name), None)


def peak_flops(device: torch.device) -> tuple[str, float | None]:
    """The device's name and its peak dense bf16 FLOP/s (None: unknown, or the CPU)."""
    if device.type != "cuda":
        return "cpu", None
    name = torch.cuda.get_device_name(device)
    return name, peak_for(name)


def forward_flops(res: int, **overrides: Any) -> tuple[int, int]:
    """FLOPs of one image through sdpnet_xl's training ``forward`` and through the full network as
    ``python -m sdpnet summary`` counts it (on the meta device: nothing is computed)."""
    with torch.device("meta"):
        model = sdpnet.build("sdpnet_xl", img_size=res, **overrides)
        with FlopCounterMode(display=False) as counter:
            model.train()(torch.zeros(1, 3, res, res))
    return counter.get_total_flops(), model_flops(model, res)


class FromMemory:
    """``steps`` batches that are all one batch already on the device: a loader that costs nothing."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int):
        self.x, self.y, self.steps = x, y, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return ((self.x, self.y) for _ in range(self.steps))


class XL:
    """sdpnet_xl on the device as the trainer sets it up (channels_last, compiled in place, fused AdamW), trained
    by the trainer's own step; built and warmed up once, shared by parts (a) and (b)."""

    def __init__(self, sizes: Sizes, device: torch.device, compile_: bool, amp: bool):
        self.device, self.amp = device, amp
        torch.manual_seed(0)
        model = sdpnet.build("sdpnet_xl", img_size=sizes.res, **sizes.xl)
        self.model = model.to(device, memory_format=torch.channels_last).train()
        if compile_:
            self.model.compile()
        self.opt = make_adamw(self.model, lr=1e-4, weight_decay=0.05)
        self.loss = torch.nn.CrossEntropyLoss()
        x, y = bench_model.batch(sizes.batch, sizes.res, self.model.num_classes, device)
        self.x, self.y = x.contiguous(memory_format=torch.channels_last), y
        self.step = 0
        self.train(FromMemory(self.x, self.y, sizes.warmup))   # compiles forward and backward

    def train(self, loader: Any) -> float:
        """img/s of one pass of the trainer's step over ``loader`` (host-synced once, at the end)."""
        bench_model.synchronize(self.device)
        start = time.perf_counter()
        stats, self.step = train_epoch(self.model, loader, self.opt, None, lambda x: x, lambda x, y: (x, y),
                                       self.loss, lambda step: 1e-4, self.step, epoch=0, amp=self.amp, grad_clip=0.0,
                                       log_interval=max(len(loader), 1), bar=tqdm(disable=True), dump=None)
        return stats["images"] / (time.perf_counter() - start)

    def from_memory(self, steps: int) -> float:
        return self.train(FromMemory(self.x, self.y, steps))


class SyntheticJPEGs:
    """Photo-like images (smooth colour fields plus noise, random sides within ``sides``) for the JPEG writer."""

    def __init__(self, n: int, sides: tuple[int, int], classes: int = 1000):
        self.n, self.sides, self.classes = n, sides, classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        rng = np.random.default_rng(i)
        h, w = (int(v) for v in rng.integers(self.sides[0], self.sides[1] + 1, 2))
        # Pillow, not torch: the writer's worker processes are forked, and OpenMP does not survive a fork
        coarse = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        img = np.asarray(coarse, np.float32) + rng.normal(0, 6, (h, w, 3))
        return np.clip(img, 0, 255).astype(np.uint8), i % self.classes


def write_jpegs(folder: Path, sizes: Sizes) -> Path:
    from sdpnet.data.writer import write_beton   # the writer needs FFCV: a failure is part (b)'s row, not a crash

    path = folder / "synthetic.beton"
    write_beton(SyntheticJPEGs(sizes.images, sizes.sides), path,
                {"num_classes": 1000, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}, write_mode="jpg",
                jpeg_quality=90, num_workers=min(os.cpu_count() or 1, 16), max_image_bytes=sizes.sides[1] ** 2 * 3)
    return path


def part_a(ctx: dict, sizes: Sizes, device: torch.device, compile_: bool, amp: bool) -> list[dict]:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx["xl"] = xl = XL(sizes, device, compile_, amp)
    rate = xl.from_memory(sizes.steps)
    fwd, summary = forward_flops(sizes.res, **sizes.xl)
    name, peak = peak_flops(device)
    mem = peak_memory(device)
    ctx["xl_img_s"] = rate
    return [{"part": "a", "name": f"sdpnet_xl {sizes.res} px, fed from memory", "img_s": rate,
             "mfu": 3 * fwd * rate / peak if peak else None, "peak_mib": mem["peak_mem_mib"],
             "peak_mem_kind": mem["peak_mem_kind"], "forward_gflops": fwd / 1e9, "summary_gflops": summary / 1e9,
             "peak_flops": peak, "params": sum(p.numel() for p in xl.model.parameters()),
             "note": f"batch {sizes.batch}, {sizes.steps} steps, {3 * fwd / 1e9:.3g} GFLOP per trained image"
                     f"{'' if device.type == 'cuda' else ', peak: the process resident set'}"}]


def part_b(ctx: dict, sizes: Sizes, device: torch.device, compile_: bool, amp: bool, engine: str,
           work: Path) -> list[dict]:
    start = time.perf_counter()
    path = write_jpegs(work, sizes)
    written = time.perf_counter() - start
    workers = min(os.cpu_count() or 1, 16)
    loader = make_train_loader(str(path), batch_size=sizes.batch, res=sizes.res, num_workers=workers, device=device,
                               channels_last=True, engine=engine)
    name = f"{resolve_engine(engine)[0]} loader ({sizes.images} JPEGs {sizes.sides[0]}-{sizes.sides[1]}" \
           f" px, q90, {workers} workers)"
    for _ in loader:   # epoch 0: the pipeline's compilation and first reads
        pass
    bench_model.synchronize(device)
    start, count = time.perf_counter(), 0
    for x, _ in loader:
        count += x.shape[0]
    bench_model.synchronize(device)
    alone = count / (time.perf_counter() - start)
    xl = ctx.get("xl") or XL(sizes, device, compile_, amp)
    xl.train(loader)   # the loader's tensors once (a recompile, if their strides differ, is not timed)
    steps = len(loader)
    memory = [xl.from_memory(steps)]
    fed = xl.train(loader)
    memory.append(xl.from_memory(steps))
    mem_rate = sum(memory) / 2
    return [{"part": "b", "name": name + " alone", "img_s": alone, "ratio": alone / mem_rate,
             "note": f"ratio: headroom over the model fed from memory; .beton written in {written:.0f} s"},
            {"part": "b", "name": "sdpnet_xl fed by the loader", "img_s": fed, "ratio": fed / mem_rate,
             "note": f"ratio: to fed from memory ({mem_rate:.1f} img/s, mean of the runs before and after), "
                     f"{steps} steps each"}]


def part_c(sizes: Sizes, device: torch.device, amp: bool) -> list[dict]:
    vs = bench_model.compare_with_timm(VIT, device=device, amp=amp, **sizes.vit)
    note = (f"batch {sizes.vit['size']}, {sizes.vit['img']} px, eager, {sizes.vit['rounds']} rounds x "
            f"{sizes.vit['steps']} steps")
    return [{"part": "c", "name": f"{VIT} (timm)", "img_s": vs["timm"], "note": note},
            {"part": "c", "name": f"{VIT} (ours)", "img_s": vs["ours"], "ratio": vs["ratio"],
             "note": f"ratio: median of per-round ours/timm (of medians {vs['ratio_of_medians']:.3f}, of best "
                     f"rounds {vs['ratio_best']:.3f})"}]


def run_part(part: str, what: str, fn: Callable[[], list[dict]], device: torch.device) -> list[dict]:
    """The part's rows, or one row saying why it failed (the traceback goes to stderr)."""
    try:
        return fn()
    except Exception as e:   # noqa: BLE001  (a part's failure is a result; the other parts still run)
        traceback.print_exc()
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
        return [{"part": part, "name": what, "error": f"{type(e).__name__}: {reason}"}]
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def table(rows: list[dict]) -> str:
    """The rows as aligned text: a failed part's row says why; empty cells where a column does not apply."""
    def cell(r: dict, key: str, fmt: str) -> str:
        return "" if key not in r else "n/a" if r[key] is None else format(r[key], fmt)

    lines = [f"{'':2} {'what':<64} {'img/s':>9} {'ratio':>7} {'MFU':>6} {'peak MiB':>9}  note"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['part']:2} {r['name']:<64} failed: {r['error']}")
            continue
        mfu = "" if "mfu" not in r else "n/a" if r["mfu"] is None else f"{100 * r['mfu']:.1f}%"
        lines.append(f"{r['part']:2} {r['name']:<64} {r['img_s']:>9.1f} {cell(r, 'ratio', '.3f'):>7} {mfu:>6} "
                     f"{cell(r, 'peak_mib', '.0f'):>9}  {r.get('note', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda, cuda:N or cpu")
    parser.add_argument("--tiny", action="store_true", help="the same code paths at a tiny size (the CPU test)")
    parser.add_argument("--compile", choices=("auto", "on", "off"), default="auto",
                        help="torch.compile the model (auto: on CUDA only)")
    parser.add_argument("--engine", choices=("ffcv", "torch", "auto"), default="ffcv", help="part (b)'s loader")
    parser.add_argument("--batch", type=int, help="sdpnet_xl's batch (default 128; --tiny 8)")
    parser.add_argument("--steps", type=int, help="timed steps of part (a) (default 50; --tiny 3)")
    parser.add_argument("--images", type=int, help="JPEGs in part (b)'s .beton (default 10240; --tiny 64)")
    parser.add_argument("--parts", default="abc", help="which parts to run (default abc)")
    parser.add_argument("--work", help="folder for the .beton (default: a temporary folder, removed)")
    parser.add_argument("--json", default="gpu_proof.json", help="where to write the rows as JSON")
    args = parser.parse_args(argv)
    try:
        device = torch.device(args.device)
        if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"no such CUDA device here ({torch.cuda.device_count()} visible)")
    except (RuntimeError, ValueError) as e:
        parser.error(f"--device={args.device}: {e}; use cpu or an available cuda device")
    if not set(args.parts) <= set("abc") or not args.parts:
        parser.error(f"--parts={args.parts}: give letters among a, b, c")
    sizes = Sizes(args.tiny, args.batch, args.steps, args.images)
    compile_ = args.compile == "on" or (args.compile == "auto" and device.type == "cuda")
    amp = True   # bf16 autocast, as the trainer on a GPU (on the CPU slower without AMX, but the same code path)
    name, peak = peak_flops(device)
    head = (f"gpu_proof on {name}: torch {torch.__version__}, bf16 autocast, channels_last, compile "
            f"{'on' if compile_ else 'off'}{' (--tiny)' if args.tiny else ''}; peak bf16 "
            f"{f'{peak / 1e12:.0f} TFLOP/s' if peak else 'unknown (MFU n/a)'}")
    print(head, flush=True)
    started = time.perf_counter()
    ctx: dict = {}
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="gpu_proof-", dir=args.work) as work:
        parts = {"a": ("sdpnet_xl fed from memory", lambda: part_a(ctx, sizes, device, compile_, amp)),
                 "b": ("loader headroom", lambda: part_b(ctx, sizes, device, compile_, amp, args.engine, Path(work))),
                 "c": (f"{VIT} vs timm", lambda: part_c(sizes, device, amp))}
        for part in sorted(set(args.parts)):
            rows += run_part(part, parts[part][0], parts[part][1], device)
            print(f"part {part} done after {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(table(rows))
    elapsed = time.perf_counter() - started
    print(f"total {elapsed:.0f} s")
    out = {"device": name, "torch": torch.__version__, "tiny": args.tiny, "compile": compile_, "amp": amp,
           "peak_bf16_flops": peak, "seconds": elapsed, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=1))
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
