"""sdpnet: a spec language for hybrid conv/transformer image classifiers, and the tools to train them.

``import sdpnet`` does not import torch: parsing and validating specs is pure Python. ``build``
imports the builder (and torch) on first use.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from sdpnet import vocabulary as _vocabulary  # noqa: F401  (declares the built-in block schemas)
from sdpnet.registry import (
    BlockSchema, Derived, Param, Range, Width, declare_block, get_block, get_schema, list_blocks, register_block,
)
from sdpnet.spec import ModelSpec, Spec, SpecError, load_spec, parse, resolve

if TYPE_CHECKING:
    from sdpnet.builder import SpecNet

__version__ = "0.1.0"


def build(spec: Any, **overrides: Any) -> "SpecNet":
    """Build a model from a spec file path, a spec string, a :class:`Spec` or a :class:`ModelSpec`."""
    from sdpnet.builder import build as _build

    return _build(spec, **overrides)


if "timm" in sys.modules:  # timm (hence torch) is loaded: register the presets as timm models
    import sdpnet.timm_models  # noqa: E402,F401

__all__ = [
    "BlockSchema", "Derived", "ModelSpec", "Param", "Range", "Spec", "SpecError", "Width", "build",
    "declare_block", "get_block", "get_schema", "list_blocks", "load_spec", "parse", "register_block", "resolve",
]
