"""Command line: ``python -m sdpnet parse SPEC``, ``blocks``, ``docs``, ``summary ...``, ``plot ...``,
``sweep ...`` (train a set of specs with one recipe), ``search ...`` (an Optuna study over templates) and
``compare ...`` (a leaderboard over runs).
After training: ``evaluate``, ``predict``, ``export`` and ``attention`` on a run folder (each with ``--help``).

A bad spec prints the error (with the caret under the offending text) and exits with status 2.

Every subcommand is one module of :mod:`sdpnet.tools` with a docstring (its ``--help``: the first paragraph is
the description, the rest the epilog), ``add_arguments(parser)`` and ``run(args) -> int`` (the exit status).
:func:`run_command` is the one place that builds a subcommand's parser, runs it and turns errors into one line
on stderr: bad input (:class:`UsageError`, :class:`~sdpnet.spec.SpecError`, any other ``ValueError``, a file
that does not exist) exits with status 2, a read or write that failed (any other ``OSError``) with status 1.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from sdpnet.files import os_error_text
from sdpnet.plugins import ENV, env_plugins, load_plugins
from sdpnet.spec import SpecError
# The one usage error of the package (train_ffcv.py's too): bad input, one line, exit status 2. The tools raise it
# for a run or weights file that cannot be opened and for options that do not fit; torch-free.
from sdpnet.train.errors import UsageError

__all__ = ["COMMANDS", "Command", "UsageError", "run_command", "command_main", "output_path", "main"]

PROG = "python -m sdpnet"


@dataclass(frozen=True)
class Command:
    """A subcommand: the module that implements it, its line in ``python -m sdpnet --help`` and how its error
    lines start (each command keeps the prefix it printed before the commands shared this module)."""

    module: str
    help: str
    prefix: str = "error: "


# The modules are imported by name only when their command runs (run_command): `parse` and `blocks` never
# import torch, so a spec is checked in milliseconds; the others import torch (or pandas) themselves.
COMMANDS = {
    "parse": Command("sdpnet.tools.parse", "print a spec's canonical form and its JSON tree"),
    "blocks": Command("sdpnet.tools.blocks", "list the block vocabulary"),
    "docs": Command("sdpnet.tools.docs", "regenerate the block tables in docs/spec.md and docs/blocks.md"),
    "summary": Command("sdpnet.tools.summary", "layer table and parameter counts of a spec (see summary --help)"),
    "plot": Command("sdpnet.tools.plot", "plot training curves (see plot --help)", "sdpnet plot: error: "),
    "gallery": Command("sdpnet.tools.gallery",
                       "the hybrids of specs/gallery with params and FLOPs (see gallery --help)"),
    "evaluate": Command("sdpnet.tools.evaluate", "loss, top-1/5, per-class accuracy, confusion matrix, resolution "
                        "sweep of a run (see evaluate --help)", "evaluate: error: "),
    "predict": Command("sdpnet.tools.predict", "top-k classes of image files, preprocessed as the run validates "
                       "(see predict --help)", "predict: error: "),
    "export": Command("sdpnet.tools.export", "write a run's model as safetensors, ONNX or a torch.export program "
                      "(checked) (see export --help)", "export: error: "),
    "attention": Command("sdpnet.tools.attention", "draw what each class token attends to, per layer and head "
                         "(see attention --help)", "attention: error: "),
    "sweep": Command("sdpnet.tools.sweep", "train a set of specs with one recipe, one run folder each (see sweep "
                     "--help)", f"{PROG} sweep: error: "),
    "search": Command("sdpnet.tools.search", "an Optuna study over spec templates with ranges, one run folder per "
                      "trial, pruning, several objectives, a database shared by machines (see search --help)",
                      f"{PROG} search: error: "),
    "compare": Command("sdpnet.tools.compare", "leaderboard, Pareto plot and curves of training runs (see compare "
                       "--help)", "sdpnet compare: error: "),
}


def run_command(name: str, argv: Sequence[str]) -> int:
    """Run subcommand ``name`` with the arguments ``argv`` (those after its name); returns the exit status.

    A module may define ``parse_args(parser, argv) -> Namespace`` to parse its arguments itself (``sweep``
    passes the options it does not know on to train_ffcv.py); errors it raises are reported like run's.
    """
    command = COMMANDS[name]
    module = importlib.import_module(command.module)
    description, _, epilog = (module.__doc__ or "").strip().partition("\n\n")
    parser = argparse.ArgumentParser(prog=f"{PROG} {name}", description=description, epilog=epilog or None,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    module.add_arguments(parser)
    parser.add_argument("--import", dest="plugins", action="append", default=[], metavar="MODULE_OR_FILE",
                        help="load a plugin (module or .py file) that registers blocks; repeatable; also "
                             "SDPNET_PLUGINS and installed entry points of group sdpnet.plugins")
    parse = getattr(module, "parse_args", None)
    try:
        args = parse(parser, list(argv)) if parse else parser.parse_args(list(argv))
        load_plugins(args.plugins)
        if args.plugins:   # processes it starts (sweep's train_ffcv.py runs) load them too, and record them
            os.environ[ENV] = os.pathsep.join([*(str(Path(p).resolve()) if p.endswith(".py") else p
                                                 for p in args.plugins), *env_plugins()])
        return module.run(args)
    except (SpecError, ValueError, FileNotFoundError) as e:   # bad input; UsageError is a ValueError
        # one line per problem (an error with ``problems`` has several); carets and hints follow a problem's first line
        for problem in getattr(e, "problems", None) or [str(e)]:
            print(f"{command.prefix}{problem}", file=sys.stderr)
        return 2
    except BrokenPipeError:   # the reader of stdout went away (`| head`): nothing to report, nothing to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as e:   # a read or write that failed: disk full, permission denied, ...
        print(f"{command.prefix}{f'{e.filename}: ' if e.filename else ''}{os_error_text(e)}", file=sys.stderr)
        return 1


def command_main(name: str) -> Callable[..., int]:
    """``main(argv=None)`` of subcommand ``name``, to call it from Python (argv default: ``sys.argv[1:]``)."""

    def main(argv: Sequence[str] | None = None) -> int:
        return run_command(name, sys.argv[1:] if argv is None else argv)

    main.__doc__ = f"``{PROG} {name} ARGV...``; returns the exit status."
    return main


def output_path(args: argparse.Namespace, run: Path | None, inside: str, beside: str) -> Path:
    """Where a subcommand on ``args.run`` writes: ``args.out`` when given; else ``inside`` in the run folder
    (``run``, None for a weights file); else ``beside`` next to the weights file, ``{stem}`` standing for the
    file's name without its suffix (``{stem}-eval``)."""
    if args.out:
        return Path(args.out)
    if run is not None:
        return run / inside
    source = Path(args.run)
    return source.with_name(beside.format(stem=source.stem))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a bad spec)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        return run_command(argv[0], argv[1:])
    # no command, --help or an unknown command: argparse prints the list (or the error) and exits
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.help, add_help=False)
    args, rest = parser.parse_known_args(argv)
    return run_command(args.command, rest)


if __name__ == "__main__":
    sys.exit(main())
