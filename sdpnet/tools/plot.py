"""``python -m sdpnet plot RUN``: draw a run's loss/accuracy curves to PNG."""
from __future__ import annotations

import argparse

from sdpnet.tools.cli import UsageError, command_main
from sdpnet.train.plot import plot_run

__all__ = ["main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="run folder written by train_ffcv.py (holds metrics.jsonl)")
    p.add_argument("-o", "--out", default=None, help="output PNG (default RUN_DIR/curves.png)")


def run(args: argparse.Namespace) -> int:
    try:
        path = plot_run(args.run_dir, args.out)
    except KeyError as e:   # a metrics row without a column the plot draws
        raise UsageError(f"{e}") from None
    print(path)
    return 0


main = command_main("plot")
