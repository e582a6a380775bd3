"""``python -m sdpnet summary SPEC``: per-layer output shapes, parameters and FLOPs of a spec's model
(counted by :func:`sdpnet.models.summary.summarize`; the model is built on the meta device: shapes only)."""
from __future__ import annotations

import argparse
import json

import torch

from sdpnet.models.builder import build
from sdpnet.models.summary import format_table, summarize
from sdpnet.spec import parse_override
from sdpnet.tools.cli import UsageError, command_main

__all__ = ["main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .json spec file or a spec string (quote it)")
    p.add_argument("--res", type=int, default=None, help="input resolution (default: the spec's img_size)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    with torch.device("meta"):  # shapes only: see the module docstring
        model = build(args.spec, **dict(parse_override(s) for s in args.set)).eval()
    res = model.plan.img_size if args.res is None else args.res
    if res < 1 or res % model.stride:
        raise UsageError(f"--res {res} is not divisible by the model's stride {model.stride}; "
                         f"use a multiple of {model.stride}")
    summary = {"spec": str(model.model_spec.arch), **summarize(model, res)}
    print(json.dumps(summary, indent=2) if args.json else f"{summary['spec']}\n{format_table(summary)}")
    return 0


main = command_main("summary")
