"""sdpnet: a spec language for hybrid conv/transformer image classifiers, and the tools to train them.

``import sdpnet`` does not import torch: parsing and validating specs is pure Python. ``build``
imports the builder (and torch) on first use.

The shipped presets build by name from anywhere (``sdpnet.build("sdpnet_xl")``, ``sdpnet.list_models("sdpnet_v1*")``)
and are timm models: ``timm.create_model("sdpnet_xl")`` works once both sdpnet and timm are imported, in either
order (importing timm after sdpnet registers them as soon as timm is loaded), or after ``sdpnet.register_timm()``.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
import warnings
from typing import TYPE_CHECKING, Any, Sequence

from sdpnet import vocabulary as _vocabulary  # noqa: F401  (declares the built-in block schemas)
from sdpnet.registry import (
    BlockSchema, Derived, Param, Range, Width, declare_block, get_block, get_schema, list_blocks, register_block,
)
from sdpnet.spec.presets import list_models
from sdpnet.spec import ModelSpec, Spec, SpecError, load_spec, parse, resolve

if TYPE_CHECKING:
    from sdpnet.models.builder import SpecNet

__version__ = "0.1.0"


def build(spec: Any, pretrained: Any = None, **overrides: Any) -> "SpecNet":
    """Build a model from a preset name (``sdpnet_xl``), a spec file path, a spec string, a :class:`Spec` or a
    :class:`ModelSpec`; ``overrides`` replace its hyperparameters. ``pretrained``: load weights from a
    ``.safetensors`` export, a ``checkpoint.pt`` or a run folder (no pickle; see :mod:`sdpnet.models.weights`)."""
    from sdpnet.models.builder import build as _build

    return _build(spec, pretrained=pretrained, **overrides)


def register_timm() -> list[str]:
    """Register every preset with timm (idempotent) and return their names; imports timm.

    Not needed when sdpnet and timm are both imported: that registers them already, in either order.
    """
    from sdpnet.models.timm_models import register_timm_models

    return sorted(register_timm_models())


class _LoaderThenRegister(importlib.abc.Loader):
    """timm's own loader, then :func:`register_timm` once timm's ``__init__`` has run."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterWhenTimmLoads)]
        if "sdpnet.models.timm_models" in sys.modules:  # it imported timm (register_timm()) and registers as it ends
            return
        try:
            register_timm()
        except Exception as e:  # never break `import timm`; sdpnet.register_timm() raises the error itself
            warnings.warn(f"sdpnet could not register its presets with timm ({type(e).__name__}: {e}); "
                          f"call sdpnet.register_timm() for the full error", stacklevel=2)

    def __getattr__(self, name: str) -> Any:  # resource readers, get_source, ... stay timm's loader's
        return getattr(self._loader, name)


class _RegisterWhenTimmLoads(importlib.abc.MetaPathFinder):
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
        if spec is not None and spec.loader is not None and not isinstance(spec.loader, _LoaderThenRegister):
            spec.loader = _LoaderThenRegister(spec.loader)
        return spec


if "timm" in sys.modules:  # timm (hence torch) is loaded: register the presets as timm models now
    register_timm()
elif not any(isinstance(f, _RegisterWhenTimmLoads) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenTimmLoads())

__all__ = [
    "BlockSchema", "Derived", "ModelSpec", "Param", "Range", "Spec", "SpecError", "Width", "build",
    "declare_block", "get_block", "get_schema", "list_blocks", "list_models", "load_spec", "parse", "register_block",
    "register_timm", "resolve",
]
