"""The canonical printer: a tree back to its one spelling (floats by ``repr``, bools as true/false)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from sdpnet.spec.nodes import Block, Item, Stage, Unit, Value

if TYPE_CHECKING:
    from sdpnet.spec.tree import Spec


def format_value(value: Value) -> str:
    """A keyword value as written in a spec: ``true``/``false``, ``repr`` of floats, ints and words as is."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def render(spec: Spec) -> tuple[str, dict[int, int]]:
    """The canonical string of ``spec`` and the column of every block in it (keyed by ``id(block)``)."""
    out: list[str] = []
    cols: dict[int, int] = {}
    pos = [0]

    def put(text: str) -> None:
        out.append(text)
        pos[0] += len(text)

    def block(b: Block) -> None:
        cols.setdefault(id(b), pos[0])
        put(b.name if b.arg is None else f"{b.name}{b.arg}")
        if b.kwargs:
            put("(" + ",".join(f"{k}={format_value(v)}" for k, v in b.kwargs) + ")")

    def unit(u: Unit) -> None:
        if isinstance(u.node, Block):
            block(u.node)
        else:
            put("[")
            stage(u.node)
            put("]")
        if u.repeat != 1:
            put(f"x{u.repeat}")

    def item(it: Item) -> None:
        if it.repeat != 1:
            put(f"{it.repeat}x")
        for i, u in enumerate(it.chain):
            if i:
                put("+")
            unit(u)

    def stage(st: Stage) -> None:
        for i, it in enumerate(st.items):
            if i:
                put(",")
            item(it)

    for i, st in enumerate(spec.stages):
        if i:
            put("-")
        stage(st)
    return "".join(out), cols
