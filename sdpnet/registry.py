"""The block registry: what each block name means to the parser and the resolver, and which module builds it.

A block has two halves. Its *schema* (:class:`BlockSchema`) is plain data and the whole of its meaning: its
kind (how it is called), where it may stand, its main argument and keywords with their types, defaults and
bounds, how it changes the width and the grid, what it needs from the network. The spec parser and the
resolver read schemas and never test a block's name. Its *factory* is the ``nn.Module`` class the builder
instantiates. The built-in vocabulary (:mod:`sdpnet.vocabulary`) is declared through the same public API a
user's block uses::

    @register_block("GRN", kind="layer", roles=("body",), params=(Param("eps", "eps", float, default=1e-6),))
    class GRN(nn.Module): ...

Registering a name twice is an error; a schema inconsistent with its module's constructor is an error when
the module is bound. This module never imports torch.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

ROLES = ("stem", "body", "head")
MAX_WIDTH = 65_536  # the widest image/token width a spec may resolve to

#: How the builder calls a block (docs/blocks.md, "Kinds"):
#: ``layer`` forward(x) -> x on the image tokens (B, C, H, W); ``tokens`` forward(x, t) -> (x, t) with the
#: class/register tokens t (B, T, C); ``sequence`` forward(s) -> s on the joined sequence [t; image]
#: (B, T + HW, C); ``pool`` forward(x, cls) -> features (B, C); ``classifier`` forward(f) -> logits;
#: ``declaration`` is not a layer (it declares class or register tokens).
KINDS = ("layer", "tokens", "sequence", "pool", "classifier", "declaration")
TOKEN_KINDS = ("tokens", "sequence")  # kinds that see the tokens, so cannot stand in the stem
HEAD_KINDS = ("pool", "classifier", "declaration")

#: What the network can hand a block's constructor, besides its keywords and ``in_dim``.
CONTEXT = {
    "grid": "(H, W) token grid entering the block at the spec's img_size",
    "num_classes": "classifier outputs",
    "num_tokens": "class + register tokens",
    "num_cls": "class tokens",
    "num_reg": "register tokens",
}
#: What a block can stand in for when a spec leaves it out (the head's completion rules).
DEFAULT_SLOTS = {
    "pool": "the pool of a head without one, when no class tokens are declared",
    "pool_cls": "the pool of a head without one, when class tokens are declared",
    "classifier": "the classifier of a head without one",
}
#: What a block (or a true keyword) may need the network to have.
NEEDS = {"cls": "class tokens declared", "tokens": "class or register tokens declared"}
DECLARES = ("cls", "reg")

T = TypeVar("T")


@dataclass(frozen=True)
class Range:
    """Bounds a number must keep (inclusive unless open); ``odd``: integers must be odd."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    odd: bool = False

    def why(self, value: float) -> str | None:
        """Why ``value`` is out of range (a phrase such as ``must be odd``), or None."""
        if self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo)):
            return f"must be {'>' if self.lo_open else '>='} {self.lo:g}"
        if self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi)):
            return f"must be {'<' if self.hi_open else '<='} {self.hi:g}"
        if self.odd and int(value) % 2 == 0:
            return "must be odd"
        return None

    def __str__(self) -> str:
        lo = "" if self.lo is None else f"{'(' if self.lo_open else '['}{self.lo:g}"
        hi = "" if self.hi is None else f"{self.hi:g}{')' if self.hi_open else ']'}"
        text = f"{lo or '(-inf'}, {hi or 'inf)'}"
        return text + (", odd" if self.odd else "")


@dataclass(frozen=True)
class Derived:
    """A value computed at resolution from the block's other resolved keywords and its input width.

    Args:
        fn: ``fn(kwargs, in_dim) -> value``; ``kwargs`` maps constructor keywords to resolved values.
        doc: what it computes, for docs and messages (``max(1, k // 2 - 1)``).
    """

    fn: Callable[[Mapping[str, Any], int], Any]
    doc: str

    def __call__(self, kwargs: Mapping[str, Any], in_dim: int) -> Any:
        return self.fn(kwargs, in_dim)

    def __repr__(self) -> str:
        return self.doc


