"""The block registry: what each block name means to the parser, and which module builds it.

A block has two halves. Its *schema* (roles, main argument, keywords with types) is plain data
the spec parser validates against; it never imports torch. Its *factory* is the ``nn.Module``
class the builder instantiates. Built-in schemas are declared in :mod:`sdpnet.vocabulary`; the
built-in modules attach themselves with ``@register_block("NAME")``. A new block declares both at
once::

    @register_block("GRN", roles=("body",), params=(Param("eps", "eps", float, default=1e-6),))
    class GRN(nn.Module): ...

Registering a name twice is an error.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

ROLES = ("stem", "body", "head")

T = TypeVar("T")


@dataclass(frozen=True)
class Param:
    """A keyword a block accepts in a spec.

    Args:
        key: the keyword as written in a spec (``h`` in ``ENC(h=8)``).
        target: the constructor keyword it feeds (``num_heads``).
        type: ``int``, ``float``, ``str`` or ``bool`` (bools are written 0/1 or true/false).
        hparam: the spec-file hyperparameter that supplies the default (``heads``), if any.
        default: the value when neither the block nor the hyperparameters give one.
        choices: the allowed values for a ``str`` keyword, if restricted.
        roles: the roles where the keyword applies (None: all the block's roles).
        doc: one line for the docs and error messages.
    """

    key: str
    target: str
    type: type
    hparam: str | None = None
    default: Any = None
    choices: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    doc: str = ""


@dataclass(frozen=True)
class BlockSchema:
    """What the parser knows of a block.

    Args:
        name: upper-case block name (``DWC``).
        roles: where it may stand: any of ``stem``, ``body``, ``head``.
        arg: the constructor keyword fed by the integer glued to the name (``kernel_size``), or
            None if the block takes no integer.
        arg_required: whether the integer must be given.
        arg_default: the value when the integer is optional and omitted.
        params: the keywords it accepts.
        residual: whether it is a residual block that takes a ``drop_path`` rate.
        doc: one-line meaning, shown in docs and suggestions.
        example: a short spec using it, for the docs.
    """

    name: str
    roles: tuple[str, ...]
    arg: str | None = None
    arg_required: bool = False
    arg_default: int | None = None
    params: tuple[Param, ...] = ()
    residual: bool = False
    doc: str = ""
    example: str = ""

    def param(self, key: str) -> Param | None:
        """The keyword named ``key``, or None."""
        return next((p for p in self.params if p.key == key), None)

    def params_for(self, role: str) -> tuple[Param, ...]:
        """The keywords that apply where the block stands in ``role``."""
        return tuple(p for p in self.params if p.roles is None or role in p.roles)


@dataclass
class _Entry:
    schema: BlockSchema
    factories: dict[str | None, Callable[..., Any]] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def declare_block(schema: BlockSchema) -> BlockSchema:
    """Declare a block's schema without an implementation (the built-in vocabulary does this)."""
    if schema.name in _REGISTRY:
        raise ValueError(f"block {schema.name!r} is already declared; pick another name")
    _check_schema(schema)
    _REGISTRY[schema.name] = _Entry(schema)
    return schema


def register_block(name: str, *, role: str | None = None, **schema_fields: Any) -> Callable[[T], T]:
    """Class decorator binding an implementation to block ``name``.

    With no schema fields, ``name`` must already be declared (the built-in blocks). With schema
    fields (``roles``, ``arg``, ``params``, ...), the block is declared and bound at once.
    ``role`` binds an implementation for one role only (the head ``MLP`` differs from the body's).
    """

    def bind(factory: T) -> T:
        if schema_fields:
            declare_block(BlockSchema(name=name, **schema_fields))
        entry = _REGISTRY.get(name)
        if entry is None:
            raise ValueError(
                f"block {name!r} has no schema: pass roles=/arg=/params= to register_block "
                f"or declare it first; declared blocks are {', '.join(sorted(_REGISTRY))}"
            )
        if role is not None and role not in entry.schema.roles:
            raise ValueError(f"block {name!r} has roles {entry.schema.roles}; cannot bind role {role!r}")
        if role in entry.factories:
            where = f" for role {role!r}" if role else ""
            raise ValueError(f"block {name!r} already has an implementation{where} ({entry.factories[role]!r})")
        entry.factories[role] = factory
        return factory

    return bind


def get_schema(name: str) -> BlockSchema | None:
    """The schema of block ``name``, or None if no such block is declared."""
    entry = _REGISTRY.get(name)
    return entry.schema if entry else None


def get_block(name: str, role: str | None = None) -> Callable[..., Any]:
    """The implementation of block ``name`` in ``role``; raises ``KeyError`` naming what is missing."""
    entry = _REGISTRY.get(name)
    if entry is None:
        raise KeyError(f"unknown block {name!r}; known blocks: {', '.join(sorted(_REGISTRY))}")
    factory = entry.factories.get(role) or entry.factories.get(None)
    if factory is None:
        raise KeyError(f"block {name!r} (role {role}) is declared but has no implementation; import its module")
    return factory


def list_blocks() -> list[str]:
    """Names of all declared blocks, sorted."""
    return sorted(_REGISTRY)


def hparam_names() -> set[str]:
    """Every hyperparameter name some block reads a default from."""
    return {p.hparam for e in _REGISTRY.values() for p in e.schema.params if p.hparam}


def _check_schema(schema: BlockSchema) -> None:
    if not schema.name.isalpha() or not schema.name.isupper():
        raise ValueError(f"block names are upper-case letters only, got {schema.name!r}")
    bad = [r for r in schema.roles if r not in ROLES]
    if bad or not schema.roles:
        raise ValueError(f"block {schema.name!r}: roles must be a non-empty subset of {ROLES}, got {schema.roles}")
    keys = [p.key for p in schema.params]
    if len(set(keys)) != len(keys):
        raise ValueError(f"block {schema.name!r}: duplicate keyword in {keys}")
    for p in schema.params:
        if p.type not in (int, float, str, bool):
            raise ValueError(f"block {schema.name!r}: keyword {p.key!r} has unsupported type {p.type!r}")
        if not p.key.islower() or not p.key.replace("_", "").isalnum():
            raise ValueError(f"block {schema.name!r}: keyword {p.key!r} must be lower-case")

