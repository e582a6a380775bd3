"""Normalisation: one tree per spelling-independent architecture (rules listed in docs/spec.md).

Applied bottom-up, so a normalised tree is a fixed point:

1. a group holding one item with no prefix repeat and one unit loses its brackets
   (``[A]x3`` -> ``Ax3``, ``[Ax2]`` -> ``Ax2``, ``[[A,B]]x2`` -> ``[A,B]x2``), unless both
   the inner and the outer unit repeat (``[Ax2]x3`` stays);
2. in a chain, an unrepeated group holding one unrepeated item is spliced into the chain
   (``A+[B+C]`` -> ``A+B+C``);
3. a prefix repeat on a one-unit chain becomes a postfix repeat (``2xA`` -> ``Ax2``,
   ``2x[A,B]`` -> ``[A,B]x2``, ``2xAx3`` -> ``[Ax3]x2``);
4. in a stage or group, an unrepeated item that is just an unrepeated group is spliced into it
   (``A,[B,C],D`` -> ``A,B,C,D``).

Repeat counts of 1 are the default, so ``x1`` and ``1x`` vanish.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from sdpnet.spec.nodes import Block, Item, Stage, Unit

if TYPE_CHECKING:
    from sdpnet.spec.tree import Spec


def normalize(spec: Spec) -> Spec:
    """The normal form of ``spec`` (keeps ``source`` and block columns)."""
    return replace(spec, stages=tuple(_stage(s) for s in spec.stages))


def _stage(stage: Stage) -> Stage:
    items: list[Item] = []
    for item in (_item(i) for i in stage.items):
        if item.repeat == 1 and len(item.chain) == 1:
            u = item.chain[0]
            if u.repeat == 1 and isinstance(u.node, Stage):
                items.extend(u.node.items)
                continue
        items.append(item)
    return Stage(tuple(items))


def _unit(unit: Unit) -> Unit:
    if isinstance(unit.node, Block):
        return unit
    group = _stage(unit.node)
    if len(group.items) == 1 and group.items[0].repeat == 1 and len(group.items[0].chain) == 1:
        inner = group.items[0].chain[0]
        if unit.repeat == 1:
            return inner
        if inner.repeat == 1:
            return Unit(inner.node, unit.repeat)
    return Unit(group, unit.repeat)


def _item(item: Item) -> Item:
    chain: list[Unit] = []
    for u in (_unit(u) for u in item.chain):
        if u.repeat == 1 and isinstance(u.node, Stage) and len(u.node.items) == 1 and u.node.items[0].repeat == 1:
            chain.extend(u.node.items[0].chain)
        else:
            chain.append(u)
    if item.repeat != 1 and len(chain) == 1:
        u = chain[0]
        if u.repeat == 1:
            return Item((Unit(u.node, item.repeat),), 1)
        return Item((Unit(Stage((Item((u,), 1),)), item.repeat),), 1)
    return Item(tuple(chain), item.repeat)
