"""``python -m sdpnet parse SPEC``: a spec's canonical form and its JSON tree (and its hyperparameters, if any).

The spec is parsed and resolved without torch: a bad one prints the error with the caret under the offending
text and exits with status 2.
"""
from __future__ import annotations

import argparse
import json

from sdpnet.spec import load_spec, parse_override, resolve
from sdpnet.tools.cli import command_main

__all__ = ["main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a spec string (quote it) or a .json spec file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")


def run(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(s) for s in args.set)
    model = load_spec(args.spec, **overrides)
    resolve(model)  # the checks that need hyperparameters (dim / heads)
    print(model.arch)
    print(json.dumps(model.arch.to_json(), indent=2))
    if model.hparams:
        print(json.dumps({k: v for k, v in model.to_json().items() if k != "arch"}, indent=2))
    return 0


main = command_main("parse")