@dataclass(frozen=True)
class Param:
    """A keyword a block accepts in a spec.

    Args:
        key: the keyword as written in a spec (``h`` in ``ENC(h=8)``).
        target: the constructor keyword it feeds (``num_heads``).
        type: ``int``, ``float``, ``str`` or ``bool`` (bools: sdpnet.spec.text.parse_bool's words).
        hparam: the spec-file hyperparameter that supplies the default (``heads``), if any.
        default: the value when neither the block nor the hyperparameters give one; a :class:`Derived`
            computes it from the other keywords. The one place the default lives: the module's
            constructor must not give this keyword another default.
        choices: the allowed values for a ``str`` keyword, if restricted: a tuple of words, or the name of a
            component registry (``"norm"``, ``"act"``, ``"pos"``: :data:`COMPONENTS`) whose names are read when a
            value is checked, so a norm registered later is accepted too.
        roles: the roles where the keyword applies (None: all the block's roles).
        doc: one line for the docs and error messages.
        range: bounds of a number (checked on the final value, whoever gave it).
        divides: the value must divide the block's input width (attention heads).
        kind: for a bool keyword: when true, the block is of this kind instead (``POS(cls=true)``: ``tokens``).
        needs: for a keyword that is true: what the network must have (keys of :data:`NEEDS`).
    """

    key: str
    target: str
    type: type
    hparam: str | None = None
    default: Any = None
    choices: tuple[str, ...] | str | None = None
    roles: tuple[str, ...] | None = None
    doc: str = ""
    range: Range | None = None
    divides: bool = False
    kind: str | None = None
    needs: tuple[str, ...] = ()

    def allowed(self) -> tuple[str, ...] | None:
        """The values the keyword accepts now (a component registry's current names), or None when open."""
        if isinstance(self.choices, str):
            return tuple(list_components(self.choices))
        return self.choices


@dataclass(frozen=True)
class Width:
    """How a block sets the width (channels) of its output.

    Args:
        key: an ``int`` keyword that sets the output width when written (``d``); the resolved width is passed
            to the constructor under that keyword's target.
        factor: otherwise the output is the input width times this number, or times the value of the named
            constructor keyword (a main argument or keyword target).
        stem: in the stem, a tokenizer that is not the stem's last one outputs this width when ``key`` is not
            written (None: ``dim``). The stem's last tokenizer always outputs ``dim`` unless ``key`` is written.
    """

    key: str | None = None
    factor: float | str = 1
    stem: int | None = None

    def __str__(self) -> str:
        base = "keeps" if self.factor == 1 else f"x {self.factor}"
        return f"`{self.key}` (default: {base})" if self.key else base


KEEP = Width()


@dataclass(frozen=True)
class BlockSchema:
    """What the parser and the resolver know of a block.

    Args:
        name: upper-case block name (``DWC``).
        roles: where it may stand: any of ``stem``, ``body``, ``head``.
        kind: one of :data:`KINDS`, or a mapping role -> kind when it differs by role (``MLP``: a ``layer`` in
            the body, a ``classifier`` in the head).
        arg: the constructor keyword fed by the integer glued to the name (``kernel_size``), or None.
        arg_required: whether the integer must be given.
        arg_default: the value when the integer is optional and omitted.
        arg_range: bounds of the integer (beyond >= 1).
        params: the keywords it accepts.
        residual: a residual block that takes a ``drop_path`` rate (linear over the body's residual blocks).
        tokenizer: may open the stem (turns pixels into image tokens; the stem starts with one).
        width: how it changes the width (:class:`Width`; default: keeps it).
        stride: how much it divides the grid: an int, the name of a constructor keyword holding it, or a
            :class:`Derived`.
        context: network facts its constructor takes (keys of :data:`CONTEXT`), or a mapping role -> keys.
        needs: what the network must have for it (keys of :data:`NEEDS`).
        declares: for a ``declaration``: ``cls`` or ``reg`` tokens, counted by the integer.
        default_for: slots of :data:`DEFAULT_SLOTS` it fills when a spec leaves them out.
        reads_image: for a pool: whether its output depends on the image tokens (False lets the last
            sequence block compute the class tokens only).
        doc: one-line meaning, shown in docs and suggestions.
        example: a short spec using it, for the docs.
    """

    name: str
    roles: tuple[str, ...]
    kind: str | Mapping[str, str] = "layer"
    arg: str | None = None
    arg_required: bool = False
    arg_default: int | None = None
    arg_range: Range | None = None
    params: tuple[Param, ...] = ()
    residual: bool = False
    tokenizer: bool = False
    width: Width = KEEP
    stride: int | str | Derived = 1
    context: tuple[str, ...] | Mapping[str, tuple[str, ...]] = ()
    needs: tuple[str, ...] = ()
    declares: str | None = None
    default_for: tuple[str, ...] = ()
    reads_image: bool = True
    doc: str = ""
    example: str = ""

    def param(self, key: str) -> Param | None:
        """The keyword named ``key``, or None."""
        return next((p for p in self.params if p.key == key), None)

    def params_for(self, role: str) -> tuple[Param, ...]:
        """The keywords that apply where the block stands in ``role``."""
        return tuple(p for p in self.params if p.roles is None or role in p.roles)

    def kind_in(self, role: str) -> str:
        """The block's kind where it stands in ``role`` (before keywords that change it)."""
        return self.kind if isinstance(self.kind, str) else self.kind[role]

    def context_in(self, role: str) -> tuple[str, ...]:
        """The context keys its constructor takes in ``role``."""
        return tuple(self.context) if not isinstance(self.context, Mapping) else tuple(self.context.get(role, ()))

    def kinds(self) -> set[str]:
        """Every kind the block can take, in any role or with any keyword."""
        base = {self.kind} if isinstance(self.kind, str) else set(self.kind.values())
        return base | {p.kind for p in self.params if p.kind}

    def targets(self, role: str) -> list[str]:
        """The constructor keywords the resolver passes in ``role`` (besides ``in_dim``)."""
        names = [self.arg] if self.arg else []
        names += [p.target for p in self.params_for(role)]
        if role == "body" and self.residual:
            names.append("drop_path")
        return names + list(self.context_in(role))


