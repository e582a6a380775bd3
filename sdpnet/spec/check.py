"""Checks shared by the string parser and the JSON tree reader: values, sizes and roles.

Errors are raised through a *locator* that knows how to point at a block (a column in a spec
string, or a key path in a JSON tree), so both forms report the same problems the same way.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from sdpnet import vocabulary as _vocabulary  # noqa: F401  (declares the built-in blocks)
from sdpnet.registry import BlockSchema, Param, blocks_where, get_schema, list_blocks
from sdpnet.spec.errors import SpecError
from sdpnet.spec.nodes import Block, Stage, Unit, Value, expand_stage
from sdpnet.spec.text import BOOL_WORDS, nearest, parse_bool, suggest

if TYPE_CHECKING:
    from sdpnet.spec.tree import Spec

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
    if why is None and schema.arg_range is not None and schema.arg_range.why(arg):
        why = f"{schema.name}'s {schema.arg} {schema.arg_range.why(arg)}, got {arg}"
        return why, f"{schema.arg} is in {schema.arg_range}" + (f", as in {schema.example}" if schema.example else "")
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
    """``value`` as the keyword's type, within its range; raises ``ValueError`` saying what would be valid."""
    value = _coerce(param, value)
    if param.range is not None:
        why = param.range.why(value)
        if why:
            raise ValueError(f"{param.key}={value:g} {why} ({param.key} is in {param.range})")
    return value


def _coerce(param: Param, value: Any) -> Value:
    kind = param.type
    if kind is bool:
        try:
            return parse_bool(value)
        except ValueError:
            raise ValueError(f"{param.key} takes a bool ({BOOL_WORDS}), got {value!r}") from None
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
    allowed = param.allowed()
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"{param.key} takes a word" + (f" ({', '.join(allowed)})" if allowed else "")
                         + f", got {value!r}")
    if allowed is not None and value not in allowed:
        near = nearest(value, allowed)
        raise ValueError(f"{param.key}={value} is not one of {', '.join(allowed)}"
                         + (f"; did you mean {near}?" if near else ""))
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
    schemas = [get_schema(n) for n in {b.name for b in walk(stage)}]
    return (all(s is not None and "head" in s.roles for s in schemas)
            and any(s.kind_in("head") != "declaration" for s in schemas))


def is_declaration(block: Block) -> bool:
    """Whether ``block`` declares tokens rather than being a layer."""
    return get_schema(block.name).declares is not None


def tokenizer_names() -> str:
    """The blocks that may open the stem, for messages (``CONV, CT, P``)."""
    return ", ".join(blocks_where(lambda s: s.tokenizer))


def stage_roles(spec: Spec) -> list[str]:
    """``stem`` for the first stage, ``head`` for a last stage of head blocks, ``body`` otherwise."""
    roles = ["stem"] + ["body"] * (len(spec.stages) - 1)
    if len(spec.stages) > 1 and is_head(spec.stages[-1]):
        roles[-1] = "head"
    return roles


def check_roles(spec: Spec, loc: Locator) -> None:
    """Stem, body and head rules (docs/spec.md, "Where blocks may stand"), and what blocks need."""
    blocks = [list(walk(stage)) for stage in spec.stages]
    if not any(get_schema(b.name).tokenizer for b in blocks[0]):
        raise loc.error(f"a spec with no stem: the first stage has no tokenizer ({tokenizer_names()})",
                        blocks[0][0], hint="start the spec with a stem, as in P16-... or CT3x2-...")
    roles = stage_roles(spec)
    needy = []
    for stage_blocks, role in zip(blocks, roles):
        for b in stage_blocks:
            schema = get_schema(b.name)
            if role not in schema.roles:
                head_names = ", ".join(n for n in list_blocks() if "head" in get_schema(n).roles)
                raise _misplaced(b, schema, role, loc, head_names)
            if b.kwargs:
                keys = _keys(schema, role)
                for key, _ in b.kwargs:
                    if key not in keys:
                        raise loc.error(f"{b.name} in the {role} has no keyword {key!r}", b, key,
                                        keyword_hint(schema, key, role))
            if schema.needs or (b.kwargs and any(p.needs for p in schema.params)):
                needy.append((b, schema))
    first = next(b for b in expand_stage(spec.stages[0]) if not is_declaration(b))
    if not get_schema(first.name).tokenizer:
        raise loc.error(f"{first.name} comes before the stem's tokenizer", first,
                        hint=f"the stem starts with a tokenizer ({tokenizer_names()}), as in P16+POS")
    if roles[-1] == "head":
        _check_head(spec, loc)
    if needy:
        num_cls, num_reg = num_tokens(spec, "cls"), num_tokens(spec, "reg")
        for b, schema in needy:
            given = dict(b.kwargs)
            needs = schema.needs + tuple(n for p in schema.params if p.needs and given.get(p.key) for n in p.needs)
            lack = missing_needs(needs, num_cls, num_reg)
            if lack:
                raise loc.error(f"{b.name} needs {lack}", b, hint="declare them (e.g. P16+CLS1-...), or drop this block")


