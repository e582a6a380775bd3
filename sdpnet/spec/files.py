"""Model specs with hyperparameters: JSON spec files, overrides and their validation.

A spec file is a JSON object: ``"arch"`` (a spec string or a JSON tree) plus hyperparameters,
which are defaults for every block's keywords (``"heads": 12`` sets every ``ENC``'s ``h``).
Overrides (Python keywords, or ``--set key=value`` on a command line) win over the file.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

from sdpnet import vocabulary as _vocabulary
from sdpnet.registry import MAX_WIDTH, get_schema, list_blocks
from sdpnet.spec import presets
from sdpnet.spec.check import MAX_INT
from sdpnet.spec.errors import SpecError
from sdpnet.spec.jsontree import from_json as _tree_from_json
from sdpnet.spec.parser import parse
from sdpnet.spec.text import BOOL_WORDS, nearest, parse_bool, suggest
from sdpnet.spec.tree import Spec

# Types of the global hyperparameters (block hyperparameters take the type of the keyword they feed).
_GLOBAL_TYPES: dict[str, type] = {
    "name": str, "description": str, "dim": int, "num_classes": int, "in_chans": int, "img_size": int,
    "drop_path": float, "init": str,
}
_GLOBAL_CHOICES: dict[str, tuple[str, ...]] = {"init": _vocabulary.INITS}
_RATES = ("drop_path", "dropout")  # floats in [0, 1)
_INT_MAX = {"dim": MAX_WIDTH, "in_chans": 4_096, "img_size": 16_384, "num_classes": 1_000_000}
_ZERO_OK = ("num_classes",)  # num_classes=0: no classifier layer, the model outputs its pre-logits features
DEFAULTS = {"dim": 768, "num_classes": 1000, "in_chans": 3, "img_size": 224, "drop_path": 0.0, "init": "timm"}


def hparam_types() -> dict[str, tuple[type, tuple[str, ...] | None, str]]:
    """Every valid hyperparameter: ``name -> (type, choices, description)``; ``arch`` excluded."""
    out = {k: (t, _GLOBAL_CHOICES.get(k), _vocabulary.GLOBAL_HPARAMS.get(k, "")) for k, t in _GLOBAL_TYPES.items()}
    for name in list_blocks():
        for p in get_schema(name).params:
            if p.hparam and p.hparam not in out:
                out[p.hparam] = (p.type, p.allowed(), f"default of {name}'s {p.key}: {p.doc}")
    return out


def check_hparam(key: str, value: Any, where: str | None = None) -> Any:
    """``value`` checked (and ints widened to float) for hyperparameter ``key``; raises SpecError."""
    types = hparam_types()
    if key not in types:
        raise SpecError(f"unknown hyperparameter {key!r}", source=where, path=key,
                        hint=suggest(key, list(types) + ["arch"], "valid hyperparameters"))
    kind, choices, _ = types[key]

    def bad(why: str) -> SpecError:
        return SpecError(f"hyperparameter {key}: {why}, got {value!r}", source=where, path=key)

    if kind is bool:
        try:
            value = parse_bool(value)
        except ValueError:
            raise bad(f"expected a bool ({BOOL_WORDS})") from None
    elif kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("expected an integer")
        low, high = 0 if key in _ZERO_OK else 1, _INT_MAX.get(key, MAX_INT)
        if not low <= value <= high:
            raise bad(f"expected an integer from {low} to {high:,}")
    elif kind is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise bad("expected a number")
        value = float(value)
        if key in _RATES and not 0.0 <= value < 1.0:
            raise bad("expected a rate in [0, 1)")
    elif kind is str:
        if not isinstance(value, str):
            raise bad("expected a string")
        if choices is not None and value not in choices:
            near = nearest(value, choices)
            raise bad((f"did you mean {near}? " if near else "") + f"expected one of {', '.join(choices)}")
    for name in list_blocks():  # the bounds of every keyword this hyperparameter feeds
        for p in get_schema(name).params:
            if p.hparam == key and p.range is not None and p.range.why(value):
                raise bad(f"{p.range.why(value)} (the default of {name}'s {p.key}, in {p.range})")
    return value


@dataclass(frozen=True)
class ModelSpec:
    """An architecture plus its hyperparameters (everything but ``arch``), after overrides.

    Args:
        arch: the architecture tree.
        hparams: validated hyperparameters (read-only mapping).
        source: the file it was read from, if any (not compared).
    """

    arch: Spec
    hparams: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.hparams, MappingProxyType):
            object.__setattr__(self, "hparams", MappingProxyType(dict(self.hparams)))

    def __deepcopy__(self, memo: dict) -> "ModelSpec":
        # Immutable (frozen, read-only hparams), so a copy may share it; deepcopy cannot copy the
        # MappingProxyType itself, and models that hold a spec must deep-copy (timm's ModelEma).
        return self

    @property
    def name(self) -> str | None:
        """``hparams["name"]``, else the spec file's stem, else None."""
        if "name" in self.hparams:
            return self.hparams["name"]
        return Path(self.source).stem if self.source else None

    def to_json(self) -> dict[str, Any]:
        """The spec file form: name, ``arch`` as the canonical string, then the hyperparameters."""
        out: dict[str, Any] = {"name": self.name} if self.name else {}
        out["arch"] = str(self.arch)
        out.update((k, v) for k, v in self.hparams.items() if k != "name")
        return out

    @classmethod
    def from_json(cls, obj: Any, source: str | None = None) -> "ModelSpec":
        """A model spec from a spec file's object; errors name ``source`` and the key."""
        if not isinstance(obj, dict):
            raise SpecError(f"a spec file holds a JSON object, got {type(obj).__name__}", source=source)
        if "arch" not in obj:
            raise SpecError("no \"arch\" in the spec file", source=source,
                            hint="add the architecture, as in \"arch\": \"P16-DWC7x8-GAP+LIN\"")
        arch = _arch(obj["arch"], source)
        hparams = {k: check_hparam(k, v, source) for k, v in obj.items() if k != "arch"}
        return cls(arch, hparams, source)

    def with_overrides(self, **overrides: Any) -> "ModelSpec":
        """A copy with ``overrides`` applied (``arch`` may be overridden too)."""
        arch = _arch(overrides.pop("arch"), "override") if "arch" in overrides else self.arch
        hparams = dict(self.hparams)
        hparams.update((k, check_hparam(k, v, "override")) for k, v in overrides.items())
        return ModelSpec(arch, hparams, self.source)


