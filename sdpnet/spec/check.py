"""Checks shared by the string parser and the JSON tree reader: values, sizes and roles.

Errors are raised through a *locator* that knows how to point at a block (a column in a spec
string, or a key path in a JSON tree), so both forms report the same problems the same way.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterator, Protocol

from sdpnet import vocabulary as _vocabulary  # noqa: F401  (declares the built-in blocks)
from sdpnet.registry import BlockSchema, Param, get_schema, list_blocks
from sdpnet.spec.errors import SpecError, suggest
from sdpnet.spec.tree import Block, Spec, Stage, Unit, Value
from sdpnet.vocabulary import CLASSIFIER_BLOCKS, DECLARATION_BLOCKS, POOL_BLOCKS, TOKENIZER_BLOCKS

MAX_BLOCKS = 10_000  # total blocks after unrolling repeats
MAX_INT = 1_000_000  # largest repeat count, main argument or integer keyword
MAX_DEPTH = 64  # bracket nesting


class Locator(Protocol):
    def error(self, message: str, block: Block | None, key: str | None = None, hint: str | None = None) -> SpecError:
        """A SpecError pointing at ``block`` (or one of its keywords)."""


def schema_of(name: str, fail: Callable[[str, str | None], SpecError]) -> BlockSchema:
    """The schema of block ``name``; ``fail(message, hint)`` builds the error for an unknown name."""
    schema = get_schema(name)
    if schema is None:
        raise fail(f"unknown block {name!r}", suggest(name, list_blocks(), "known blocks"))
    return schema


def check_int(value: int, what: str) -> str | None:
    """Why ``value`` is not a valid count/argument, or None."""
    if value < 1:
        return f"{what} must be >= 1, got {value}"
    if value > MAX_INT:
        return f"{what} {value} is too large (at most {MAX_INT:,})"
    return None


def check_arg(schema: BlockSchema, arg: int | None) -> tuple[str, str] | None:
    """Why ``arg`` is not a valid main argument of the block (message, hint), or None."""
    if arg is None:
        if schema.arg is not None and schema.arg_required:
            return (f"{schema.name} needs an integer ({schema.arg})",
                    f"write it after the name, as in {schema.example or schema.name + '3'}")
        return None
    if schema.arg is None:
        return (f"{schema.name} takes no integer argument, got {schema.name}{arg}",
                f"write {schema.name} alone" + (f", as in {schema.example}" if schema.example else ""))
    why = check_int(arg, f"{schema.name}'s {schema.arg}")
    return (why, f"as in {schema.example}" if schema.example else None) if why else None


def valid_keys(schema: BlockSchema, role: str | None = None) -> list[str]:
    """The keywords of the block (for ``role`` if given)."""
    params = schema.params if role is None else schema.params_for(role)
    return [p.key for p in params]


def keyword_hint(schema: BlockSchema, key: str, role: str | None = None) -> str:
    keys = valid_keys(schema, role)
    where = f" in the {role}" if role else ""
    return suggest(key, keys, f"{schema.name}{where} takes") if keys else f"{schema.name}{where} takes no keywords"


def coerce(param: Param, value: Any) -> Value:
    """``value`` as the keyword's type; raises ``ValueError`` saying what would be valid."""
    kind = param.type
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError(f"{param.key} takes a bool (0, 1, true or false), got {value!r}")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            why = check_int(value, param.key)
            if why:
                raise ValueError(why)
            return value
        raise ValueError(f"{param.key} takes an integer, got {value!r}")
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > 10**15:
                raise ValueError(f"{param.key} = {value} is too large")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{param.key} takes a finite number, got {value!r}")
            return value
        raise ValueError(f"{param.key} takes a number, got {value!r}")
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"{param.key} takes a word" + (f" ({', '.join(param.choices)})" if param.choices else "")
                         + f", got {value!r}")
    if param.choices is not None and value not in param.choices:
        raise ValueError(f"{param.key}={value} is not one of {', '.join(param.choices)}")
    return value


def walk(stage: Stage) -> Iterator[Block]:
    """Every block node of a stage, once per occurrence in the tree (repeats not unrolled)."""
    for item in stage.items:
        for unit in item.chain:
            if isinstance(unit.node, Block):
                yield unit.node
            else:
                yield from walk(unit.node)


def count_stage(stage: Stage) -> int:
    """Blocks in a stage after unrolling repeats (callers bound it by ``MAX_BLOCKS`` first)."""
    return sum(item.repeat * sum(_count_unit(u) for u in item.chain) for item in stage.items)


def _count_unit(unit: Unit) -> int:
    return unit.repeat * (1 if isinstance(unit.node, Block) else count_stage(unit.node))


def is_head(stage: Stage) -> bool:
    """Whether a last stage is the head: only head blocks, at least one that is not a declaration."""
    names = {b.name for b in walk(stage)}
    schemas = [get_schema(n) for n in names]
    return (all(s is not None and "head" in s.roles for s in schemas)
            and any(n not in DECLARATION_BLOCKS for n in names))