@dataclass
class _Entry:
    schema: BlockSchema
    factories: dict[str | None, Callable[..., Any]] = field(default_factory=dict)


_REGISTRY: dict[str, _Entry] = {}


def declare_block(schema: BlockSchema) -> BlockSchema:
    """Declare a block's schema (torch-free; bind its module later with ``register_block(name)``)."""
    if schema.name in _REGISTRY:
        raise ValueError(f"block {schema.name!r} is already declared; pick another name")
    check_schema(schema)
    _REGISTRY[schema.name] = _Entry(schema)
    return schema


def register_block(name: str, *, role: str | None = None, **schema_fields: Any) -> Callable[[T], T]:
    """Class decorator binding an implementation to block ``name``.

    With no schema fields, ``name`` must already be declared (``declare_block``). With schema fields
    (``kind``, ``roles``, ``arg``, ``params``, ``width``, ...), the block is declared and bound at once.
    ``role`` binds an implementation for one role only (the head ``MLP`` differs from the body's). The
    constructor must accept every keyword the schema passes and need no other.
    """

    def bind(factory: T) -> T:
        if schema_fields:
            declare_block(BlockSchema(name=name, **schema_fields))
        entry = _REGISTRY.get(name)
        if entry is None:
            raise ValueError(
                f"block {name!r} has no schema: pass roles=/kind=/params= to register_block "
                f"or declare it first; declared blocks are {', '.join(sorted(_REGISTRY))}"
            )
        schema = entry.schema
        if role is not None and role not in schema.roles:
            raise ValueError(f"block {name!r} has roles {schema.roles}; cannot bind role {role!r}")
        if role in entry.factories:
            where = f" for role {role!r}" if role else ""
            raise ValueError(f"block {name!r} already has an implementation{where} ({entry.factories[role]!r})")
        for r in [role] if role else [r for r in schema.roles if r not in entry.factories]:
            if schema.kind_in(r) != "declaration":
                check_factory(schema, r, factory)
        entry.factories[role] = factory
        return factory

    return bind


