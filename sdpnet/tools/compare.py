"""``python -m sdpnet compare SWEEP_OR_RUNS...``: one leaderboard over training runs, with plots.

Any folder written by ``train_ffcv.py`` (``--logging.folder``) is a run; a folder that holds runs
(a sweep, ``runs/``) stands for all of them. Per run the table gives the canonical spec, parameters,
GFLOPs (of one image at the validation resolution, as ``python -m sdpnet summary`` counts them),
training throughput, epochs, training time, final top-1 and EMA top-1, the best top-1 of any epoch
(model or EMA) and the training time at which a target accuracy was first reached (``--target``).
Runs are read from their files only: ``results.json`` when the run finished, else ``metrics.jsonl``
(the run is marked unfinished, or pruned when a search stopped it: ``pruned.json``); a run without
FLOPs in its results (older runs) has them counted from its ``spec.json``.

Writes ``leaderboard.csv``, ``leaderboard.md``, ``pareto.png`` (the chosen accuracy against GFLOPs, against
training time and against training throughput, the Pareto front of the finished runs marked, pruned runs
grey) and ``curves.png`` (validation top-1 of every run against training time and against epochs) to
``--out``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from sdpnet.files import read_jsonl, replace_atomically, save_figure
from sdpnet.spec import load_spec
from sdpnet.tools.cli import UsageError, command_main

__all__ = ["find_runs", "read_run", "leaderboard", "pareto_front", "to_markdown", "plot_pareto",
           "plot_curves", "main"]

METRICS = ("top1", "ema_top1", "best_top1")
COLUMNS = {   # column -> header of the printed / Markdown table
    "run": "run", "spec": "spec", "params": "params", "gflops": "GFLOPs", "img_per_s": "img/s",
    "epochs": "epochs", "train_s": "train s", "top1": "top-1", "ema_top1": "EMA top-1",
    "best_top1": "best top-1", "time_to_target": "s to target", "peak_mem_mib": "peak MiB", "done": "done",
}


class CompareError(UsageError):
    """A path that is not a run or holds none, or a run whose files cannot be read; exit 2."""


def find_runs(paths: Sequence[str | Path], max_depth: int = 3) -> list[Path]:
    """The run folders (those with a ``metrics.jsonl``) at or under each of ``paths``, in order, once each."""
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            raise CompareError(f"{p} is not a folder; give run folders (--logging.folder of train_ffcv.py) "
                               f"or folders that hold them (a sweep)")
        found = [p] if (p / "metrics.jsonl").is_file() else sorted(
            m.parent for depth in range(1, max_depth + 1) for m in p.glob("/".join(["*"] * depth) + "/metrics.jsonl"))
        if not found:
            raise CompareError(f"{p} holds no training run (no metrics.jsonl in it or in its sub-folders "
                               f"up to {max_depth} deep)")
        out += [r for r in found if r.resolve() not in {o.resolve() for o in out}]
    return out


def _json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CompareError(f"{path} cannot be read ({e})") from None
    return obj if isinstance(obj, dict) else None


def _accuracy(row: dict[str, Any]) -> float:
    """The better of the model's and the EMA's top-1 in one metrics row."""
    return max(row.get("top1") or 0.0, row.get("ema_top1") or 0.0)


def count_cost(spec_record: dict[str, Any], res: int) -> tuple[int, int]:
    """(params, FLOPs) of a run's spec.json record at ``res`` px, counted as ``sdpnet summary`` does."""
    # torch: only for older runs whose results.json has no FLOPs; a leaderboard of newer runs needs no torch
    from sdpnet.models.builder import build
    from sdpnet.models.summary import summarize

    spec = {k: v for k, v in spec_record.items() if k != "canonical"}
    model = build(load_spec(json.dumps(spec))).eval()
    s = summarize(model, res)
    return s["params"], s["flops"]


