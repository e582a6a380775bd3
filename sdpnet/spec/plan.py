"""The resolved form of a model spec: every layer with its constructor keywords, ready to build.

Resolution (:func:`sdpnet.spec.resolve`) applies the rules of the spec language once, in pure
Python: stem/body/head roles, keyword defaults from the hyperparameters, widths through the
network, the head completed (pooling + ``LIN`` when missing), token declarations collected and
linear drop-path rates. The builder turns a :class:`Plan` into modules without reading strings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping


@dataclass(frozen=True)
class LayerPlan:
    """One layer to build.

    Args:
        name: block name (registry key).
        role: ``stem``, ``body`` or ``head``.
        kwargs: constructor keywords, fully resolved: the main argument under the schema's ``arg``,
            every keyword of the schema for this role under its ``target`` name, and ``drop_path``
            for residual blocks. ``None`` only where the schema's default is None and the block
            decides (e.g. ``hidden`` of a head ``MLP``).
        in_dim: width of the image tokens entering the layer (for head layers: pooled width).
        out_dim: width leaving it.
        col: column of the block in the spec string (0-based), for error messages.
    """

    name: str
    role: str
    kwargs: Mapping[str, Any]
    in_dim: int
    out_dim: int
    col: int = field(default=0, compare=False)

    def __deepcopy__(self, memo: dict) -> "LayerPlan":
        return self   # immutable; see Plan.__deepcopy__


@dataclass(frozen=True)
class Plan:
    """A whole network to build.

    Args:
        layers: stem, body and head layers in execution order (``CLS``/``REG`` declarations are
            not layers; the head always ends in a classifier and starts with one pooling layer).
        num_cls: class tokens declared; num_reg: register tokens declared.
        dim: stem output width (the width tokens are created with).
        num_classes, in_chans, img_size: from the hyperparameters.
        hparams: all hyperparameters after overrides (for saving with a run).
    """

    layers: tuple[LayerPlan, ...]
    num_cls: int
    num_reg: int
    dim: int
    num_classes: int
    in_chans: int
    img_size: int
    hparams: Mapping[str, Any]

    def __deepcopy__(self, memo: dict) -> "Plan":
        # Immutable (frozen, read-only mappings), so a copy may share it; deepcopy cannot copy a
        # MappingProxyType, and a SpecNet holding its plan must deep-copy (timm's ModelEma, EMA here).
        return self
