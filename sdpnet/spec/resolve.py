"""Resolution: a :class:`ModelSpec` to a :class:`Plan`, every layer with its final keywords and shapes.

A generic walk over the blocks that reads their schemas and names no block (docs/spec.md, "Resolution"):
keyword values come from the block, else the hyperparameter the keyword names, else the keyword's default
(a :class:`~sdpnet.registry.Derived` default is computed from the others); widths follow each schema's
:class:`~sdpnet.registry.Width` (the stem's last tokenizer outputs ``dim``); grids follow each stride; the
head is completed with the blocks registered for the missing slots; drop-path grows linearly over the
residual body blocks. Anything that would not build is a :class:`SpecError` here, never a silent change.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any

from sdpnet.registry import MAX_WIDTH, TOKEN_KINDS, BlockSchema, Derived, blocks_where, default_block, get_schema
from sdpnet.spec.check import is_declaration, missing_needs, num_tokens, stage_roles
from sdpnet.spec.errors import SpecError
from sdpnet.spec.files import DEFAULTS, ModelSpec, load_spec
from sdpnet.spec.nodes import Block
from sdpnet.spec.plan import LayerPlan, Plan
from sdpnet.spec.printer import render


def resolve(model: ModelSpec | Any) -> Plan:
    """The build plan of a model spec (anything :func:`load_spec` takes); raises :class:`SpecError`."""
    model = model if isinstance(model, ModelSpec) else load_spec(model)
    spec = model.arch
    hp = {**DEFAULTS, **model.hparams}
    dim, num_classes, img_size = hp["dim"], hp["num_classes"], hp["img_size"]
    roles = stage_roles(spec)
    text, cols = (spec.source, None) if spec.source is not None else render(spec)

    def fail(message: str, block: Block, hint: str | None) -> SpecError:
        col = block.col if cols is None else cols.get(id(block), 0)
        return SpecError(message, text, col, span=len(block.name), hint=hint)

    seq = [(roles[s], b) for s, b in spec.expand() if not is_declaration(b)]
    last_tok = max(i for i, (r, b) in enumerate(seq) if r == "stem" and get_schema(b.name).tokenizer)
    n_res = sum(1 for r, b in seq if r == "body" and get_schema(b.name).residual)
    num_cls, num_reg = num_tokens(spec, "cls"), num_tokens(spec, "reg")

    body = [(r, b) for r, b in seq if r != "head"]
    head = [b for r, b in seq if r == "head"]
    head_kinds = {get_schema(b.name).kind_in("head") for b in head}
    if "pool" not in head_kinds:
        head.insert(0, Block(default_block("pool_cls" if num_cls else "pool")))
    if "classifier" not in head_kinds:
        head.append(Block(default_block("classifier")))

    context = {"num_classes": num_classes, "num_tokens": num_cls + num_reg, "num_cls": num_cls, "num_reg": num_reg}
    layers: list[LayerPlan] = []
    width, grid, stride, res_i, stem_dim = hp["in_chans"], (img_size, img_size), 1, 0, dim
    for i, (role, b) in enumerate(body + [("head", b) for b in head]):
        schema = get_schema(b.name)
        given = dict(b.kwargs)
        params = schema.params_for(role)
        kwargs: dict[str, Any] = {}
        if schema.arg is not None:
            kwargs[schema.arg] = schema.arg_default if b.arg is None else b.arg
        for p in params:
            kwargs[p.target] = (given[p.key] if p.key in given
                                else hp[p.hparam] if p.hparam and p.hparam in hp else p.default)

        kind = next((p.kind for p in params if p.kind and kwargs[p.target] is True), schema.kind_in(role))
        if role == "stem" and kind in TOKEN_KINDS:
            raise fail(f"{b.name} here is token-aware ({kind}), but tokens are created after the stem", b,
                       f"move {b.name} to the start of the body (after the first '-')")
        needs = schema.needs + tuple(n for p in params if p.needs and kwargs[p.target] for n in p.needs)
        lack = missing_needs(needs, num_cls, num_reg)
        if lack:
            raise fail(f"{b.name} needs {lack}", b, "declare them (e.g. P16+CLS1-...), or drop this block")

        out = _out_width(schema, role, kind, given, kwargs, width, dim, i == last_tok, num_classes)
        if not 1 <= out <= MAX_WIDTH and not (kind == "classifier" and out == 0):  # num_classes=0: no fc
            raise fail(f"{b.name} gives width {out}; widths are 1 to {MAX_WIDTH:,}", b,
                       "give it a smaller d=, or lower dim")
        if schema.width.key is not None and kind != "classifier":
            kwargs[schema.param(schema.width.key).target] = out
        if role == "body" and kind == "layer" and out != width and num_cls + num_reg:
            movers = " or ".join(f"{n}({get_schema(n).width.key}={out})" for n in
                                 blocks_where(lambda s: s.width.key is not None and "tokens" in s.kinds()))
            raise fail(f"{b.name} changes the width from {width} to {out} after the class/register tokens were "
                       f"created at width {stem_dim}; only a token-aware block can change it then", b,
                       f"put it in the stem stage (before the first '-'), or use {movers or 'a tokens block'}")

        for p in params:
            value = kwargs[p.target]
            if isinstance(value, Derived):
                value = kwargs[p.target] = value(kwargs, width)
            if p.range is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                why = p.range.why(value) if math.isfinite(value) else "must be finite"
                if why:
                    raise fail(f"{b.name}: {p.key}={value:g} {why}", b, f"{p.key} is in {p.range}")
            if p.divides and value is not None and width % value:
                raise fail(f"width {width} is not divisible by {p.key}={value} at {b.name}", b,
                           f"use {_divisor_hint(width, value, p.key)}, or change the width")

        s = _stride(schema, kwargs, width)
        if role != "head":
            new_grid = (grid[0] // s, grid[1] // s)
            if min(new_grid) < 1:
                raise fail(f"{b.name} divides the {grid[0]}x{grid[1]} grid by {s}: nothing is left at "
                           f"img_size {img_size}", b, f"use a smaller stride, or img_size >= {stride * s}")
        kwargs.update({c: grid if c == "grid" else context[c] for c in schema.context_in(role)})
        if role == "body" and schema.residual:
            kwargs["drop_path"] = hp["drop_path"] * res_i / max(1, n_res - 1)
            res_i += 1
        col = b.col if cols is None else cols.get(id(b), 0)
        layers.append(LayerPlan(b.name, role, kind, MappingProxyType(kwargs), width, out, grid, s, col))
        if i == last_tok:
            stem_dim = out
        if role != "head":
            grid, stride = new_grid, stride * s
        if kind != "classifier":
            width = out
    return Plan(
        layers=tuple(layers), num_cls=num_cls, num_reg=num_reg, dim=stem_dim,
        num_classes=num_classes, in_chans=hp["in_chans"], img_size=img_size,
        hparams=MappingProxyType(hp), stride=stride, text=text,
    )


def _out_width(schema: BlockSchema, role: str, kind: str, given: dict, kwargs: dict, width: int, dim: int,
               last_tokenizer: bool, num_classes: int) -> int:
    """The width a block outputs: classifiers give ``num_classes``; otherwise its :class:`Width` rule."""
    if kind == "classifier":
        return num_classes
    rule = schema.width
    if rule.key is not None and rule.key in given:
        return given[rule.key]
    if role == "stem" and schema.tokenizer and rule.key is not None:
        return dim if last_tokenizer or rule.stem is None else rule.stem
    factor = kwargs[rule.factor] if isinstance(rule.factor, str) else rule.factor
    return int(width * factor)


def _stride(schema: BlockSchema, kwargs: dict, width: int) -> int:
    """How much the block divides the grid, from its schema."""
    rule = schema.stride
    if isinstance(rule, Derived):
        return int(rule(kwargs, width))
    return int(kwargs[rule]) if isinstance(rule, str) else rule


def _divisor_hint(width: int, value: int, key: str) -> str:
    """``h=4 or h=8``: the divisors of ``width`` nearest ``value`` (``width`` is bounded, so is the search)."""
    divisors = sorted({d for i in range(1, math.isqrt(width) + 1) if width % i == 0 for d in (i, width // i)})
    near = [max((d for d in divisors if d < value), default=None), min((d for d in divisors if d > value), default=None)]
    return " or ".join(f"{key}={d}" for d in near if d is not None)
