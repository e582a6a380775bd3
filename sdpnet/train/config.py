"""Strict command-line configuration: options declared once, as frozen dataclasses, on top of fastargs.

A script declares each config section as a frozen dataclass whose fields are its options,
and the sections as the fields of one container dataclass::

    @dataclass(frozen=True)
    class Lr:
        \"\"\"learning rate\"\"\"
        base_lr: float = option(0.001, "lr per 512 images of global batch", gt=0)
        lr: float | None = option(None, "peak lr (default: from base_lr)", gt=0)

    @dataclass(frozen=True)
    class Options:
        lr: Lr

    opts = parse_options(Options)        # uses sys.argv[1:]; opts.lr.base_lr is a checked float

Each field's annotation gives its type, :func:`option` its default, description, bounds and
choices; a section's ``__post_init__`` checks relations between its values (raising
:class:`ConfigError`). That is the only place an option is spelt: the fastargs sections,
``--help``, the checks and the plain values handed on are all derived from it.

Compared with fastargs' own ``augment_argparse``/``validate`` this:

- rejects unknown sections and keys, naming the nearest valid key (:func:`sdpnet.spec.text.nearest`)
  and listing the valid keys of the section (fastargs silently ignores them);
- parses bools with the one grammar of :func:`sdpnet.spec.text.parse_bool` (fastargs' ``Param(bool)``
  turns the string "False" into True); ints refuse 3.5 and booleans; floats refuse NaN and
  infinity; values are checked against their bounds and choices;
- refuses a YAML ``null`` (leaving the key out gives the default);
- reports every bad value and missing required value together, in one line, and exits with
  status 2 before any work (fastargs' ``validate()`` exits 0);
- never reads environment variables (fastargs does).

Sources, later ones winning: defaults, then each ``-C FILE`` (YAML or JSON, nested
``{section: {key: value}}`` or dotted ``{"section.key": value}``) in order, then
``--section.key=value`` / ``--section.key value`` arguments. A bool given as a bare
``--section.flag`` means true.

Options may also be declared the plain fastargs way (``Section(...).params(...)``);
:func:`parse_config` swaps fastargs' lax bool/int/float checkers for the strict ones below.
"""
from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from typing import Any, Sequence

import yaml
from fastargs import Config, Param, Section, get_current_config
from fastargs import validation as fv
from fastargs.exceptions import MissingValueError, ValidationError

from sdpnet.spec.text import BOOL_WORDS, nearest, parse_bool

__all__ = ["Bool", "Int", "Float", "Value", "ConfigError", "option", "declare", "build_options",
           "load_options", "parse_options", "options_dict", "option_defaults", "altering_keys",
           "parse_config", "load_config", "config_to_dict"]


class ConfigError(ValueError):
    """A configuration value or key that cannot be accepted; the message says why."""


class Bool(fv.Checker):
    """Strict boolean: True/False, 0/1, or the words of :func:`sdpnet.spec.text.parse_bool` (any case)."""

    def check(self, value: Any) -> bool:
        return parse_bool(value)

    def help(self) -> str:
        return f"a bool ({BOOL_WORDS})"


class Int(fv.Checker):
    """Strict integer: an int or a string of digits (rejects 3.5, "3.5" and booleans)."""

    def check(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise ValueError(f"not an int: {value!r}")

    def help(self) -> str:
        return "an int"


class Float(fv.Checker):
    """Strict finite float: a number or a string that parses as one (rejects booleans, NaN, infinity)."""

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"not a float: {value!r}")
        out = float(value)
        if not math.isfinite(out):
            raise ValueError(f"not a finite float: {value!r}")
        return out

    def help(self) -> str:
        return "a finite float"


