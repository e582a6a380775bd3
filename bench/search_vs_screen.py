"""A search against a hand screen at equal wall time: which had found the better design when the screen ended.

Reads two folders that ran one after the other on the same machine with the same recipe (it trains nothing):
a ``sweep`` (the screen: fixed designs, one at a time) and a ``search`` (an Optuna study), and prints

- the screen: its wall time (its command's start to its last run's results), designs, best top-1 and design;
- the search stopped at the screen's wall time: the trials finished by then (the study's timestamps, from the
  search command's start), and the best of them;
- the whole search, when it ran longer;

and draws the best top-1 found so far against wall time for both (``--plot``)::

    python bench/search_vs_screen.py runs/search-vs-screen/screen runs/search-vs-screen/search \\
        --plot docs/experiments/search-vs-screen.png
"""
from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna

from sdpnet.files import save_figure

TIME = "%Y-%m-%d %H:%M:%S"   # the time format of sweep.json and search.json


def started(folder: Path, manifest: str) -> datetime:
    """When the folder's last command started (``sweep.json`` / ``search.json``)."""
    commands = json.loads((folder / manifest).read_text())["commands"]
    return datetime.strptime(commands[-1]["time"], TIME)


def screen_events(folder: Path) -> list[tuple[float, float, str]]:
    """The screen's finished runs as (seconds from its start, top-1, spec), in the order they finished."""
    t0 = started(folder, "sweep.json").timestamp()
    out = []
    for res in folder.glob("*/results.json"):
        r = json.loads(res.read_text())
        out.append((res.stat().st_mtime - t0, r["top1"], r["spec"]))
    return sorted(out)


def search_events(folder: Path) -> tuple[list[tuple[float, float, str]], list[float]]:
    """The search's complete trials as (seconds from its command's start, top-1, spec), and when each of its
    trials of any state (complete, pruned, failed) ended."""
    t0 = started(folder, "search.json")
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    study = optuna.load_study(study_name=json.loads((folder / "search.json").read_text())["study"], storage=storage)
    ended = [t for t in study.trials if t.datetime_complete is not None]
    events = [((t.datetime_complete - t0).total_seconds(), t.value, t.user_attrs["spec"]) for t in ended
              if t.state == optuna.trial.TrialState.COMPLETE]
    return sorted(events), sorted((t.datetime_complete - t0).total_seconds() for t in ended)


def row(what: str, events: list[tuple[float, float, str]], designs: int, wall: float) -> dict[str, Any]:
    best = max(events, key=lambda e: e[1])
    return {"what": what, "wall_s": wall, "designs": designs, "top1": best[1], "found_s": best[0], "spec": best[2]}


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| | wall time | designs | best top-1 | found after | best design |", "|---|---:|---:|---:|---:|---|"]
    lines += [f"| {r['what']} | {r['wall_s'] / 60:.1f} min | {r['designs']} | {100 * r['top1']:.2f}% | "
              f"{r['found_s'] / 60:.1f} min | `{r['spec']}` |" for r in rows]
    return "\n".join(lines)


def plot(curves: dict[str, list[tuple[float, float, str]]], wall: float, path: Path) -> None:
    """Best top-1 so far against wall time, every finished design a dot."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, events in curves.items():
        xs = [e[0] / 60 for e in events]
        ys = [100 * e[1] for e in events]
        best = [max(ys[:i + 1]) for i in range(len(ys))]
        line, = ax.step(xs, best, where="post", label=f"{name}: best so far")
        ax.scatter(xs, ys, s=12, color=line.get_color(), alpha=0.5)
    ax.axvline(wall / 60, color="grey", linestyle=":", label="the screen's end")
    ax.set(xlabel="wall time (min)", ylabel="top-1 (%)", title="Search against hand screen, same machine and recipe")
    lo = min(100 * e[1] for events in curves.values() for e in events)
    ax.set_ylim(max(lo - 2, 0), None)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("screen", type=Path, help="the sweep's --out folder")
    ap.add_argument("search", type=Path, help="the search's --out folder")
    ap.add_argument("--plot", type=Path, help="draw best top-1 so far against wall time (PNG)")
    args = ap.parse_args()
    screen = screen_events(args.screen)
    search, ended = search_events(args.search)
    wall = screen[-1][0]
    rows = [row("hand screen (sweep)", screen, len(screen), wall),
            row("search, stopped at the screen's wall time", [e for e in search if e[0] <= wall],
                sum(t <= wall for t in ended), wall),
            row("search, whole", search, len(ended), ended[-1])]
    print(table(rows))
    if args.plot:
        plot({"hand screen": screen, "search": search}, wall, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