def read_run(run: str | Path, target: float | None = None, count_flops: bool = True) -> dict[str, Any]:
    """One leaderboard row from a run folder's files (see the module docstring for the columns)."""
    run = Path(run)
    try:
        rows = read_jsonl(run / "metrics.jsonl")
    except (OSError, ValueError) as e:
        raise CompareError(f"{run}: {e}") from None
    results = _json(run / "results.json") or {}
    spec = _json(run / "spec.json") or {}
    config = _json(run / "config.json") or {}
    res = (config.get("validation") or {}).get("res") or spec.get("img_size") or 224
    params, flops = results.get("params"), results.get("flops")
    if count_flops and (flops is None or params is None) and spec.get("arch"):
        params, flops = count_cost(spec, res)
    times = [r.get("epoch_time", math.nan) for r in rows]
    clock = [sum(times[:i + 1]) for i in range(len(times))]
    hit = next((t for t, r in zip(clock, rows) if target is not None and _accuracy(r) >= target), None)
    later = [(r["img_per_s"], r["epoch_time"]) for r in rows[1:] if r.get("img_per_s") and r.get("epoch_time")]
    img_per_s = results.get("img_per_s")
    if img_per_s is None and rows:   # after the first epoch, which pays FFCV's compilation
        pairs = later or [(rows[0].get("img_per_s", math.nan), rows[0].get("epoch_time", math.nan))]
        img_per_s = sum(a * t for a, t in pairs) / sum(t for _, t in pairs)
    last = rows[-1] if rows else {}
    return {
        "run": run.name, "path": str(run),
        "spec": spec.get("canonical") or results.get("spec") or "?",
        "params": params, "gflops": flops / 1e9 if flops is not None else math.nan,
        "img_per_s": img_per_s, "epochs": results.get("epochs", len(rows)),
        "train_s": results.get("train_time_s", clock[-1] if clock else math.nan),
        "top1": results.get("top1", last.get("top1")), "ema_top1": results.get("ema_top1", last.get("ema_top1")),
        "best_top1": max((_accuracy(r) for r in rows), default=math.nan),
        "time_to_target": hit if hit is not None else math.nan,
        "peak_mem_mib": results.get("peak_mem_mib", math.nan),
        "done": bool(results), "pruned": not results and (run / "pruned.json").is_file(),
        "curve": [(t, r.get("epoch"), r.get("top1"), r.get("ema_top1"))
                                         for t, r in zip(clock, rows)],
    }


def leaderboard(runs: Sequence[str | Path], metric: str = "top1", target: float | None = None,
                count_flops: bool = True) -> pd.DataFrame:
    """The runs' rows as a DataFrame, best ``metric`` first (ties: cheaper training first)."""
    df = pd.DataFrame([read_run(r, target, count_flops) for r in runs])
    df = df.sort_values([metric, "train_s"], ascending=[False, True], kind="stable", na_position="last")
    return df.reset_index(drop=True)


