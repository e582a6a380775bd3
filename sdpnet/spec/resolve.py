"""Resolution: a :class:`ModelSpec` to a :class:`Plan`, every layer with its final keywords.

Rules (docs/spec.md, "Resolution"): keyword values come from the block, else the hyperparameter
the keyword names, else the keyword's default; widths flow through the network (the stem's last
tokenizer outputs ``dim``); ``ENC`` heads default to width // 64 and must divide the width; the
head is completed with pooling and ``LIN``; drop-path grows linearly over the residual body blocks.
"""
from __future__ import annotations

from types import MappingProxyType
from typing import Any

from sdpnet.registry import get_schema
from sdpnet.spec.check import num_tokens, stage_roles
from sdpnet.spec.errors import SpecError
from sdpnet.spec.files import DEFAULTS, ModelSpec, load_spec
from sdpnet.spec.plan import LayerPlan, Plan
from sdpnet.spec.printer import render
from sdpnet.spec.tree import Block
from sdpnet.vocabulary import CLASSIFIER_BLOCKS, DECLARATION_BLOCKS, POOL_BLOCKS, TOKENIZER_BLOCKS

CT_WIDTH = 64  # width of an intermediate CCT tokenizer layer, as CCT-7/3x2


def resolve(model: ModelSpec | Any) -> Plan:
    """The build plan of a model spec (anything :func:`load_spec` takes); raises :class:`SpecError`."""
    model = model if isinstance(model, ModelSpec) else load_spec(model)
    spec = model.arch
    hp = {**DEFAULTS, **model.hparams}
    dim, num_classes = hp["dim"], hp["num_classes"]
    roles = stage_roles(spec)
    text, cols = (spec.source, None) if spec.source is not None else render(spec)

    def fail(message: str, block: Block, hint: str) -> SpecError:
        col = block.col if cols is None else cols.get(id(block), 0)
        return SpecError(message, text, col, span=len(block.name), hint=hint)

    seq = [(roles[s], b) for s, b in spec.expand() if b.name not in DECLARATION_BLOCKS]
    last_tok = max(i for i, (r, b) in enumerate(seq) if r == "stem" and b.name in TOKENIZER_BLOCKS)
    n_res = sum(1 for r, b in seq if r == "body" and get_schema(b.name).residual)
    num_cls, num_reg = num_tokens(spec, "CLS"), num_tokens(spec, "REG")

    body = [(r, b) for r, b in seq if r != "head"]
    head = [b for r, b in seq if r == "head"]
    if not any(b.name in POOL_BLOCKS for b in head):
        head.insert(0, Block("TOKS" if num_cls else "GAP"))
    if not any(b.name in CLASSIFIER_BLOCKS for b in head):
        head.append(Block("LIN"))

    layers: list[LayerPlan] = []
    width = hp["in_chans"]
    res_i = 0
    for i, (role, b) in enumerate(body + [("head", b) for b in head]):
        schema = get_schema(b.name)
        given = dict(b.kwargs)
        kwargs: dict[str, Any] = {}
        if schema.arg is not None:
            kwargs[schema.arg] = schema.arg_default if b.arg is None else b.arg
        for p in schema.params_for(role):
            if p.key in given:
                kwargs[p.target] = given[p.key]
            elif p.hparam and p.hparam in hp:
                kwargs[p.target] = hp[p.hparam]
            else:
                kwargs[p.target] = p.default
        d = given.get("d")
        out = width
        if role == "stem" and b.name in TOKENIZER_BLOCKS:
            out = d or (dim if i == last_tok or b.name != "CT" else CT_WIDTH)
        elif role == "body" and b.name == "CONV":
            out = d or width
            if out != width and (num_cls or num_reg):
                raise fail(f"CONV changes the width from {width} to {out} after the class/register tokens "
                           f"were created at width {stem_dim}; only DOWN projects tokens", b,
                           f"put this CONV in the stem stage (before the first '-'), or use DOWN(d={out})")
        elif role == "body" and b.name == "DOWN":
            out = d or 2 * width
        elif role == "head" and b.name in CLASSIFIER_BLOCKS:
            out = num_classes
        if schema.param("d") is not None:
            kwargs["dim"] = out
        if b.name == "POS" and kwargs.get("cls") and (role == "stem" or not num_cls):
            where = "in the stem, before the tokens exist" if num_cls else "but the spec declares no class tokens"
            raise fail(f"POS(cls=true) gives class tokens positions {where}", b,
                       "declare CLSn and put POS(cls=true) at the start of the body (P16+CLS-POS(cls=true)+ENC...)"
                       if num_cls else "add CLSn, or drop cls=true")
        if b.name == "ENC":
            heads = kwargs.get("num_heads") or max(1, width // 64)
            if width % heads:
                below = max(h for h in range(1, heads) if width % h == 0)
                above = [h for h in range(heads + 1, width + 1) if width % h == 0][:1]
                ok = " or ".join(f"h={h}" for h in [below, *above])
                raise fail(f"dim {width} is not divisible by heads {heads} at ENC", b, f"use {ok}, or change dim")
            kwargs["num_heads"] = heads
        if role == "body" and schema.residual:
            kwargs["drop_path"] = hp["drop_path"] * res_i / max(1, n_res - 1)
            res_i += 1
        layers.append(LayerPlan(b.name, role, MappingProxyType(kwargs), width, out, b.col))
        if i == last_tok:
            stem_dim = out
        width = out if not (role == "head" and b.name in CLASSIFIER_BLOCKS) else width
    return Plan(
        layers=tuple(layers), num_cls=num_cls, num_reg=num_reg, dim=stem_dim,
        num_classes=num_classes, in_chans=hp["in_chans"], img_size=hp["img_size"],
        hparams=MappingProxyType(hp),
    )
