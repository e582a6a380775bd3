"""The parsed form of an architecture: an immutable tree that mirrors the grammar.

``spec := stage ('-' stage)*``; a :class:`Stage` holds items (``,``), an :class:`Item` is a chain
(``+``) of units repeated ``repeat`` times (prefix ``Nx``), and a :class:`Unit` is a
:class:`Block` or a bracketed :class:`Stage`, repeated ``repeat`` times (postfix ``xN``).
Trees are normalised on construction by the parser (see docs/spec.md), so equal architectures
written canonically compare equal. Columns are kept for error messages and ignored by ``==``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Union

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


@dataclass(frozen=True)
class Spec:
    """A whole architecture: ``-``-separated stages; the first is the stem, a trailing head stage is the head."""

    stages: tuple[Stage, ...]
    source: str | None = field(default=None, compare=False, repr=False)  # the text it was parsed from

    def __str__(self) -> str:
        """The canonical spec string: ``parse(str(spec)) == spec``."""
        from sdpnet.spec.printer import render

        return render(self)[0]

    def to_json(self) -> dict[str, Any]:
        """The JSON tree form (see docs/spec.md): ``Spec.from_json(spec.to_json()) == spec``."""
        from sdpnet.spec.jsontree import to_json

        return to_json(self)

    @classmethod
    def from_json(cls, obj: Any, source: str | None = None) -> "Spec":
        """A spec from its JSON tree form, validated like a parsed string (``SpecError`` names the key path)."""
        from sdpnet.spec.jsontree import from_json

        return from_json(obj, source=source)

    def expand(self) -> Iterator[tuple[int, Block]]:
        """Every block in execution order, repeats unrolled, as ``(stage_index, block)``."""
        for i, stage in enumerate(self.stages):
            for block in _expand_stage(stage):
                yield i, block


def _expand_stage(stage: Stage) -> Iterator[Block]:
    for item in stage.items:
        for _ in range(item.repeat):
            for unit in item.chain:
                for _ in range(unit.repeat):
                    if isinstance(unit.node, Block):
                        yield unit.node
                    else:
                        yield from _expand_stage(unit.node)