def pareto_front(cost: Sequence[float], score: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats (lower or equal cost and higher or equal score, one strictly),
    in order of cost."""
    pts = [(c, s, i) for i, (c, s) in enumerate(zip(cost, score)) if not (math.isnan(c) or math.isnan(s))]
    front = [i for c, s, i in pts
             if not any(c2 <= c and s2 >= s and (c2 < c or s2 > s) for c2, s2, _ in pts)]
    return sorted(front, key=lambda i: cost[i])


def _cell(key: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key in METRICS:
        return f"{100 * value:.2f}%"
    if key == "params":
        return f"{int(value):,}"
    if key == "gflops":
        return f"{value:.4f}" if value < 1 else f"{value:.2f}"
    if key in ("img_per_s", "train_s", "time_to_target", "peak_mem_mib"):
        return f"{value:,.0f}"
    if key == "epochs":
        return f"{value:g}" if isinstance(value, (int, float)) else str(value)
    if key == "done":
        return "yes" if value else "no"
    return str(value)


def _cells(row: Any, columns: Sequence[str]) -> list[str]:
    """A row's cells; a run a search pruned says so in the done column."""
    return [f"`{row[c]}`" if c == "spec" else "pruned" if c == "done" and row.get("pruned") else _cell(c, row[c])
            for c in columns]


def table_columns(df: pd.DataFrame, target: float | None) -> list[str]:
    """The columns shown: all, without the target column when no target was given or peak memory when none."""
    cols = [c for c in COLUMNS if c in df.columns]
    if target is None:
        cols.remove("time_to_target")
    if df["peak_mem_mib"].isna().all():
        cols.remove("peak_mem_mib")
    return cols


def to_markdown(df: pd.DataFrame, columns: Sequence[str], target: float | None = None) -> str:
    """A GitHub Markdown table of ``columns``, ranked (specs in backticks, numbers right-aligned)."""
    heads = [COLUMNS[c] if c != "time_to_target" or target is None else f"s to {100 * target:g}%"
             for c in columns]
    align = ["---" if c in ("run", "spec", "done") else "---:" for c in columns]
    lines = ["| # | " + " | ".join(heads) + " |", "|---:|" + "|".join(align) + "|"]
    for rank, (_, row) in enumerate(df.iterrows(), 1):
        cells = _cells(row, columns)
        lines.append(f"| {rank} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def to_text(df: pd.DataFrame, columns: Sequence[str]) -> str:
    """An aligned plain-text table of ``columns`` (long specs shortened) for the terminal."""
    show = pd.DataFrame([[cell if c != "spec" else (row[c] if len(row[c]) <= 60 else row[c][:57] + "...")
                          for c, cell in zip(columns, _cells(row, columns))] for _, row in df.iterrows()],
                        columns=[COLUMNS[c] for c in columns])
    show.index = range(1, len(show) + 1)
    return show.to_string()


def plot_pareto(df: pd.DataFrame, out: Path, metric: str = "top1") -> Path:
    """``metric`` against GFLOPs, training time and throughput, one point per run, the finished runs' Pareto front
    joined (fewer GFLOPs, less time, more img/s are better); runs a search pruned are grey crosses."""
    import matplotlib   # matplotlib: optional, imported only to draw (--no-plots needs none)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 3, figsize=(20, 5.5))
    score = [100 * v if v is not None else math.nan for v in df[metric]]
    pruned = [bool(p) for p in df["pruned"]] if "pruned" in df else [False] * len(df)
    for ax, key, label, sign in ((axes[0], "gflops", "GFLOPs per image (validation resolution)", 1),
                                 (axes[1], "train_s", "training time (s)", 1),
                                 (axes[2], "img_per_s", "training throughput (img/s)", -1)):
        cost = [float(v) if v is not None else math.nan for v in df[key]]
        front = pareto_front([sign * c if not pruned[i] else math.nan for i, c in enumerate(cost)], score)
        rest = [i for i in range(len(df)) if i not in front and not pruned[i]]
        ax.scatter([cost[i] for i in rest], [score[i] for i in rest], color="tab:blue", label="run")
        cut = [i for i in range(len(df)) if pruned[i]]
        if cut:
            ax.scatter([cost[i] for i in cut], [score[i] for i in cut], color="0.6", marker="x", label="pruned")
        ax.plot([cost[i] for i in front], [score[i] for i in front], "o-", color="tab:red", label="Pareto front")
        for i in range(len(df)):
            if not (math.isnan(cost[i]) or math.isnan(score[i])):
                ax.annotate(f"{i + 1}", (cost[i], score[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        if key == "gflops" and all(c > 0 for c in cost if not math.isnan(c)):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set(xlabel=label, ylabel=f"{COLUMNS[metric]} (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
    fig.suptitle("points numbered by leaderboard rank")
    fig.tight_layout()
    return save_figure(fig, out, dpi=110)


def plot_curves(df: pd.DataFrame, out: Path) -> Path:
    """Validation top-1 (model; EMA dashed) of every run against training time and against epochs."""
    import matplotlib   # matplotlib: optional, imported only to draw (--no-plots needs none)
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_e) = plt.subplots(1, 2, figsize=(14, 5.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, row in df.iterrows():
        curve = row["curve"]
        color = colors[i % len(colors)]
        label = f"{i + 1}. {row['run']}"
        for ax, x in ((ax_t, [c[0] for c in curve]), (ax_e, [c[1] for c in curve])):
            ax.plot(x, [100 * c[2] if c[2] is not None else math.nan for c in curve], ".-", color=color,
                    label=label if ax is ax_t else None)
            if any(c[3] is not None for c in curve):
                ax.plot(x, [100 * c[3] if c[3] is not None else math.nan for c in curve], "--", color=color, alpha=0.6)
    ax_t.set(xlabel="training time (s)", ylabel="validation top-1 (%)", title="top-1 (EMA dashed) against time")
    ax_e.set(xlabel="epoch", ylabel="validation top-1 (%)", title="top-1 (EMA dashed) against epochs")
    for ax in (ax_t, ax_e):
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=min(3, max(1, len(df))), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, min(0.4, 0.035 * (len(df) // 3 + 1)), 1, 1))
    return save_figure(fig, out, dpi=110)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", help="run folders, or folders that hold runs (a sweep)")
    p.add_argument("--metric", choices=METRICS, default="top1",
                   help="accuracy the table is sorted by and the Pareto plot shows (default: top1)")
    p.add_argument("--target", type=float, default=None,
                   help="accuracy (fraction, e.g. 0.9) whose time to reach is reported")
    p.add_argument("--out", default=None, help="folder for leaderboard.csv/.md, pareto.png, curves.png "
                                               "(default: the one folder given if it holds runs, else ./compare)")
    p.add_argument("--no-plots", action="store_true", help="write only the tables")


def run(args: argparse.Namespace) -> int:
    if args.target is not None and not 0 < args.target <= 1:
        raise UsageError(f"--target {args.target:g} is not an accuracy in (0, 1]; e.g. --target 0.9")
    runs = find_runs(args.paths)
    df = leaderboard(runs, args.metric, args.target)
    single = Path(args.paths[0])
    out = Path(args.out) if args.out else (single if len(args.paths) == 1 and runs != [single] else Path("compare"))
    out.mkdir(parents=True, exist_ok=True)
    cols = table_columns(df, args.target)
    print(to_text(df, cols))
    csv = df.drop(columns=["curve"]).to_csv(index=False)
    replace_atomically(out / "leaderboard.csv", csv.encode())
    replace_atomically(out / "leaderboard.md", to_markdown(df, cols, args.target).encode())
    written = [out / "leaderboard.csv", out / "leaderboard.md"]
    if not args.no_plots:
        written += [plot_pareto(df, out / "pareto.png", args.metric), plot_curves(df, out / "curves.png")]
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


main = command_main("compare")
