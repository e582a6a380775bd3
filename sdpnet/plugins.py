"""Plugins: user modules that register blocks (``--import``, ``SDPNET_PLUGINS``, entry points ``sdpnet.plugins``).

Torch-free itself: it loads modules with importlib only; what a plugin imports is the plugin's business.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from pathlib import Path

ENV = "SDPNET_PLUGINS"
GROUP = "sdpnet.plugins"
_loaded: dict[str, str] = {}   # name as given -> module name, so loading twice is a no-op


def env_plugins() -> list[str]:
    """The names in ``SDPNET_PLUGINS`` (separated by os.pathsep or commas)."""
    text = os.environ.get(ENV, "")
    return [p.strip() for p in re.split(f"[,{re.escape(os.pathsep)}]", text) if p.strip()]


def _load_one(name: str) -> str:
    if name in _loaded:
        return _loaded[name]
    if name.endswith(".py") or os.sep in name or "/" in name:
        path = Path(name).resolve()
        if not path.is_file():
            raise ValueError(f"plugin file {name!r} not found: give an existing .py file to --import or {ENV}")
        module_name = f"sdpnet_plugin_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
    else:
        module_name = name
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.split(".")[0] != e.name.split(".")[0]:
                raise   # the plugin exists but itself imports something missing: show the real error
            raise ValueError(f"plugin module {name!r} not found: install it or pass --import FILE.py") from None
    _loaded[name] = module_name
    return module_name


def load_plugins(names: list[str] = (), *, env: bool = True, entry_points: bool = True) -> list[str]:
    """Load the plugins ``names`` (module names or .py paths), then ``SDPNET_PLUGINS`` and the installed entry
    points of group ``sdpnet.plugins``; returns every name loaded, in order (what a run folder records)."""
    wanted = list(names) + (env_plugins() if env else [])
    if entry_points:
        wanted += [ep.value.split(":")[0] for ep in importlib.metadata.entry_points(group=GROUP)]
    done: list[str] = []
    for name in wanted:
        if name not in done:
            _load_one(name)
            done.append(name)
    return done


def split_imports(argv: list[str]) -> tuple[list[str], list[str]]:
    """``--import X`` / ``--import=X`` taken out of ``argv`` (for train_ffcv.py, whose options are fastargs'):
    returns (plugins, the other arguments). A .py file is recorded by its absolute path."""
    plugins, rest, it = [], [], iter(argv)
    for arg in it:
        if arg == "--import":
            value = next(it, None)
            if value is None:
                raise ValueError("--import needs a MODULE or a FILE.py")
        elif arg.startswith("--import="):
            value = arg.split("=", 1)[1]
        else:
            rest.append(arg)
            continue
        plugins.append(str(Path(value).resolve()) if value.endswith(".py") else value)
    return plugins, rest
