"""The JSON tree form of a spec (docs/spec.md, "JSON tree form").

``{"stages": [[item, ...], ...]}`` where an item is a unit (when it has no prefix repeat and one
unit) or ``{"chain": [unit, ...], "repeat": n}``, and a unit is
``{"block": "DWC", "arg": 7, "kwargs": {"act": "relu"}, "repeat": 3}`` or
``{"group": [item, ...], "repeat": 17}``. ``arg``, ``kwargs`` and ``repeat`` (default 1) are
omitted when absent. Reading validates like the parser; errors name the key path.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdpnet.spec import check
from sdpnet.spec.errors import SpecError
from sdpnet.spec.nodes import Block, Item, Stage, Unit, Value
from sdpnet.spec.normalize import normalize
from sdpnet.spec.text import suggest

if TYPE_CHECKING:
    from sdpnet.spec.tree import Spec


def to_json(spec: Spec) -> dict[str, Any]:
    """The JSON tree of ``spec`` (plain dicts, lists, strings and numbers)."""
    return {"stages": [_stage(s) for s in spec.stages]}


def _stage(stage: Stage) -> list[Any]:
    return [_item(i) for i in stage.items]


def _item(item: Item) -> dict[str, Any]:
    if item.repeat == 1 and len(item.chain) == 1:
        return _unit(item.chain[0])
    out: dict[str, Any] = {"chain": [_unit(u) for u in item.chain]}
    if item.repeat != 1:
        out["repeat"] = item.repeat
    return out


def _unit(unit: Unit) -> dict[str, Any]:
    node = unit.node
    if isinstance(node, Block):
        out: dict[str, Any] = {"block": node.name}
        if node.arg is not None:
            out["arg"] = node.arg
        if node.kwargs:
            out["kwargs"] = dict(node.kwargs)
    else:
        out = {"group": _stage(node)}
    if unit.repeat != 1:
        out["repeat"] = unit.repeat
    return out


def from_json(obj: Any, spec_type: type[Spec], source: str | None = None, path: str = "") -> Spec:
    """A validated, normalised ``spec_type`` (:class:`Spec`, whose ``from_json`` passes itself: the reader below it
    imports no class above) from its JSON tree; ``path`` prefixes key paths in errors."""
    reader = _Reader(source, path)
    if not isinstance(obj, dict) or set(obj) != {"stages"}:
        raise reader.fail("a JSON spec tree is an object with one key, \"stages\"", path or "(top)")
    stages = reader.list(obj["stages"], f"{path}.stages" if path else "stages", "stages")
    spec = spec_type(tuple(reader.stage(s, f"{reader.p('stages')}[{i}]") for i, s in enumerate(stages)))
    total = 0
    for i, stage in enumerate(spec.stages):
        total += check.count_stage(stage)
        if total > check.MAX_BLOCKS:
            raise reader.fail(f"the spec unrolls to more than {check.MAX_BLOCKS:,} blocks", f"{reader.p('stages')}[{i}]")
    spec = normalize(spec)
    check.check_roles(spec, reader)
    return spec


class _Reader:
    def __init__(self, source: str | None, prefix: str) -> None:
        self.source = source
        self.prefix = prefix
        self.paths: dict[int, str] = {}
        self.depth = 0

    def p(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def fail(self, message: str, path: str, hint: str | None = None) -> SpecError:
        return SpecError(message, source=self.source, path=path, hint=hint)

    def error(self, message: str, block: Block | None, key: str | None = None, hint: str | None = None) -> SpecError:
        path = self.paths.get(id(block), "stages") if block is not None else "stages"
        return self.fail(message, f"{path}.kwargs.{key}" if key else path, hint)

    def list(self, obj: Any, path: str, what: str) -> list[Any]:
        if not isinstance(obj, list) or not obj:
            raise self.fail(f"{what} must be a non-empty list, got {_show(obj)}", path)
        return obj

    def count(self, obj: dict, path: str) -> int:
        value = obj.get("repeat", 1)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.fail(f"repeat must be an integer, got {_show(value)}", f"{path}.repeat")
        why = check.check_int(value, "repeat count")
        if why:
            raise self.fail(why, f"{path}.repeat")
        return value

    def stage(self, obj: Any, path: str) -> Stage:
        self.depth += 1
        if self.depth > check.MAX_DEPTH:
            raise self.fail(f"groups nested more than {check.MAX_DEPTH} deep", path)
        items = self.list(obj, path, "a stage or group")
        stage = Stage(tuple(self.item(it, f"{path}[{i}]") for i, it in enumerate(items)))
        if check.count_stage(stage) > check.MAX_BLOCKS:
            raise self.fail(f"this part unrolls to more than {check.MAX_BLOCKS:,} blocks", path)
        self.depth -= 1
        return stage

    def item(self, obj: Any, path: str) -> Item:
        if not isinstance(obj, dict):
            raise self.fail(f"an item is an object with \"block\", \"group\" or \"chain\", got {_show(obj)}", path)
        if "chain" not in obj:
            return Item((self.unit(obj, path),), 1)
        _keys(self, obj, {"chain", "repeat"}, path)
        units = self.list(obj["chain"], f"{path}.chain", "a chain")
        return Item(tuple(self.unit(u, f"{path}.chain[{i}]") for i, u in enumerate(units)), self.count(obj, path))

    def unit(self, obj: Any, path: str) -> Unit:
        if not isinstance(obj, dict) or ("block" in obj) == ("group" in obj):
            raise self.fail(f"a unit is an object with either \"block\" or \"group\", got {_show(obj)}", path)
        repeat = self.count(obj, path)
        if "group" in obj:
            _keys(self, obj, {"group", "repeat"}, path)
            node: Block | Stage = self.stage(obj["group"], f"{path}.group")
        else:
            _keys(self, obj, {"block", "arg", "kwargs", "repeat"}, path)
            node = self.block(obj, path)
        if repeat > 1 and (1 if isinstance(node, Block) else check.count_stage(node)) * repeat > check.MAX_BLOCKS:
            raise self.fail(f"this unit unrolls to more than {check.MAX_BLOCKS:,} blocks", f"{path}.repeat")
        return Unit(node, repeat)

    def block(self, obj: dict, path: str) -> Block:
        name = obj["block"]
        if not isinstance(name, str):
            raise self.fail(f"a block name is a string, got {_show(name)}", f"{path}.block")
        schema = check.schema_of(name, lambda m, h: self.fail(m, f"{path}.block", h))
        arg = obj.get("arg")
        if arg is not None and (not isinstance(arg, int) or isinstance(arg, bool)):
            raise self.fail(f"arg must be an integer, got {_show(arg)}", f"{path}.arg")
        bad = check.check_arg(schema, arg)
        if bad:
            raise self.fail(bad[0], f"{path}.arg" if arg is not None else f"{path}.block", bad[1])
        kwargs = obj.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise self.fail(f"kwargs must be an object, got {_show(kwargs)}", f"{path}.kwargs")
        out: list[tuple[str, Value]] = []
        for key, value in kwargs.items():
            param = schema.param(key)
            if param is None:
                raise self.fail(f"{name} has no keyword {key!r}", f"{path}.kwargs.{key}",
                                check.keyword_hint(schema, key))
            try:
                out.append((key, check.coerce(param, value)))
            except ValueError as e:
                raise self.fail(str(e), f"{path}.kwargs.{key}") from None
        block = Block(name, arg, tuple(sorted(out)))
        self.paths[id(block)] = path
        return block


def _keys(reader: _Reader, obj: dict, allowed: set[str], path: str) -> None:
    extra = sorted(set(obj) - allowed, key=str)
    if extra:
        raise reader.fail(f"unknown key {extra[0]!r}", f"{path}.{extra[0]}",
                          suggest(str(extra[0]), allowed, "valid keys"))


def _show(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 40 else text[:37] + "..."