class Str(fv.Checker):
    """A string; YAML numbers are taken as their text, booleans and containers are refused."""

    def check(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ValueError(f"not a string: {value!r}")

    def help(self) -> str:
        return "a string"


_KINDS: dict[type, type[fv.Checker]] = {bool: Bool, int: Int, float: Float, str: Str}


def _num(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


class Value(fv.Checker):
    """One option's type, bounds and choices; :meth:`help` says what would be valid.

    Args:
        kind: bool, int, float or str.
        ge, gt, le, lt: inclusive / exclusive lower and upper bounds (numbers only).
        choices: the allowed strings (str only). A YAML boolean (unquoted ``on``/``off``)
            is read as ``"on"``/``"off"`` when those are choices.
    """

    def __init__(self, kind: type, *, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, lt: float | None = None, choices: Sequence[str] | None = None):
        if kind not in _KINDS:
            raise TypeError(f"options are bool, int, float or str, not {kind!r}")
        self.kind, self.base = kind, _KINDS[kind]()
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt
        self.choices = tuple(choices) if choices is not None else None

    def check(self, value: Any) -> Any:
        if self.choices is not None and isinstance(value, bool) and {"on", "off"} <= set(self.choices):
            value = "on" if value else "off"
        out = self.base.check(value)
        if self.choices is not None and out not in self.choices:
            raise ValueError(f"{out!r} is not one of {self.choices}")
        if ((self.ge is not None and not out >= self.ge) or (self.gt is not None and not out > self.gt)
                or (self.le is not None and not out <= self.le) or (self.lt is not None and not out < self.lt)):
            raise ValueError(f"{out!r} is out of range")
        return out

    def help(self) -> str:
        if self.choices is not None:
            return f"one of {', '.join(self.choices)}"
        what = self.base.help()
        lo = (f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None)
        hi = (f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None)
        if lo and hi:
            return f"{what} in {lo}, {hi}"
        if lo:
            return f"{what} {'>=' if self.ge is not None else '>'} {lo[1:]}"
        if hi:
            return f"{what} {'<=' if self.le is not None else '<'} {hi[:-1]}"
        return what


_STRICT = {fv.Bool: Bool, fv.Int: Int, fv.Float: Float}


def _strict(checker: fv.Checker) -> fv.Checker:
    """Swap fastargs' lax bool/int/float checkers for ours, also inside And/Or."""
    if type(checker) in _STRICT:
        return _STRICT[type(checker)]()
    if isinstance(checker, (fv.And, fv.Or)):
        checker.checkers = [_strict(c) for c in checker.checkers]
    return checker


# ---- options as dataclass fields ----------------------------------------------------------------

def option(default: Any = dataclasses.MISSING, help: str = "", *, ge: float | None = None,
           gt: float | None = None, le: float | None = None, lt: float | None = None,
           choices: Sequence[str] | None = None, alters: bool = True) -> Any:
    """A dataclass field that is a command-line option (no default: a required option).

    ``alters=False`` marks an option that does not change what a run computes (paths, worker
    counts, progress output, speed switches): a resumed run may change it freely.
    """
    meta = {"help": help, "bounds": dict(ge=ge, gt=gt, le=le, lt=lt), "choices": choices, "alters": alters}
    return dataclasses.field(default=default, metadata=meta)


def _sections(container: type) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(container)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(container)]


def _option_type(hint: Any) -> tuple[type, bool]:
    """(value type, may it be None) of an annotation such as ``float`` or ``float | None``."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return hint, False


def declare(container: type, config: Config | None = None) -> Config:
    """Register every section of ``container`` (a dataclass of section dataclasses) as fastargs params."""
    config = Config() if config is None else config
    for name, cls in _sections(container):
        hints = typing.get_type_hints(cls)
        params = {}
        for f in dataclasses.fields(cls):
            kind, _ = _option_type(hints[f.name])
            meta = f.metadata
            checker = Value(kind, choices=meta.get("choices"), **meta.get("bounds", {}))
            required = f.default is dataclasses.MISSING
            params[f.name] = Param(checker, meta.get("help", ""), default=None if required else f.default,
                                   required=required)
        Section(name, (cls.__doc__ or "").strip().split("\n")[0], config_descriptor=config).params(**params)
    return config


def build_options(container: type, config: Config) -> Any:
    """The ``container`` instance of a loaded config; relation errors of all sections in one ConfigError."""
    sections, errors = {}, []
    for name, cls in _sections(container):
        kwargs = {f.name: config.content.get((name, f.name), None if f.default is dataclasses.MISSING
                                             else f.default) for f in dataclasses.fields(cls)}
        try:
            sections[name] = cls(**kwargs)
        except ConfigError as e:
            errors.append(str(e))
    if errors:
        raise ConfigError("; ".join(errors))
    return container(**sections)


def load_options(container: type, argv: list[str]) -> Any:
    """Parse ``argv`` into a ``container`` instance; raises ConfigError naming every problem."""
    config = declare(container)
    load_config(argv, config)
    return build_options(container, config)


def parse_options(container: type, argv: list[str] | None = None, *, description: str = "",
                  prog: str | None = None) -> Any:
    """:func:`load_options` for a script: ``--help`` prints the options (exit 0); an error one line (exit 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    prog = prog or sys.argv[0].rsplit("/", 1)[-1] or "script"
    config = declare(container)
    if "-h" in argv or "--help" in argv:
        print(_usage(config, prog, description))
        sys.exit(0)
    try:
        load_config(argv, config)
        return build_options(container, config)
    except ConfigError as e:
        _exit_usage(prog, e)


def options_dict(options: Any) -> dict[str, dict[str, Any]]:
    """The sections of an options instance as plain nested dicts ({section: {key: value}})."""
    return dataclasses.asdict(options)


def option_defaults(container: type) -> dict[str, Any]:
    """Dotted key -> default of every option (``dataclasses.MISSING`` for a required one)."""
    return {f"{name}.{f.name}": f.default for name, cls in _sections(container) for f in dataclasses.fields(cls)}


def altering_keys(container: type) -> set[str]:
    """Dotted keys of the options that change what a run computes (``alters=True``)."""
    return {f"{name}.{f.name}" for name, cls in _sections(container) for f in dataclasses.fields(cls)
            if f.metadata.get("alters", True)}


# ---- loading ------------------------------------------------------------------------------------

def _resolve_key(config: Config, path: tuple[str, ...], origin: str) -> tuple[str, ...]:
    """Return ``path`` if it names a declared param, else raise a ConfigError with a suggestion."""
    if path in config.entries:
        return path
    sections = sorted({p[:-1] for p in config.entries}, key=len, reverse=True)
    section = next((s for s in sections if path[:len(s)] == s), None)
    dotted = ".".join(path)
    if section is None:
        names = sorted(".".join(s) for s in set(sections))
        near = nearest(dotted.rsplit(".", 1)[0], names, cutoff=0.4)
        hint = f"did you mean '{near}'? " if near else ""
        raise ConfigError(f"unknown section in '{dotted}' ({origin}); {hint}Valid sections: {', '.join(names)}.")
    keys = sorted(p[-1] for p in config.entries if p[:-1] == section)
    sec = ".".join(section)
    near = nearest(".".join(path[len(section):]), keys, cutoff=0.4)
    hint = f"did you mean '{sec}.{near}'? " if near else ""
    raise ConfigError(f"unknown key '{dotted}' ({origin}); {hint}Valid keys of section '{sec}': {', '.join(keys)}.")


def _flatten(tree: Any, prefix: tuple[str, ...], origin: str) -> dict[tuple[str, ...], Any]:
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin} must hold a mapping of sections to keys, got {type(tree).__name__}")
    out: dict[tuple[str, ...], Any] = {}
    for key, value in tree.items():
        path = prefix + tuple(str(key).split("."))
        if isinstance(value, dict):
            out.update(_flatten(value, path, origin))
        else:
            out[path] = value
    return out


def _read_file(fname: str) -> dict[tuple[str, ...], Any]:
    try:
        with open(fname) as handle:
            tree = yaml.safe_load(handle)
    except OSError as e:
        raise ConfigError(f"cannot read config file '{fname}': {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file '{fname}' is not valid YAML/JSON: {' '.join(str(e).split())}") from None
    return {} if tree is None else _flatten(tree, (), f"config file '{fname}'")


def _split_argv(config: Config, argv: list[str]) -> tuple[list[str], list[tuple[tuple[str, ...], Any, str]]]:
    """Split argv into config files and (path, raw value, origin) assignments."""
    files: list[str] = []
    assigns: list[tuple[tuple[str, ...], Any, str]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-C", "--config-file"):
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a file name")
            files.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith(("-C=", "--config-file=")):
            files.append(arg.split("=", 1)[1])
            i += 1
            continue
        if not arg.startswith("--") or len(arg) == 2:
            raise ConfigError(f"unexpected argument '{arg}'; options look like --section.key=value "
                              f"(or -C file.yaml)")
        name, eq, value = arg[2:].partition("=")
        path = _resolve_key(config, tuple(name.split(".")), "command line")
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            checker = config.entries[path].checker
            if nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            elif isinstance(checker, Bool) or (isinstance(checker, Value) and checker.kind is bool):
                value = "true"
            else:
                raise ConfigError(f"--{name} needs a value (--{name}=VALUE)")
        assigns.append((path, value, "command line"))
        i += 1
    return files, assigns


def _usage(config: Config, prog: str, description: str) -> str:
    lines = [f"usage: {prog} [-C FILE.yaml] [--section.key=VALUE ...]", ""]
    if description:
        lines += [description, ""]
    for path, param in config.entries.items():
        default = "required" if param.required else f"default={param.default!r}"
        lines.append(f"  --{'.'.join(path):<28} {param.checker.help()}; {default}. {param.desc}")
    return "\n".join(lines)


def load_config(argv: list[str], config: Config | None = None) -> Config:
    """Fill ``config`` (default: fastargs' current config) from argv; raise ConfigError on any problem."""
    config = get_current_config() if config is None else config
    for param in config.entries.values():
        param.checker = _strict(param.checker)
    files, assigns = _split_argv(config, list(argv))
    values: dict[tuple[str, ...], tuple[Any, str]] = {}
    for fname in files:
        for path, value in _read_file(fname).items():
            origin = f"config file '{fname}'"
            values[_resolve_key(config, path, origin)] = (value, origin)
    for path, value, origin in assigns:
        values[path] = (value, origin)

    config.content = {}
    errors = []
    for path, param in config.entries.items():
        key = ".".join(path)
        if path in values and values[path][0] is None:
            fix = ("(it is required)" if param.required else "or leave the key out to keep it unset"
                   if param.default is None else f"or leave the key out for the default ({param.default!r})")
            errors.append(f"--{key} is null ({values[path][1]}): give {param.checker.help()} {fix}")
            continue
        raw, origin = values.get(path, (param.default, "default"))
        if raw is None:
            if param.required:
                errors.append(f"missing required --{key} ({param.desc or param.checker.help()})")
            continue
        try:
            config.content[path] = param.validate(raw)
        except (ValidationError, MissingValueError):
            errors.append(f"--{key}={raw!r} ({origin}) is invalid: expected {param.checker.help()}")
    if errors:
        raise ConfigError("; ".join(errors))
    return config


def _exit_usage(prog: str, error: ConfigError) -> typing.NoReturn:
    print(f"{prog}: error: {str(error).rstrip('.')}. Run with --help to list the options.", file=sys.stderr)
    sys.exit(2)


def parse_config(argv: list[str] | None = None, *, description: str = "",
                 config: Config | None = None, prog: str | None = None) -> Config:
    """Parse argv (default ``sys.argv[1:]``) into a fastargs config; on error print one line and exit 2.

    ``-h``/``--help`` prints every option and exits 0. Returns the filled config, which
    fastargs' ``@param`` decorators read from.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    config = get_current_config() if config is None else config
    prog = prog or sys.argv[0].rsplit("/", 1)[-1] or "script"
    if "-h" in argv or "--help" in argv:
        print(_usage(config, prog, description))
        sys.exit(0)
    try:
        return load_config(argv, config)
    except ConfigError as e:
        _exit_usage(prog, e)


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def config_to_dict(config: Config | None = None) -> dict[str, Any]:
    """The resolved config as a nested plain dict ({section: {key: value}}), ready for json.dump."""
    config = get_current_config() if config is None else config
    out: dict[str, Any] = {}
    for path in config.entries:
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = _plain(config.content.get(path))
    return out
