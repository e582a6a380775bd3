"""The resolved form of a model spec: every layer with its constructor keywords and shapes, ready to build.

Resolution (:func:`sdpnet.spec.resolve`) applies the rules of the spec language once, in pure Python, by
reading block schemas: stem/body/head roles, keyword defaults from the hyperparameters, widths and grids
through the network, the head completed (pool + classifier when missing), token declarations collected and
linear drop-path rates. The builder turns a :class:`Plan` into modules without reading strings, and reads
every shape fact from the plan, never from the modules.
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
        kind: how the builder calls it (``layer``, ``tokens``, ``sequence``, ``pool``, ``classifier``;
            see :data:`sdpnet.registry.KINDS`), after keywords that change it.
        kwargs: constructor keywords, fully resolved: the main argument under the schema's ``arg``, every
            keyword of the schema for this role under its ``target`` name (the width key gets the output
            width), ``drop_path`` for residual body blocks, and the context keys the schema asks for.
            ``None`` only where the schema's default is None and the block decides (``hidden`` of a head
            ``MLP``).
        in_dim: width of the image tokens entering the layer (for head layers: the pooled width).
        out_dim: width leaving it (classifiers: ``num_classes``).
        grid: (H, W) token grid entering the layer at the spec's ``img_size``.
        stride: how much the layer divides the grid.
        col: column of the block in the spec string (0-based), for error messages.
    """

    name: str
    role: str
    kind: str
    kwargs: Mapping[str, Any]
    in_dim: int
    out_dim: int
    grid: tuple[int, int] = (0, 0)
    stride: int = 1
    col: int = field(default=0, compare=False)

    def __deepcopy__(self, memo: dict) -> "LayerPlan":
        return self   # immutable; see Plan.__deepcopy__


@dataclass(frozen=True)
class Plan:
    """A whole network to build.

    Args:
        layers: stem, body and head layers in execution order (declarations are not layers; the head always
            starts with one pool and ends in one classifier).
        num_cls: class tokens declared; num_reg: register tokens declared.
        dim: stem output width (the width tokens are created with).
        num_classes, in_chans, img_size: from the hyperparameters.
        hparams: all hyperparameters after overrides (for saving with a run).
        stride: the product of the stem's and body's strides (input grid / output grid).
        text: the spec text the layers' ``col`` point into (the source string, or the rendered JSON spec), for
            errors found after resolution (:mod:`sdpnet.models.probe`).
    """

    layers: tuple[LayerPlan, ...]
    num_cls: int
    num_reg: int
    dim: int
    num_classes: int
    in_chans: int
    img_size: int
    hparams: Mapping[str, Any]
    stride: int = 1
    text: str | None = field(default=None, compare=False)

    @property
    def num_features(self) -> int:
        """Width of the pooled features (the classifier's input)."""
        return next(layer.out_dim for layer in self.layers if layer.kind == "pool")

    def __deepcopy__(self, memo: dict) -> "Plan":
        # Immutable (frozen, read-only mappings), so a copy may share it; deepcopy cannot copy a
        # MappingProxyType, and a SpecNet holding its plan must deep-copy (timm's ModelEma, EMA here).
        return self
