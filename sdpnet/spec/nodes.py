"""The nodes of a parsed architecture (:class:`sdpnet.spec.tree.Spec` is the root), immutable, as the grammar.

``spec := stage ('-' stage)*``; a :class:`Stage` holds items (``,``), an :class:`Item` is a chain
(``+``) of units repeated ``repeat`` times (prefix ``Nx``), and a :class:`Unit` is a
:class:`Block` or a bracketed :class:`Stage`, repeated ``repeat`` times (postfix ``xN``).
Columns are kept for error messages and ignored by ``==``.

The nodes know no spelling: the printer, the JSON form and the checks read them, and the root ``Spec`` offers
those spellings as methods, so it lives above them (``tree.py``) and the nodes below.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

Value = Union[int, float, str, bool]


@dataclass(frozen=True)
class Block:
    """One block: ``DWC7(act=kelu)`` is ``Block("DWC", 7, (("act", "kelu"),))``; kwargs sorted by key."""

    name: str
    arg: int | None = None
    kwargs: tuple[tuple[str, Value], ...] = ()
    col: int = field(default=0, compare=False, repr=False)
    kwcols: tuple[int, ...] = field(default=(), compare=False, repr=False)  # columns of the kwargs' keys


@dataclass(frozen=True)
class Unit:
    """A block or a bracketed group, repeated ``repeat`` times (postfix ``xN``)."""

    node: Union[Block, "Stage"]
    repeat: int = 1


@dataclass(frozen=True)
class Item:
    """A ``+`` chain of units, repeated ``repeat`` times as a whole (prefix ``Nx``)."""

    chain: tuple[Unit, ...]
    repeat: int = 1


@dataclass(frozen=True)
class Stage:
    """A ``,``-separated sequence of items (a top-level stage or the inside of brackets)."""

    items: tuple[Item, ...]


def expand_stage(stage: Stage) -> Iterator[Block]:
    """Every block of ``stage`` in execution order, repeats unrolled."""
    for item in stage.items:
        for _ in range(item.repeat):
            for unit in item.chain:
                for _ in range(unit.repeat):
                    if isinstance(unit.node, Block):
                        yield unit.node
                    else:
                        yield from expand_stage(unit.node)
