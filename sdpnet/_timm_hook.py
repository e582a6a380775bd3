"""Registering the presets with timm in either import order, while ``import sdpnet`` imports neither torch nor timm.

timm reads no plugin entry points (1.0.31: its registry is filled only by ``@register_model`` as its modules run),
so when timm is already loaded :func:`install` registers the presets at once, and otherwise it puts a finder on
``sys.meta_path`` that wraps timm's loader: after timm's ``__init__`` has run, the presets are registered and the
finder removes itself. tests/test_layout.py::TestTimmHook shows that nothing else would do.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import Any, Sequence

__all__ = ["install", "register_timm"]


def register_timm() -> list[str]:
    """Register every preset with timm (idempotent) and return their names; imports timm.

    Not needed when sdpnet and timm are both imported: that registers them already, in either order.
    """
    # torch and timm: `import sdpnet` stays torch-free, so the timm models are imported on first use
    from sdpnet.models.timm_models import register_timm_models

    return sorted(register_timm_models())


class LoaderThenRegister(importlib.abc.Loader):
    """timm's own loader, then :func:`register_timm` once timm's ``__init__`` has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, RegisterWhenTimmLoads)]
        if "sdpnet.models.timm_models" in sys.modules:  # it imported timm (register_timm()) and registers as it ends
            return
        try:
            register_timm()
        except Exception as e:  # never break `import timm`; sdpnet.register_timm() raises the error itself
            warnings.warn(f"sdpnet could not register its presets with timm ({type(e).__name__}: {e}); "
                          f"call sdpnet.register_timm() for the full error", stacklevel=2)

    def __getattr__(self, name: str) -> Any:  # resource readers, get_source, ... stay timm's loader's
        return getattr(self._loader, name)


class RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``timm`` is about to be imported, hands back the spec the other finders give,
    with its loader wrapped (above); that loader removes this finder once timm is loaded."""

    def __init__(self) -> None:
        self._busy = False

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "timm" or self._busy:
            return None
        self._busy = True  # importlib.util.find_spec asks the meta path again, this finder included
        try:
            spec = importlib.util.find_spec("timm")
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None and not isinstance(spec.loader, LoaderThenRegister):
            spec.loader = LoaderThenRegister(spec.loader)
        return spec


def install() -> None:
    """Register the presets now if timm (hence torch) is loaded, else when it is (once per process)."""
    if "timm" in sys.modules:
        register_timm()
    elif not any(isinstance(f, RegisterWhenTimmLoads) for f in sys.meta_path):
        sys.meta_path.insert(0, RegisterWhenTimmLoads())
