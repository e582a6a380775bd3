"""``python -m sdpnet plot RUN``: draw a run's loss/accuracy curves to PNG."""
from __future__ import annotations

import argparse
import sys

from sdpnet.train.plot import plot_run


def main(argv: list[str]) -> int:
    """CLI entry: ``plot RUN_DIR [-o OUT.png]``; returns the exit status."""
    ap = argparse.ArgumentParser(prog="python -m sdpnet plot",
                                 description="Draw a training run's loss/accuracy curves to PNG.")
    ap.add_argument("run_dir", help="run folder written by train_ffcv.py (holds metrics.jsonl)")
    ap.add_argument("-o", "--out", default=None, help="output PNG (default RUN_DIR/curves.png)")
    args = ap.parse_args(argv)
    try:
        path = plot_run(args.run_dir, args.out)
    except (FileNotFoundError, ValueError, KeyError) as e:
        print(f"sdpnet plot: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0