def check_factory(schema: BlockSchema, role: str, factory: Callable[..., Any]) -> None:
    """Raise ``ValueError`` when ``factory``'s signature does not fit what the schema passes in ``role``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # not introspectable (a C callable): trust it
    accepted = sig.parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        return
    passed = ["in_dim", *schema.targets(role)]
    missing = [k for k in passed if k not in accepted]
    if missing:
        raise ValueError(f"block {schema.name!r} ({role}): its schema passes {', '.join(missing)} but "
                         f"{getattr(factory, '__name__', factory)}() takes no such parameter; add it to the "
                         f"constructor or fix the schema")
    required = [k for k, p in accepted.items() if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k not in passed]
    if required:
        raise ValueError(f"block {schema.name!r} ({role}): {getattr(factory, '__name__', factory)}() requires "
                         f"{', '.join(required)}, which the schema never passes; declare it as a keyword "
                         f"(Param), a context key ({', '.join(CONTEXT)}) or give it a default")


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


def blocks_where(pred: Callable[[BlockSchema], bool]) -> list[str]:
    """Names of the declared blocks whose schema satisfies ``pred``, sorted."""
    return [n for n in sorted(_REGISTRY) if pred(_REGISTRY[n].schema)]


def default_block(slot: str) -> str:
    """The block that fills ``slot`` (a key of :data:`DEFAULT_SLOTS`) when a spec leaves it out."""
    names = blocks_where(lambda s: slot in s.default_for)
    if not names:
        raise LookupError(f"no block is declared with default_for={slot!r}")
    return names[0]


def hparam_names() -> set[str]:
    """Every hyperparameter name some block reads a default from."""
    return {p.hparam for e in _REGISTRY.values() for p in e.schema.params if p.hparam}


def check_schema(schema: BlockSchema) -> None:
    """Raise ``ValueError`` naming what is inconsistent in ``schema``."""
    name = schema.name

    def bad(message: str) -> ValueError:
        return ValueError(f"block {name!r}: {message}")

    if not name.isalpha() or not name.isupper():
        raise ValueError(f"block names are upper-case letters only, got {name!r}")
    if not schema.roles or any(r not in ROLES for r in schema.roles):
        raise bad(f"roles must be a non-empty subset of {ROLES}, got {schema.roles}")
    kinds = schema.kind if isinstance(schema.kind, Mapping) else {r: schema.kind for r in schema.roles}
    if set(kinds) != set(schema.roles) or any(k not in KINDS for k in kinds.values()):
        raise bad(f"kind must be one of {KINDS} (or a mapping of each of its roles to one), got {schema.kind!r}")
    for role, kind in kinds.items():
        if role == "stem" and kind in TOKEN_KINDS + ("pool", "classifier"):
            raise bad(f"a {kind} block cannot stand in the stem (tokens exist only after it); drop 'stem' from roles")
        if role == "head" and kind not in HEAD_KINDS:
            raise bad(f"in the head a block is a pool, a classifier or a declaration, not a {kind}")
        if role != "head" and kind in ("pool", "classifier"):
            raise bad(f"a {kind} stands only in the head; roles=('head',)")
    is_decl = set(kinds.values()) == {"declaration"}
    if ("declaration" in kinds.values()) != is_decl:
        raise bad("a declaration is a declaration in every role")
    if is_decl != (schema.declares is not None):
        raise bad(f"a declaration says what it declares (declares= one of {DECLARES}), and only a declaration does")
    if schema.declares is not None and schema.declares not in DECLARES:
        raise bad(f"declares must be one of {DECLARES}, got {schema.declares!r}")
    if schema.tokenizer and "stem" not in schema.roles:
        raise bad("a tokenizer opens the stem, so its roles include 'stem'")
    keys = [p.key for p in schema.params]
    if len(set(keys)) != len(keys):
        raise bad(f"duplicate keyword in {keys}")
    targets = [p.target for p in schema.params]
    if len(set(targets)) != len(targets) or (schema.arg and schema.arg in targets):
        raise bad("two keywords (or the main argument and a keyword) feed the same constructor keyword")
    for p in schema.params:
        if p.type not in (int, float, str, bool):
            raise bad(f"keyword {p.key!r} has unsupported type {p.type!r}")
        if not p.key.islower() or not p.key.replace("_", "").isalnum():
            raise bad(f"keyword {p.key!r} must be lower-case")
        if p.roles is not None and any(r not in schema.roles for r in p.roles):
            raise bad(f"keyword {p.key!r} applies in roles {p.roles} the block does not take")
        if p.kind is not None and (p.type is not bool or p.kind not in KINDS):
            raise bad(f"keyword {p.key!r}: kind= is for a bool keyword and must be one of {KINDS}")
        if any(n not in NEEDS for n in p.needs):
            raise bad(f"keyword {p.key!r}: needs must be among {tuple(NEEDS)}")
        if p.range is not None and p.type not in (int, float):
            raise bad(f"keyword {p.key!r}: range= is for numbers")
        if p.divides and p.type is not int:
            raise bad(f"keyword {p.key!r}: divides= is for an int keyword")
        if isinstance(p.choices, str) and (p.type is not str or p.choices not in COMPONENTS):
            raise bad(f"keyword {p.key!r}: choices= names a component registry ({', '.join(COMPONENTS)}) "
                      f"only for a str keyword, got {p.choices!r}")
        default = p.default
        if default is not None and not isinstance(default, Derived):
            ok = isinstance(default, p.type) and not (p.type is not bool and isinstance(default, bool))
            if p.type is float and isinstance(default, int) and not isinstance(default, bool):
                ok = True
            if not ok:
                raise bad(f"keyword {p.key!r}: default {default!r} is not a {p.type.__name__}")
            if p.choices is not None and default not in p.allowed():
                raise bad(f"keyword {p.key!r}: default {default!r} is not one of {', '.join(p.allowed())}"
                          + (f" (declare the {p.choices} first)" if isinstance(p.choices, str) else ""))
            if p.range is not None and (not math.isfinite(default) or p.range.why(default)):
                raise bad(f"keyword {p.key!r}: default {default!r} {p.range.why(default) or 'is not finite'}")
    if schema.width.key is not None:
        wp = schema.param(schema.width.key)
        if wp is None or wp.type is not int:
            raise bad(f"width key {schema.width.key!r} must be one of its int keywords")
    if isinstance(schema.width.factor, str) and schema.width.factor not in [schema.arg, *targets]:
        raise bad(f"width factor {schema.width.factor!r} names no main argument or keyword target")
    if isinstance(schema.stride, str) and schema.stride not in [schema.arg, *targets]:
        raise bad(f"stride {schema.stride!r} names no main argument or keyword target")
    if isinstance(schema.stride, int) and schema.stride < 1:
        raise bad(f"stride must be >= 1, got {schema.stride}")
    if isinstance(schema.context, Mapping) and any(r not in schema.roles for r in schema.context):
        raise bad(f"context is keyed by the block's roles {schema.roles}, got {tuple(schema.context)}")
    if any(c not in CONTEXT for r in schema.roles for c in schema.context_in(r)):
        raise bad(f"context keys are among {tuple(CONTEXT)}, got {schema.context}")
    if any(n not in NEEDS for n in schema.needs):
        raise bad(f"needs are among {tuple(NEEDS)}, got {schema.needs}")
    for slot in schema.default_for:
        if slot not in DEFAULT_SLOTS:
            raise bad(f"default_for slots are among {tuple(DEFAULT_SLOTS)}, got {slot!r}")
        want = "classifier" if slot == "classifier" else "pool"
        if "head" not in schema.roles or schema.kind_in("head") != want:
            raise bad(f"only a head {want} can fill the {slot!r} slot")
        taken = [n for n, e in _REGISTRY.items() if slot in e.schema.default_for]
        if taken:
            raise bad(f"slot {slot!r} is already filled by {taken[0]}")
        if schema.arg_required or (schema.needs and slot != "pool_cls"):
            raise bad(f"a default for {slot!r} must build without an integer or what it needs")
    if schema.arg is None and (schema.arg_required or schema.arg_default is not None or schema.arg_range):
        raise bad("arg_required/arg_default/arg_range need an arg")
    if schema.arg_default is not None and schema.arg_range and schema.arg_range.why(schema.arg_default):
        raise bad(f"arg_default {schema.arg_default} {schema.arg_range.why(schema.arg_default)}")


# --- Component registries: the values of norm=, act= and pos= keywords ---------------------------------------

#: What a keyword whose ``choices`` names a component registry chooses, and how its constructor is called
#: (the constructors are bound in :mod:`sdpnet.blocks.layers`; docs/blocks.md, "Registering a norm, an
#: activation, a position scheme").
COMPONENTS = {
    "norm": "normalisation layer: fn(dim, *, channels_first, eps) -> nn.Module over the channels of (B, dim, H, W) "
            "when channels_first, else over the last dimension of (B, dim) or (B, N, dim); eps: the block's, or "
            "1e-6 where the block sets none",
    "act": "activation: fn() -> nn.Module, elementwise",
    "pos": "position scheme inside attention: fn(head_dim, *, num_heads, num_prefix, grid) -> nn.Module whose "
           "forward(q, k, grid) -> (q, k, bias or None) on (B, heads, N, head_dim), the first num_prefix tokens "
           "being class/register tokens",
}


@dataclass
class _Component:
    doc: str
    factory: Callable[..., Any] | None = None


_COMPONENT_REGISTRY: dict[str, dict[str, _Component]] = {kind: {} for kind in COMPONENTS}


def _component_table(kind: str) -> dict[str, _Component]:
    if kind not in COMPONENTS:
        raise ValueError(f"unknown component registry {kind!r}; choose one of {', '.join(COMPONENTS)}")
    return _COMPONENT_REGISTRY[kind]


def declare_component(kind: str, name: str, doc: str) -> None:
    """Declare ``name`` in the ``kind`` registry (torch-free: the parser accepts it from now on); bind its
    constructor later with ``register_component(kind, name)``. Declaring a name twice is an error."""
    table = _component_table(kind)
    if not isinstance(name, str) or not name[:1].isalpha() or not name.isalnum() or not name.islower():
        raise ValueError(f"{kind} names are lower-case letters and digits, starting with a letter; got {name!r}")
    if name in table:
        raise ValueError(f"{kind} {name!r} is already declared; pick another name")
    if not doc:
        raise ValueError(f"{kind} {name!r}: give a one-line doc (what it computes)")
    table[name] = _Component(doc)


def register_component(kind: str, name: str, doc: str | None = None) -> Callable[[T], T]:
    """Decorator binding a constructor to ``name`` in the ``kind`` registry; with ``doc`` the name is declared
    at once, without it it must be declared already. Binding a name twice is an error."""

    def bind(factory: T) -> T:
        if doc is not None:
            declare_component(kind, name, doc)
        entry = _component_table(kind).get(name)
        if entry is None:
            raise ValueError(f"{kind} {name!r} is not declared: pass doc= to register_{kind} or declare it first")
        if entry.factory is not None:
            raise ValueError(f"{kind} {name!r} already has a constructor ({entry.factory!r})")
        entry.factory = factory
        return factory

    return bind


def get_component(kind: str, name: str) -> Callable[..., Any]:
    """The constructor of ``name`` in the ``kind`` registry; raises ``ValueError`` saying what would be valid."""
    table = _component_table(kind)
    entry = table.get(name)
    if entry is None:
        raise ValueError(f"unknown {kind} {name!r}; known {kind} values: {', '.join(table)}")
    if entry.factory is None:
        raise ValueError(f"{kind} {name!r} is declared but has no constructor; import the module that registers it")
    return entry.factory


def list_components(kind: str) -> list[str]:
    """The names in the ``kind`` registry, in declaration order (built-ins first)."""
    return list(_component_table(kind))


def component_doc(kind: str, name: str) -> str:
    """The one-line doc of ``name`` in the ``kind`` registry."""
    return _component_table(kind)[name].doc


def declare_norm(name: str, doc: str) -> None:
    """Declare a norm name (torch-free); see :func:`declare_component`."""
    declare_component("norm", name, doc)


def declare_act(name: str, doc: str) -> None:
    """Declare an activation name (torch-free); see :func:`declare_component`."""
    declare_component("act", name, doc)


def declare_pos(name: str, doc: str) -> None:
    """Declare a position-scheme name (torch-free); see :func:`declare_component`."""
    declare_component("pos", name, doc)


def register_norm(name: str, doc: str | None = None) -> Callable[[T], T]:
    """Bind a norm constructor ``fn(dim, *, channels_first: bool, eps: float) -> nn.Module`` to ``name``, valid
    in every ``norm=`` keyword and norm hyperparameter (``conv_norm``, ...)::

        @register_norm("rms2", doc="RMSNorm without weight")
        def rms2(dim, *, channels_first, eps): ...
    """
    return register_component("norm", name, doc)


def register_act(name: str, doc: str | None = None) -> Callable[[T], T]:
    """Bind an activation constructor ``fn() -> nn.Module`` to ``name``, valid in every ``act=`` keyword."""
    return register_component("act", name, doc)


def register_pos(name: str, doc: str | None = None) -> Callable[[T], T]:
    """Bind a position scheme ``fn(head_dim, *, num_heads, num_prefix, grid) -> nn.Module`` to ``name``, valid in
    every ``pos=`` keyword (``ENC``, ``TFM``) and the ``attn_pos`` hyperparameter; the module's ``forward(q, k, grid)`` returns
    ``(q, k, bias)`` with ``bias`` None or an additive attention bias broadcastable to (B, heads, Nq, N)."""
    return register_component("pos", name, doc)
