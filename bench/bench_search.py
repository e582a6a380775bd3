"""Searching with and without pruning: the same search (template, trials, budget, seed) run once per pruner.

Each search is a real ``python -m sdpnet search`` on Fashion-MNIST (every trial a ``train_ffcv.py`` run); the
table gives each one's wall time, its trials complete and pruned, and the best top-1 it found, with the design:

    python bench/bench_search.py --trials 8 --epochs 3 --pruners none,median --screen 4 --out runs/bench-search

The default template is the demo spec (``specs/fashion_mnist.json``) with ranges over the first conv's width,
the second conv's kernel and width, the encoder's MLP ratio and depth. ``--screen N`` also runs a hand screen:
``sweep`` over N fixed designs of that space (the demo spec, then one change at a time: ``SCREEN``) at the same
budget, and the best design each search had found when the screen's wall time was spent (the trials finished by
then, from the study's timestamps). ``--report`` prints the table again from the folders, running nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna

ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = ("CONV3(act=relu,d={16..48:16}),CT3(d=32,norm=bn),CONV{3,5}(act=relu,d={32..96:32}),CT3(d=64,norm=bn)"
            "-POS-ENC(h=4,r={1.0..4.0})x{1..2}-DOWN7(d=128)-GAP+MLP")
# the hand screen: the demo spec, then one change at a time (each a point of TEMPLATE)
SCREEN = ["CONV3(act=relu,d=32),CT3(d=32,norm=bn),CONV3(act=relu,d=64),CT3(d=64,norm=bn)-POS-ENC(h=4,r=2.0)"
          "-DOWN7(d=128)-GAP+MLP",
          "CONV3(act=relu,d=32),CT3(d=32,norm=bn),CONV3(act=relu,d=64),CT3(d=64,norm=bn)-POS-ENC(h=4,r=2.0)x2"
          "-DOWN7(d=128)-GAP+MLP",
          "CONV3(act=relu,d=32),CT3(d=32,norm=bn),CONV5(act=relu,d=64),CT3(d=64,norm=bn)-POS-ENC(h=4,r=2.0)"
          "-DOWN7(d=128)-GAP+MLP",
          "CONV3(act=relu,d=16),CT3(d=32,norm=bn),CONV3(act=relu,d=96),CT3(d=64,norm=bn)-POS-ENC(h=4,r=2.0)"
          "-DOWN7(d=128)-GAP+MLP",
          "CONV3(act=relu,d=32),CT3(d=32,norm=bn),CONV3(act=relu,d=64),CT3(d=64,norm=bn)-POS-ENC(h=4,r=4.0)"
          "-DOWN7(d=128)-GAP+MLP",
          "CONV3(act=relu,d=48),CT3(d=32,norm=bn),CONV3(act=relu,d=32),CT3(d=64,norm=bn)-POS-ENC(h=4,r=1.0)"
          "-DOWN7(d=128)-GAP+MLP"]


def data_options(args: argparse.Namespace) -> list[str]:
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={args.data / 'train.beton'}",
            f"--data.val_path={args.data / 'val.beton'}", f"--data.train_subset={args.train_subset}",
            f"--data.val_subset={args.val_subset}", "--quiet",
            f"--budget.epochs={args.epochs}" if args.epochs else f"--budget.minutes={args.minutes:g}"]


def sdpnet(argv: list[str], out: Path, args: argparse.Namespace) -> float:
    """Run ``python -m sdpnet ARGV`` (its output to this terminal) unless ``--report``; its wall time in seconds
    (recorded in OUT/../walls.json, so that ``--report`` prints the table again from the folders)."""
    record = args.out / "walls.json"
    walls = json.loads(record.read_text()) if record.is_file() else {}
    if args.report:
        return walls[out.name]
    print("$ python -m sdpnet " + " ".join(f"'{a}'" if any(c in a for c in "{}(),[]") else a for a in argv),
          flush=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "sdpnet", *argv], cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"bench_search: the command above failed (exit {r.returncode})")
    record.write_text(json.dumps({**walls, out.name: wall}))
    return wall


def study_row(out: Path, what: str, wall: float, within: float | None = None) -> dict[str, Any]:
    """A search's line of the table, from its journal; ``within``: only the trials finished that many seconds
    after the search's first trial started (and the wall time is then at most that)."""
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    study = optuna.load_study(study_name=out.name, storage=storage)
    state = optuna.trial.TrialState
    trials = study.trials
    if within is not None:
        t0 = min(t.datetime_start for t in trials)
        trials = [t for t in trials if t.datetime_complete and (t.datetime_complete - t0).total_seconds() <= within]
        wall = min(wall, within)
    complete = [t for t in trials if t.state == state.COMPLETE]
    best = max(complete, key=lambda t: t.value)
    return {"what": what, "wall_s": wall, "designs": len(trials), "complete": len(complete),
            "pruned": sum(t.state == state.PRUNED for t in trials), "top1": best.value,
            "spec": best.user_attrs["spec"]}


def sweep_row(out: Path, what: str, wall: float) -> dict[str, Any]:
    """A sweep's line of the table, from its run folders."""
    runs = [json.loads(p.read_text()) for p in sorted(out.glob("*/results.json"))]
    best = max(runs, key=lambda r: r["top1"])
    return {"what": what, "wall_s": wall, "designs": len(runs), "complete": len(runs), "pruned": 0,
            "top1": best["top1"], "spec": best["spec"]}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| search | wall time | designs | complete | pruned | best top-1 | best design |",
             "|---|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['what']} | {r['wall_s'] / 60:.1f} min | {r['designs']} | {r['complete']} | {r['pruned']} | "
              f"{100 * r['top1']:.2f}% | `{r['spec']}` |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--template", default=TEMPLATE)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--minutes", type=float, default=1.0, help="each trial's budget: minutes of training time")
    ap.add_argument("--epochs", type=int, default=0, help="each trial's budget: epochs (instead of --minutes)")
    ap.add_argument("--pruners", default="none,median", help="one search per pruner, in this order")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--screen", type=int, default=0, metavar="N",
                    help="also a hand screen of N fixed designs, against each search's first trials of equal wall time")
    ap.add_argument("--train-subset", type=int, default=800)
    ap.add_argument("--val-subset", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "fashion_mnist")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-search")
    ap.add_argument("--report", action="store_true", help="run nothing: the table of the searches already in --out")
    args = ap.parse_args()
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    common = [*data_options(args), "--seed", str(args.seed)]
    rows, searches = [], []
    for pruner in args.pruners.split(","):
        out = args.out / f"pruner-{pruner}"
        wall = sdpnet(["search", args.template, *common, "--trials", str(args.trials), "--pruner", pruner,
                       "--out", str(out)], out, args)
        searches.append((out, pruner, wall))
        rows.append(study_row(out, f"{args.trials} trials, pruner {pruner}", wall))
        print(table(rows), flush=True)
    if args.screen:
        designs = SCREEN[:args.screen]
        out = args.out / "screen"
        screen = sdpnet(["sweep", *designs, *data_options(args), "--out", str(out)], out, args)
        rows.append(sweep_row(out, f"hand screen of {len(designs)} fixed designs", screen))
        for out, pruner, wall in searches:   # the same searches, stopped at the screen's wall time
            rows.append(study_row(out, f"search, pruner {pruner}, its first {screen / 60:.1f} min", wall, screen))
    print(table(rows))


if __name__ == "__main__":
    main()