def _arch(value: Any, source: str | None) -> Spec:
    if isinstance(value, Spec):
        return value
    if isinstance(value, str):
        try:
            return parse(value)
        except SpecError as e:
            if source:
                e.source = f"{source}, \"arch\""
            raise
    if isinstance(value, dict):
        return _tree_from_json(value, Spec, source=source, path="arch")
    raise SpecError(f"\"arch\" must be a spec string or a JSON tree, got {type(value).__name__}",
                    source=source, path="arch")


def spec_sources(sources: Sequence[str]) -> tuple[list[tuple[str, bool]], list[str]]:
    """Command-line sources as ``(text, is_file)`` in order: a folder becomes its ``.json`` files in name order, a
    ``.json`` path stays as given (a file), a spec string or template too (not a file); and one error line per
    folder without ``.json`` files."""
    out: list[tuple[str, bool]] = []
    errors: list[str] = []
    for src in sources:
        path = Path(src)
        if path.is_dir():
            files = sorted(path.glob("*.json"))
            if not files:
                errors.append(f"{src}: the folder holds no .json spec files")
            out += [(str(f), True) for f in files]
        else:
            out.append((src, src.strip().endswith(".json")))
    return out, errors


def load_spec(spec: Any, **overrides: Any) -> ModelSpec:
    """A :class:`ModelSpec` from a ``.json`` path, a preset name (``sdpnet_xl``, see :mod:`sdpnet.spec.presets`),
    JSON object text, a spec string, a Spec or a ModelSpec.

    ``overrides`` are hyperparameters (or ``arch``) that win over the file's.
    """
    if isinstance(spec, ModelSpec):
        model = spec
    elif isinstance(spec, Spec):
        model = ModelSpec(spec)
    elif isinstance(spec, (str, os.PathLike)):
        model = _load_text_or_path(spec)
    else:
        raise SpecError(f"cannot load a spec from a {type(spec).__name__}",
                        hint="pass a .json path, a spec string, a Spec or a ModelSpec")
    return model.with_overrides(**overrides) if overrides else model


def _load_text_or_path(spec: str | os.PathLike) -> ModelSpec:
    text = os.fspath(spec)
    stripped = text.strip()
    if not isinstance(spec, os.PathLike) and stripped.startswith(presets.PREFIX) and not stripped.endswith(".json"):
        preset = presets.preset_path(stripped)
        if preset is None:
            raise SpecError(f"no preset named {stripped!r}", hint=suggest(stripped, presets.list_models(), "presets"))
        text = stripped = str(preset)
    if isinstance(spec, os.PathLike) or stripped.endswith(".json"):
        path = Path(text)
        if not path.is_file():
            raise SpecError(f"no such spec file: {text}", hint="give a path to a .json spec file or a spec string")
        try:
            obj = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError(f"cannot read the spec file: {e}", source=text) from None
        except (json.JSONDecodeError, RecursionError) as e:
            raise SpecError(f"invalid JSON: {e}", source=text) from None
        return ModelSpec.from_json(obj, source=text)
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except (json.JSONDecodeError, RecursionError) as e:
            raise SpecError(f"invalid JSON: {e}", source="<json text>") from None
        return ModelSpec.from_json(obj, source=None)
    return ModelSpec(parse(text))


def parse_override(text: str) -> tuple[str, Any]:
    """``"key=value"`` to ``(key, typed value)``, converted by the hyperparameter's declared type."""
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    if not sep or not key:
        raise SpecError(f"an override is key=value, got {text!r}", hint="as in --set dim=384")
    if key == "arch":
        return key, raw
    types = hparam_types()
    if key not in types:
        check_hparam(key, None, "override")  # raises with the nearest names
    kind = types[key][0]
    try:
        if kind is bool:
            value: Any = parse_bool(raw)
        elif kind is int:
            value = int(raw) if raw.lstrip("+-").isdigit() and len(raw) < 20 else _raise()
        elif kind is float:
            value = float(raw) if len(raw) < 40 else _raise()
        else:
            value = raw
    except ValueError:
        raise SpecError(f"override {key}={raw}: expected {kind.__name__}", path=key,
                        hint=types[key][2] or None) from None
    return key, check_hparam(key, value, "override")


def _raise() -> Any:
    raise ValueError
