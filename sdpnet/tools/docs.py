"""The docs' block tables, generated from the registry: ``python -m sdpnet docs`` writes them into
docs/spec.md (the vocabulary, its keywords, the norms/activations/position schemes) and docs/blocks.md (the
modules and constructors), between
``<!-- generated:NAME -->`` and ``<!-- end:NAME -->`` markers; ``--check`` fails when the files drift.
"""
from __future__ import annotations

import argparse
import inspect
import re
import sys
from pathlib import Path

from sdpnet.files import replace_atomically
from sdpnet.registry import (
    COMPONENTS, BlockSchema, Derived, Param, component_doc, get_block, get_component, get_schema, list_blocks,
    list_components,
)
from sdpnet.tools.cli import command_main

DOCS = Path(__file__).resolve().parents[2] / "docs"   # the source checkout's docs/


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")


def _integer(s: BlockSchema) -> str:
    if s.arg is None:
        return "—"
    how = "required" if s.arg_required else f"default {s.arg_default}"
    return f"`{s.arg}`, {how}" + (f", in {s.arg_range}" if s.arg_range else "")


def _stride(s: BlockSchema) -> str:
    if isinstance(s.stride, Derived):
        return s.stride.doc
    return f"`{s.stride}`" if isinstance(s.stride, str) else str(s.stride)


def _kind(s: BlockSchema) -> str:
    kind = s.kind if isinstance(s.kind, str) else ", ".join(f"{k} ({r})" for r, k in s.kind.items())
    switches = [f"{p.kind} when `{p.key}`" for p in s.params if p.kind]
    return kind + (f"; {', '.join(switches)}" if switches else "") + (", tokenizer" if s.tokenizer else "")


def _choices(p: Param) -> str:
    if isinstance(p.choices, str):
        return f" (a registered {p.choices}: see below)"
    return f" ({'/'.join(p.choices)})" if p.choices else ""


def component_table() -> str:
    """Markdown: one row per registered norm, activation and position scheme (name, meaning)."""
    rows = ["| registry | name | meaning |", "|---|---|---|"]
    for kind in COMPONENTS:
        rows += [f"| {kind} | `{name}` | {_cell(component_doc(kind, name))} |" for name in list_components(kind)]
    return "\n".join(rows)


def component_module_table() -> str:
    """Markdown: one row per registered norm, activation and position scheme: its constructor (file)."""
    import sdpnet.blocks  # noqa: F401  (torch: binds the built-in constructors)

    rows = ["| registry | name | constructor (file) |", "|---|---|---|"]
    for kind in COMPONENTS:
        for name in list_components(kind):
            factory = get_component(kind, name)
            where = Path(inspect.getfile(factory)).name
            rows.append(f"| {kind} | `{name}` | `{factory.__name__}` ({where}) |")
    return "\n".join(rows)


def vocabulary_table() -> str:
    """Markdown: one row per block (kind, roles, integer, width, stride, residual, meaning, example)."""
    rows = ["| block | kind | roles | integer | width | stride | residual | meaning | example |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in list_blocks():
        s = get_schema(name)
        width = "—" if s.declares else str(s.width) + (f", {s.width.stem} in the stem unless last" if s.width.stem else "")
        rows.append(f"| `{name}` | {_kind(s)} | {', '.join(s.roles)} | {_integer(s)} | {_cell(width)} | "
                    f"{_stride(s) if not s.declares else '—'} | {'yes' if s.residual else ''} | {_cell(s.doc)} | "
                    f"`{s.example}` |")
    return "\n".join(rows)


def keyword_table() -> str:
    """Markdown: one row per keyword (target, type, default, range, hyperparameter, roles, meaning)."""
    rows = ["| block | keyword | type | default | range | hyperparameter | applies in | meaning |",
            "|---|---|---|---|---|---|---|---|"]
    for name in list_blocks():
        for p in get_schema(name).params:
            kind = p.type.__name__ + _choices(p)
            extra = (", must divide the width" if p.divides else "") + (f"; needs {', '.join(p.needs)}" if p.needs else "")
            rows.append(f"| `{name}` | `{p.key}` → `{p.target}` | {kind} | {_cell(repr(p.default))} | "
                        f"{p.range or '—'} | {f'`{p.hparam}`' if p.hparam else '—'} | "
                        f"{', '.join(p.roles) if p.roles else 'all'} | {_cell(p.doc + extra)} |")
    return "\n".join(rows)


def module_table() -> str:
    """Markdown: one row per block and role: its module (file), kind and the context it takes."""
    import sdpnet.blocks  # noqa: F401  (torch: binds the built-in modules; the other tables need no torch)

    rows = ["| block | role | module (file) | kind | context |", "|---|---|---|---|---|"]
    for name in list_blocks():
        s = get_schema(name)
        for role in s.roles:
            if s.kind_in(role) == "declaration":
                continue
            factory = get_block(name, role)
            where = Path(inspect.getfile(factory)).name
            rows.append(f"| `{name}` | {role} | `{factory.__name__}` ({where}) | {s.kind_in(role)} | "
                        f"{', '.join(f'`{c}`' for c in s.context_in(role)) or '—'} |")
    return "\n".join(rows)


SECTIONS = {
    "spec.md": {"vocabulary": vocabulary_table, "keywords": keyword_table, "components": component_table},
    "blocks.md": {"modules": module_table, "component-modules": component_module_table},
}


def render(text: str, sections: dict) -> str:
    """``text`` with every generated section replaced by its current table."""
    for name, make in sections.items():
        pattern = re.compile(rf"(<!-- generated:{name} -->\n)(?:.*?\n)?(<!-- end:{name} -->)", re.S)
        if not pattern.search(text):
            raise ValueError(f"no <!-- generated:{name} --> ... <!-- end:{name} --> markers")
        text = pattern.sub(lambda m: m.group(1) + make() + "\n" + m.group(2), text)
    return text


def write_docs(check: bool = False, docs: Path = DOCS) -> list[str]:
    """Regenerate the tables in the docs (``check``: write nothing); returns the files that differed."""
    stale = []
    for file, sections in SECTIONS.items():
        path = docs / file
        old = path.read_text()
        new = render(old, sections)
        if new != old:
            stale.append(str(path))
            if not check:
                replace_atomically(path, new.encode())
    return stale


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 if a table is out of date")


def run(args: argparse.Namespace) -> int:
    stale = write_docs(check=args.check)
    for path in stale:
        print(f"{'stale' if args.check else 'updated'}: {path}")
    if args.check and stale:
        print("the docs' block tables differ from the registry; run: python -m sdpnet docs", file=sys.stderr)
        return 1
    return 0


main = command_main("docs")
