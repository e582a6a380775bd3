"""Strict command-line configuration on top of fastargs.

Scripts declare their options the usual fastargs way (``Section(...).params(...)``
at module level, ``@param`` on functions) and call :func:`parse_config` once at
startup. Compared with fastargs' own ``augment_argparse``/``validate`` this:

- rejects unknown sections and keys, naming the nearest valid key and listing the
  valid keys of the section (fastargs silently ignores them);
- parses bools as ``0/1/true/false/yes/no/on/off`` (fastargs' ``Param(bool)`` turns
  the string "False" into True): built-in ``bool``/``int``/``float`` checkers are
  swapped for the strict ones below;
- reports bad types and missing required values together and exits with status 2
  before any work (fastargs' ``validate()`` exits 0);
- never reads environment variables (fastargs does).

Sources, later ones winning: Param defaults, then each ``-C FILE`` (YAML or JSON,
nested ``{section: {key: value}}`` or dotted ``{"section.key": value}``) in order,
then ``--section.key=value`` / ``--section.key value`` arguments. A bool given as a
bare ``--section.flag`` means true.

Example::

    Section("cfg", "Writer").params(
        data_dir=Param(str, "ImageFolder root", required=True),
        overwrite=Param(Bool(), "replace an existing file", default=False),
    )
    config = parse_config(description="Write a .beton")   # uses sys.argv[1:]
    to_save = config_to_dict(config)                        # {"cfg": {...}}

Note: fastargs' ``@param`` does not inject a param whose value is None (optional,
no default); the decorated function's own default then applies.
"""
from __future__ import annotations

import difflib
import re
import sys
from typing import Any, Iterable

import yaml
from fastargs import Config, get_current_config
from fastargs import validation as fv
from fastargs.exceptions import MissingValueError, ValidationError

__all__ = ["Bool", "Int", "Float", "ConfigError", "parse_config", "load_config", "config_to_dict"]

_TRUE = {"1", "true", "yes", "y", "on"}
_FALSE = {"0", "false", "no", "n", "off"}


class Bool(fv.Checker):
    """Strict boolean: True/False, 0/1, or the strings 0/1/true/false/yes/no/on/off (any case)."""

    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str):
            v = value.strip().lower()
            if v in _TRUE:
                return True
            if v in _FALSE:
                return False
        raise ValueError(f"not a boolean: {value!r}")

    def help(self) -> str:
        return "a boolean (0/1/true/false/yes/no)"


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
    """Strict float: a number or a string that parses as one (rejects booleans)."""

    def check(self, value: Any) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)
        raise ValueError(f"not a float: {value!r}")

    def help(self) -> str:
        return "a float"


class ConfigError(ValueError):
    """A configuration value or key that cannot be accepted; the message says why."""


_STRICT = {fv.Bool: Bool, fv.Int: Int, fv.Float: Float}


def _strict(checker: fv.Checker) -> fv.Checker:
    """Swap fastargs' lax bool/int/float checkers for ours, also inside And/Or."""
    if type(checker) in _STRICT:
        return _STRICT[type(checker)]()
    if isinstance(checker, (fv.And, fv.Or)):
        checker.checkers = [_strict(c) for c in checker.checkers]
    return checker


def _nearest(word: str, choices: Iterable[str]) -> str:
    choices = sorted(choices)
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.0)
    return match[0] if match else choices[0]


def _resolve_key(config: Config, path: tuple[str, ...], origin: str) -> tuple[str, ...]:
    """Return ``path`` if it names a declared param, else raise a ConfigError with a suggestion."""
    if path in config.entries:
        return path
    sections = sorted({p[:-1] for p in config.entries}, key=len, reverse=True)
    section = next((s for s in sections if path[:len(s)] == s), None)
    dotted = ".".join(path)
    if section is None:
        names = sorted(".".join(s) for s in set(sections))
        near = _nearest(dotted.rsplit(".", 1)[0], names)
        raise ConfigError(f"unknown section in '{dotted}' ({origin}); did you mean '{near}'? "
                          f"Valid sections: {', '.join(names)}.")
    keys = sorted(p[-1] for p in config.entries if p[:-1] == section)
    sec = ".".join(section)
    near = _nearest(".".join(path[len(section):]), keys)
    raise ConfigError(f"unknown key '{dotted}' ({origin}); did you mean '{sec}.{near}'? "
                      f"Valid keys of section '{sec}': {', '.join(keys)}.")


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
        raise ConfigError(f"config file '{fname}' is not valid YAML/JSON: {e}") from None
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
            if nxt is not None and not nxt.startswith("--"):
                value, i = nxt, i + 1
            elif isinstance(config.entries[path].checker, Bool):
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
        raw, origin = values.get(path, (param.default, "default"))
        key = ".".join(path)
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


def parse_config(argv: list[str] | None = None, *, description: str = "",
                 config: Config | None = None, prog: str | None = None) -> Config:
    """Parse argv (default ``sys.argv[1:]``) into the fastargs config; on error print one line and exit 2.

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
        print(f"{prog}: error: {str(e).rstrip('.')}. Run with --help to list the options.", file=sys.stderr)
        sys.exit(2)


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