_KEYS: dict[tuple[int, str], frozenset[str]] = {}


def _keys(schema: BlockSchema, role: str) -> frozenset[str]:
    """The keywords of ``schema`` in ``role`` (cached: schemas are immutable)."""
    key = (id(schema), role)
    if key not in _KEYS:
        _KEYS[key] = frozenset(valid_keys(schema, role))
    return _KEYS[key]


def _misplaced(b: Block, schema: BlockSchema, role: str, loc: Locator, head_names: str) -> SpecError:
    if schema.roles == ("stem",):
        return loc.error(f"a stem block in the body: {b.name} can only stand in the first stage", b,
                         hint="move it before the first '-'")
    if schema.roles == ("head",):
        kind = schema.kind_in("head")
        what = "pooling" if kind == "pool" else f"classifier {b.name}" if kind == "classifier" else b.name
        return loc.error(f"{what} outside the head: {b.name} can only stand in the head", b,
                         hint=f"the head is the last stage and holds only head blocks ({head_names}); "
                              f"start it with '-', as in ...-GAP+LIN")
    if role == "stem":
        return loc.error(f"{b.name} cannot stand in the stem (the first stage)", b,
                         hint="start the body with '-', as in P16-DWC7")
    return loc.error(f"{b.name} cannot stand in the {role}", b, hint=f"{b.name} stands in the {', '.join(schema.roles)}")


def num_tokens(spec: Spec, declares: str) -> int:
    """Tokens of one sort (``cls`` or ``reg``) declared over the whole spec, repeats included (counted by
    multiplying repeats, never by unrolling)."""
    return sum(_declared(stage, declares) for stage in spec.stages)


def _declared(stage: Stage, declares: str) -> int:
    total = 0
    for item in stage.items:
        n = 0
        for unit in item.chain:
            node = unit.node
            if isinstance(node, Block):
                schema = get_schema(node.name)
                if schema.declares == declares:
                    n += unit.repeat * ((schema.arg_default or 1) if node.arg is None else node.arg)
            else:
                n += unit.repeat * _declared(node, declares)
        total += item.repeat * n
    return total


def missing_needs(needs: tuple[str, ...], num_cls: int, num_reg: int) -> str | None:
    """The first of ``needs`` (registry NEEDS keys) the network lacks, as a phrase, or None."""
    for need in needs:
        if need == "cls" and num_cls == 0:
            return "class tokens, but no class tokens are declared"
        if need == "tokens" and num_cls + num_reg == 0:
            return "class or register tokens, but no tokens are declared"
    return None


def _check_head(spec: Spec, loc: Locator) -> None:
    seq = [b for b in expand_stage(spec.stages[-1]) if not is_declaration(b)]  # bounded by MAX_BLOCKS
    pools = [b for b in seq if get_schema(b.name).kind_in("head") == "pool"]
    classifiers = [b for b in seq if get_schema(b.name).kind_in("head") == "classifier"]
    if len(pools) > 1:
        raise loc.error(f"two pooling blocks in the head ({pools[0].name} and {pools[1].name})", pools[1],
                        hint="the head pools once, then classifies, as in GAP+LIN")
    if len(classifiers) > 1:
        raise loc.error(f"two classifiers in the head ({classifiers[0].name} and {classifiers[1].name})",
                        classifiers[1], hint="the head ends in one classifier: one of "
                        + ", ".join(blocks_where(lambda s: "head" in s.roles and s.kind_in("head") == "classifier")))
    if classifiers and seq[-1] is not classifiers[0]:
        after = seq[seq.index(classifiers[0]) + 1]
        raise loc.error(f"{after.name} comes after the classifier {classifiers[0].name}", after,
                        hint="the classifier is the last block of the head, as in GAP+LIN")
