"""sdpnet: a spec language for hybrid conv/transformer image classifiers, and the tools to train them.

``import sdpnet`` does not import torch: parsing and validating specs is pure Python. ``build``
imports the builder (and torch) on first use.

The shipped presets build by name from anywhere (``sdpnet.build("sdpnet_xl")``, ``sdpnet.list_models("sdpnet_v1*")``)
and are timm models: ``timm.create_model("sdpnet_xl")`` works once both sdpnet and timm are imported, in either
order (importing timm after sdpnet registers them as soon as timm is loaded), or after ``sdpnet.register_timm()``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdpnet import vocabulary as _vocabulary  # noqa: F401  (declares the built-in block schemas)
from sdpnet._timm_hook import install as _install_timm_hook, register_timm
from sdpnet.registry import (
    BlockSchema, Derived, Param, Range, Width, declare_act, declare_block, declare_norm, declare_pos, get_block,
    get_schema, list_blocks, list_components, register_act, register_block, register_norm, register_pos,
)
from sdpnet.spec import ModelSpec, Spec, SpecError, load_spec, parse, resolve
from sdpnet.spec.presets import list_models

if TYPE_CHECKING:
    from sdpnet.models.builder import SpecNet

__version__ = "0.1.0"


def build(spec: Any, pretrained: Any = None, **overrides: Any) -> "SpecNet":
    """Build a model from a preset name (``sdpnet_xl``), a spec file path, a spec string, a :class:`Spec` or a
    :class:`ModelSpec`; ``overrides`` replace its hyperparameters. ``pretrained``: load weights from a
    ``.safetensors`` export, a ``checkpoint.pt`` or a run folder (no pickle; see :mod:`sdpnet.models.weights`)."""
    # torch: `import sdpnet` stays torch-free (parsing needs none), so the builder is imported on first use
    from sdpnet.models.builder import build as _build

    return _build(spec, pretrained=pretrained, **overrides)


_install_timm_hook()  # timm.create_model("sdpnet_xl") in either import order: see sdpnet/_timm_hook.py

__all__ = [
    "BlockSchema", "Derived", "ModelSpec", "Param", "Range", "Spec", "SpecError", "Width", "build", "declare_act",
    "declare_block", "declare_norm", "declare_pos", "get_block", "get_schema", "list_blocks", "list_components",
    "list_models", "load_spec", "parse", "register_act", "register_block", "register_norm", "register_pos",
    "register_timm", "resolve",
]
