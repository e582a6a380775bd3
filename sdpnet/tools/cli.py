"""Command line: ``python -m sdpnet parse SPEC``, ``blocks``, ``docs``, ``summary ...``, ``plot ...``,
``sweep ...`` (train a set of specs with one recipe) and ``compare ...`` (a leaderboard over runs).
After training: ``evaluate``, ``predict``, ``export`` and ``attention`` on a run folder (each with ``--help``).

A bad spec prints the error (with the caret under the offending text) and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from sdpnet.registry import get_schema, list_blocks
from sdpnet.spec import SpecError, load_spec, parse_override, resolve


def _parse(args: argparse.Namespace) -> int:
    overrides = dict(parse_override(s) for s in args.set)
    model = load_spec(args.spec, **overrides)
    resolve(model)  # the checks that need hyperparameters (dim / heads)
    print(model.arch)
    print(json.dumps(model.arch.to_json(), indent=2))
    if model.hparams:
        print(json.dumps({k: v for k, v in model.to_json().items() if k != "arch"}, indent=2))
    return 0


def _blocks(args: argparse.Namespace) -> int:
    for name in list_blocks():
        s = get_schema(name)
        arg = f"{s.arg}{'' if s.arg_required else f' (optional, default {s.arg_default})'}" if s.arg else "-"
        keys = ", ".join(p.key + (f"[{'/'.join(p.roles)}]" if p.roles else "") for p in s.params) or "-"
        print(f"{name:8} {'/'.join(s.roles):16} arg: {arg:36} keywords: {keys}")
        print(f"{'':8} {s.doc}  e.g. {s.example}")
    return 0


def _docs(args: argparse.Namespace) -> int:
    from sdpnet.tools.docs import write_docs

    stale = write_docs(check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    if args.check and stale:
        print("the docs' block tables differ from the registry; run: python -m sdpnet docs", file=sys.stderr)
        return 1
    return 0


# after-training subcommands: name -> (module, help); each module has main(argv) and imports torch itself
AFTER_TRAINING = {
    "evaluate": ("sdpnet.tools.evaluate", "loss, top-1/5, per-class accuracy, confusion matrix, resolution sweep of a run"),
    "predict": ("sdpnet.tools.predict", "top-k classes of image files, preprocessed as the run validates"),
    "export": ("sdpnet.tools.export", "write a run's model as safetensors, ONNX or a torch.export program (checked)"),
    "attention": ("sdpnet.tools.attention", "draw what each class token attends to, per layer and head"),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad spec)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in AFTER_TRAINING:
        import importlib

        return importlib.import_module(AFTER_TRAINING[argv[0]][0]).main(argv[1:])
    if argv and argv[0] in ("summary", "plot", "sweep", "compare", "gallery"):
        if argv[0] == "summary":
            from sdpnet.tools.summary import main as sub
        elif argv[0] == "gallery":
            from sdpnet.tools.gallery import main as sub
        elif argv[0] == "sweep":
            from sdpnet.tools.sweep import main as sub
        elif argv[0] == "compare":
            from sdpnet.tools.compare import main as sub
        else:
            from sdpnet.tools.plot import main as sub
        try:
            return sub(argv[1:])
        except SpecError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    parser = argparse.ArgumentParser(prog="python -m sdpnet", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("parse", help="print a spec's canonical form and its JSON tree")
    p.add_argument("spec", help="a spec string (quote it) or a .json spec file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a hyperparameter")
    p.set_defaults(run=_parse)
    b = sub.add_parser("blocks", help="list the block vocabulary")
    b.set_defaults(run=_blocks)
    d = sub.add_parser("docs", help="regenerate the block tables in docs/spec.md and docs/blocks.md")
    d.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is out of date")
    d.set_defaults(run=_docs)
    sub.add_parser("summary", help="layer table and parameter counts of a spec (see summary --help)")
    sub.add_parser("plot", help="plot training curves (see plot --help)")
    sub.add_parser("gallery", help="the hybrids of specs/gallery with params and FLOPs (see gallery --help)")
    for name, (_, text) in AFTER_TRAINING.items():
        sub.add_parser(name, help=f"{text} (see {name} --help)")
    sub.add_parser("sweep", help="train a set of specs with one recipe, one run folder each (see sweep --help)")
    sub.add_parser("compare", help="leaderboard, Pareto plot and curves of training runs (see compare --help)")
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
