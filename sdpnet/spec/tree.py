"""The parsed form of an architecture: a :class:`Spec`, the root of an immutable tree that mirrors the grammar
(its nodes are in :mod:`sdpnet.spec.nodes`), with its two spellings, the canonical string and the JSON tree.

Trees are normalised on construction by the parser (see docs/spec.md), so equal architectures written
canonically compare equal.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from sdpnet.spec import jsontree
from sdpnet.spec.nodes import Block, Stage, expand_stage
from sdpnet.spec.printer import render


@dataclass(frozen=True)
class Spec:
    """A whole architecture: ``-``-separated stages; the first is the stem, a trailing head stage is the head."""

    stages: tuple[Stage, ...]
    source: str | None = field(default=None, compare=False, repr=False)  # the text it was parsed from

    def __str__(self) -> str:
        """The canonical spec string: ``parse(str(spec)) == spec``."""
        return render(self)[0]

    def to_json(self) -> dict[str, Any]:
        """The JSON tree form (see docs/spec.md): ``Spec.from_json(spec.to_json()) == spec``."""
        return jsontree.to_json(self)

    @classmethod
    def from_json(cls, obj: Any, source: str | None = None) -> "Spec":
        """A spec from its JSON tree form, validated like a parsed string (``SpecError`` names the key path)."""
        return jsontree.from_json(obj, cls, source=source)

    def expand(self) -> Iterator[tuple[int, Block]]:
        """Every block in execution order, repeats unrolled, as ``(stage_index, block)``."""
        for i, stage in enumerate(self.stages):
            for block in expand_stage(stage):
                yield i, block
