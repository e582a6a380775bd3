"""``python -m sdpnet evaluate RUN``: loss, top-1/top-5, per-class accuracy, confusion matrix and a resolution sweep.

The validation pass is the trainer's: the same loader (:func:`sdpnet.data.make_val_loader` with the run's
resolution, centre-crop ratio, batch size, subset and memory format), the same loop (:func:`evaluate`, which
``train_ffcv.py`` runs after every epoch) and the same autocast rule, so on the device kind the run was
validated on it gives exactly the top-1 recorded in ``metrics.jsonl`` for those weights.

    python -m sdpnet evaluate runs/fashion_mnist                 # the run's val set and resolution
    python -m sdpnet evaluate runs/fashion_mnist --res 28,32,42 --weights model
    python -m sdpnet evaluate model.safetensors --data.val_path=data/fashion_mnist/val.beton

Writes ``evaluate.json`` and ``confusion.png`` to ``--out`` (default ``RUN/eval``) and prints a table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from sdpnet.data.betons import check_beton
from sdpnet.data.loaders import ENGINES, make_val_loader, resolve_engine
from sdpnet.files import read_jsonl, save_figure, write_json
from sdpnet.spec.text import parse_bool
from sdpnet.tools.cli import UsageError, command_main, output_path
from sdpnet.tools.runs import add_source_args, open_trained, pick_device
from sdpnet.train.precision import autocast_on
from sdpnet.train.validate import evaluate

__all__ = ["evaluate", "evaluate_run", "plot_confusion", "main"]


# FFCV loaders of a sweep stay referenced: dropping one frees numba-compiled functions that a later loader shares,
# and numba's finalizer then prints a KeyError traceback ("Exception ignored in ...").
_KEEP: list = []


def plot_confusion(cm: torch.Tensor, classes: Sequence[str], path: Path, title: str) -> Path:
    """Draw the row-normalised confusion matrix (rows: true class) with counts, to ``path`` (PNG, atomically)."""
    import matplotlib   # matplotlib: optional, imported only to draw
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = cm.shape[0]
    rows = cm.double() / cm.sum(1, keepdim=True).clamp(min=1)
    size = min(4 + 0.55 * k, 30)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(rows.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 40:
        ax.set_xticks(range(k), classes, rotation=45, ha="right")
        ax.set_yticks(range(k), classes)
    if k <= 25:
        for i in range(k):
            for j in range(k):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=8,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    fig.tight_layout()
    return save_figure(fig, path)


def _same_file(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()


def _recorded(trained, res: int, val_path: str, subset: int, flip: bool) -> dict[str, Any] | None:
    """The metrics.jsonl row of the checkpoint's epoch, when this evaluation repeats the run's validation."""
    cfg = trained.config or {}
    if trained.run is None or not (trained.run / "metrics.jsonl").is_file():
        return None
    v, d = cfg.get("validation", {}), cfg.get("data", {})
    same = (res == v.get("res") and flip == bool(v.get("flip")) and _same_file(val_path, d.get("val_path"))
            and subset == int(d.get("val_subset") or 0))
    epoch = trained.source.get("epoch")
    rows = [r for r in read_jsonl(trained.run / "metrics.jsonl") if r.get("epoch") == epoch]
    if not same or not rows:
        return None
    key = "ema_top1" if trained.weights == "ema" else "top1"
    return {"epoch": epoch, "key": key, "top1": rows[-1].get(key)}


def evaluate_run(trained, *, res: list[int], val_path: str, subset: int, batch_size: int, num_workers: int,
                 device: torch.device, amp: bool, flip: bool = False, engine: str = "auto") -> dict[str, Any]:
    """Evaluate ``trained`` (:class:`sdpnet.tools.runs.Trained`) at each resolution; the report as a JSON-able dict.

    The first resolution also gets the per-class accuracy and the confusion matrix (``confusion``, a list of
    rows).
    """
    pre = trained.preprocess
    cl = pre.get("channels_last", True)
    model = trained.model.to(device, memory_format=torch.channels_last if cl else torch.preserve_format)
    k = trained.num_classes
    sweep, first = [], None
    for r in res:
        t0 = time.perf_counter()
        loader = make_val_loader(val_path, batch_size=batch_size, res=r, num_workers=num_workers, device=device,
                                 subset=subset or None, crop_ratio=pre["crop_ratio"], mean=pre["mean"],
                                 std=pre["std"], channels_last=cl, engine=engine)
        out = evaluate({"model": model}, loader, amp=amp, confusion=k, flip=flip)
        _KEEP.append(loader)
        wall = time.perf_counter() - t0
        sweep.append({"res": r, "loss": out["val_loss"], "top1": out["top1"], "top5": out["top5"],
                      "images": out["count"], "images_per_s": out["count"] / max(out["seconds"], 1e-9),
                      "wall_s": wall})
        first = first or out
    cm = first["confusion"]
    per_class = [{"index": i, "class": trained.class_name(i), "samples": int(cm[i].sum()),
                  "top1": float(cm[i, i] / cm[i].sum()) if cm[i].sum() else None} for i in range(k)]
    report = {"source": trained.source, "weights": trained.weights, "val_path": val_path, "val_subset": subset,
              "device": str(device), "amp": amp, "flip": flip, "engine": resolve_engine(engine)[0],
              "crop_ratio": pre["crop_ratio"], "sweep": sweep, "per_class": per_class, "confusion": cm.tolist()}
    rec = _recorded(trained, res[0], val_path, subset, flip)
    if rec is not None:
        rec["matches"] = rec["top1"] == sweep[0]["top1"]
        report["recorded"] = rec
    return report


def print_report(report: dict[str, Any], file=sys.stdout) -> None:
    """The report as tables: the resolution sweep, then per-class accuracy, then the check against the run."""
    subset = f" (subset {report['val_subset']})" if report["val_subset"] else ""
    print(f"{report['source'].get('run') or report['source'].get('file')} ({report['weights']} weights) on "
          f"{report['val_path']}{subset}, {report['device']}{', bf16' if report['amp'] else ''}"
          f"{', flip test-time augmentation' if report.get('flip') else ''}", file=file)
    print(f"{'res':>5} {'images':>7} {'loss':>8} {'top-1':>8} {'top-5':>8} {'img/s':>9}", file=file)
    for r in report["sweep"]:
        print(f"{r['res']:>5} {r['images']:>7} {r['loss']:>8.4f} {100 * r['top1']:>7.2f}% {100 * r['top5']:>7.2f}% "
              f"{r['images_per_s']:>9.0f}", file=file)
    width = max(len(c["class"]) for c in report["per_class"])
    print(f"\nper class at {report['sweep'][0]['res']} px:", file=file)
    for c in report["per_class"]:
        acc = "-" if c["top1"] is None else f"{100 * c['top1']:.2f}%"
        print(f"  {c['index']:>4} {c['class']:<{width}} {c['samples']:>6} {acc:>8}", file=file)
    rec = report.get("recorded")
    if rec is not None:
        verdict = "the same" if rec["matches"] else "DIFFERENT"
        print(f"\nmetrics.jsonl, epoch {rec['epoch']}: {rec['key']}={rec['top1']}; this evaluation: "
              f"{report['sweep'][0]['top1']} ({verdict})", file=file)


def _parse_res(text: str, stride: int) -> list[int]:
    try:
        res = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--res={text!r}: give resolutions in pixels separated by commas, e.g. --res 160,192,224") \
            from None
    if not res or min(res) < 1:
        raise UsageError(f"--res={text!r}: give positive resolutions, e.g. --res 160,192,224")
    bad = [r for r in res if r % stride]
    if bad:
        raise UsageError(f"--res: {', '.join(map(str, bad))} not a multiple of the model's stride {stride}; use "
                         f"{', '.join(str(max(stride, r // stride * stride)) for r in bad)}")
    return res


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_args(p)
    p.add_argument("--data.val_path", dest="val_path", metavar="BETON",
                   help="validation .beton (default: the run's --data.val_path)")
    p.add_argument("--data.val_subset", dest="val_subset", type=int, metavar="N",
                   help="a fixed seeded subset of N samples, 0 for all (default: the run's when its val set is used)")
    p.add_argument("--res", help="resolutions to evaluate at, comma-separated (default: the run's validation.res)")
    p.add_argument("--batch-size", type=int, help="default: the run's validation.batch_size (256 for a file)")
    p.add_argument("--num-workers", type=int, default=None, help="FFCV decoding threads (default: the run's)")
    p.add_argument("--data.engine", dest="engine", choices=ENGINES, default="auto",
                   help="what reads the .beton: ffcv, torch (no FFCV, the same batches) or auto (default: ffcv where "
                        "it imports)")
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default=None,
                   help="bf16 autocast (default: the run's training.amp; auto is bf16 on CUDA and on CPUs with AMX)")
    p.add_argument("--flip", type=parse_bool, default=None, metavar="BOOL",
                   help="average the logits of each image and its mirror image (default: the run's validation.flip)")
    p.add_argument("--out", help="folder for evaluate.json and confusion.png (default: RUN/eval, or "
                                 "FILE_STEM-eval beside a weights file)")


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    trained = open_trained(args.run, args.weights)
    val_path = args.val_path or trained.val.get("val_path")
    if not val_path:
        raise UsageError(f"'{args.run}' is a weights file: give the data with --data.val_path=VAL.beton")
    if not Path(val_path).is_file():
        raise UsageError(f"--data.val_path: '{val_path}' not found; write it with data_prep/write_*.py")
    info = check_beton(val_path, name=f"--data.val_path={val_path}")
    if info.num_classes != trained.num_classes or (info.classes and trained.classes
                                                   and list(info.classes) != list(trained.classes)):
        names = f" ({', '.join(list(info.classes)[:3])}, ...)" if info.classes else ""
        raise UsageError(f"--data.val_path={val_path} has {info.num_classes} classes{names}, the model was "
                         f"trained on {trained.num_classes} ({', '.join(trained.class_name(i) for i in range(3))}"
                         f", ...); evaluate on data with the model's classes")
    same = _same_file(val_path, trained.val.get("val_path"))
    subset = args.val_subset if args.val_subset is not None else (trained.val.get("val_subset", 0) if same else 0)
    if subset < 0:
        raise UsageError(f"--data.val_subset={subset}: give 0 (all) or a positive count")
    res = _parse_res(args.res, trained.model.stride) if args.res else [trained.preprocess["res"]]
    batch = args.batch_size or trained.val.get("batch_size", 256)
    if batch < 1:
        raise UsageError(f"--batch-size={batch}: give a positive batch size")
    workers = args.num_workers or trained.val.get("num_workers", 2)
    amp = autocast_on(args.amp or trained.val.get("amp", "auto"), device.type)
    flip = args.flip if args.flip is not None else trained.val.get("flip", False)
    out = output_path(args, trained.run, "eval", "{stem}-eval")
    report = evaluate_run(trained, res=res, val_path=val_path, subset=subset, batch_size=batch,
                          num_workers=workers, device=device, amp=amp, flip=flip, engine=args.engine)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{Path(args.run).name}: top-1 {100 * report['sweep'][0]['top1']:.2f}% at {res[0]} px"
    report["confusion_png"] = str(plot_confusion(torch.tensor(report["confusion"]),
                                                 [c["class"] for c in report["per_class"]], out / "confusion.png",
                                                 title))
    write_json(out / "evaluate.json", report)
    print_report(report)
    print(f"\nwrote {out / 'evaluate.json'} and {out / 'confusion.png'}")
    return 0


main = command_main("evaluate")