def stage_roles(spec: Spec) -> list[str]:
    """``stem`` for the first stage, ``head`` for a last stage of head blocks, ``body`` otherwise."""
    roles = ["stem"] + ["body"] * (len(spec.stages) - 1)
    if len(spec.stages) > 1 and is_head(spec.stages[-1]):
        roles[-1] = "head"
    return roles


def _stage_blocks(stage: Stage) -> Iterator[Block]:
    """The stage's blocks in execution order, repeats unrolled (bounded by ``MAX_BLOCKS``)."""
    yield from (b for _, b in Spec((stage,)).expand())


def check_roles(spec: Spec, loc: Locator) -> None:
    """Stem, body and head rules (docs/spec.md, "Where blocks may stand")."""
    if not any(b.name in TOKENIZER_BLOCKS for b in walk(spec.stages[0])):
        raise loc.error("a spec with no stem: the first stage has no tokenizer (P, CT or CONV)",
                        next(walk(spec.stages[0])), hint="start the spec with a stem, as in P16-... or CT3x2-...")
    roles = stage_roles(spec)
    head_names = ", ".join(n for n in list_blocks() if "head" in get_schema(n).roles)
    for stage, role in zip(spec.stages, roles):
        for b in walk(stage):
            schema = get_schema(b.name)
            if role not in schema.roles:
                raise _misplaced(b, schema, role, loc, head_names)
            for key, _ in b.kwargs:
                if key not in valid_keys(schema, role):
                    raise loc.error(f"{b.name} in the {role} has no keyword {key!r}", b, key,
                                    keyword_hint(schema, key, role))
    stem = [b for b in _stage_blocks(spec.stages[0]) if b.name not in DECLARATION_BLOCKS]
    if stem[0].name not in TOKENIZER_BLOCKS:
        raise loc.error(f"{stem[0].name} comes before the stem's tokenizer", stem[0],
                        hint="the stem starts with P, CT or CONV, as in P16+POS")
    if roles[-1] == "head":
        _check_head(spec, loc)


def _misplaced(b: Block, schema: BlockSchema, role: str, loc: Locator, head_names: str) -> SpecError:
    if schema.roles == ("stem",):
        return loc.error(f"a stem block in the body: {b.name} can only stand in the first stage", b,
                         hint="move it before the first '-'")
    if schema.roles == ("head",):
        what = "pooling" if b.name in POOL_BLOCKS else f"classifier {b.name}" if b.name in CLASSIFIER_BLOCKS else b.name
        return loc.error(f"{what} outside the head: {b.name} can only stand in the head", b,
                         hint=f"the head is the last stage and holds only head blocks ({head_names}); "
                              f"start it with '-', as in ...-GAP+LIN")
    if role == "stem":
        return loc.error(f"{b.name} cannot stand in the stem (the first stage)", b,
                         hint="start the body with '-', as in P16-DWC7")
    return loc.error(f"{b.name} cannot stand in the {role}", b, hint=f"{b.name} stands in the {', '.join(schema.roles)}")


def num_tokens(spec: Spec, name: str) -> int:
    """Tokens declared by ``CLS`` (or ``REG``) blocks over the whole spec, repeats included."""
    default = get_schema(name).arg_default or 1
    return sum(default if b.arg is None else b.arg for _, b in spec.expand() if b.name == name)


def _check_head(spec: Spec, loc: Locator) -> None:
    seq = [b for b in _stage_blocks(spec.stages[-1]) if b.name not in DECLARATION_BLOCKS]
    pools = [b for b in seq if b.name in POOL_BLOCKS]
    classifiers = [b for b in seq if b.name in CLASSIFIER_BLOCKS]
    if len(pools) > 1:
        raise loc.error(f"two pooling blocks in the head ({pools[0].name} and {pools[1].name})", pools[1],
                        hint="the head pools once, then classifies, as in GAP+LIN")
    if len(classifiers) > 1:
        raise loc.error(f"two classifiers in the head ({classifiers[0].name} and {classifiers[1].name})",
                        classifiers[1], hint="the head ends in one classifier, LIN or MLP")
    if classifiers and seq[-1] is not classifiers[0]:
        after = seq[seq.index(classifiers[0]) + 1]
        raise loc.error(f"{after.name} comes after the classifier {classifiers[0].name}", after,
                        hint="the classifier is the last block of the head, as in GAP+LIN")
    toks = next((b for b in pools if b.name == "TOKS"), None)
    if toks is not None and num_tokens(spec, "CLS") == 0:
        raise loc.error("TOKS pools the class tokens, but no class tokens are declared", toks,
                        hint="declare them (e.g. P16+CLS1-...) or pool the image tokens with GAP")
