"""``python -m sdpnet blocks``: the block vocabulary, one block a line pair: roles, integer argument, keywords,
meaning and an example; then the values of ``norm=``, ``act=`` and ``pos=`` keywords, one a line (read from the
registries; no torch)."""
from __future__ import annotations

import argparse

from sdpnet.registry import COMPONENTS, component_doc, get_schema, list_blocks, list_components
from sdpnet.tools.cli import command_main

__all__ = ["main"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No arguments."""


def run(args: argparse.Namespace) -> int:
    for name in list_blocks():
        s = get_schema(name)
        arg = f"{s.arg}{'' if s.arg_required else f' (optional, default {s.arg_default})'}" if s.arg else "-"
        keys = ", ".join(p.key + (f"[{'/'.join(p.roles)}]" if p.roles else "") for p in s.params) or "-"
        print(f"{name:8} {'/'.join(s.roles):16} arg: {arg:36} keywords: {keys}")
        print(f"{'':8} {s.doc}  e.g. {s.example}")
    for kind in COMPONENTS:
        print(f"\n{kind} values ({kind}= keywords and their hyperparameters):")
        for name in list_components(kind):
            print(f"  {name:10} {component_doc(kind, name)}")
    return 0


main = command_main("blocks")
