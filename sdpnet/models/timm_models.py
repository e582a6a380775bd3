"""timm registration of the presets: ``timm.create_model("sdpnet_xl")`` builds ``specs/xl.json``.

Every preset (:mod:`sdpnet.spec.presets`: ``specs/*.json``, ``specs/zoo/*.json``) becomes a timm model of the same
name (``sdpnet_xl``, ``sdpnet_vit_tiny_patch16_224``: timm's own ``vit_tiny_patch16_224`` is never
overwritten). Registration is explicit and order-independent: ``import sdpnet`` registers them as soon as timm
is imported (before or after), ``sdpnet.register_timm()`` does it at once, and so does importing this module::

    import sdpnet, timm
    model = timm.create_model("sdpnet_xl", num_classes=10, drop_path_rate=0.2)
    backbone = timm.create_model("sdpnet_fashion_mnist", features_only=True, out_indices=(1, 6))

Models are built through timm's ``build_model_with_cfg``, so timm's keywords behave as for timm's models:
``num_classes`` (0: pre-logits features), ``in_chans``, ``img_size``, ``drop_rate`` and ``drop_path_rate``
(the spec's ``dropout`` and ``drop_path``), ``global_pool`` (``""``: no pooling), ``features_only`` with
``out_indices`` and ``feature_cls`` (default ``"getter"``: ``forward_intermediates``), ``device``, ``dtype``,
``pretrained_cfg_overlay``. Every spec hyperparameter is a keyword too (``dim=96``, ``heads=4``); any other
keyword is a ``TypeError``. The registered ``pretrained_cfg`` of each name is the one the model reports
(:func:`sdpnet.models.builder.timm_cfg`). sdpnet publishes no weights to download: ``pretrained=True`` loads your own
file, ``pretrained_cfg_overlay=dict(file="model.safetensors")`` (``python -m sdpnet export``), else is an error.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any, Callable

import torch
from timm.models import build_model_with_cfg, is_model, register_model
from torch import nn

from sdpnet.models.builder import SpecNet, build, default_out_indices, feature_info, make_block, timm_cfg
from sdpnet.models.weights import timm_pretrained_file
from sdpnet.spec import load_spec, presets, resolve
from sdpnet.spec.files import hparam_types
from sdpnet.spec.text import suggest

# timm's create_model keywords -> spec hyperparameters.
TIMM_KWARGS = {"drop_rate": "dropout", "drop_path_rate": "drop_path"}
# timm's keywords the entry point handles itself (not spec hyperparameters).
_MODEL_KWARGS = ("device", "dtype", "global_pool")

default_cfgs: dict[str, dict[str, Any]] = {}  # read by timm's register_model (one pretrained cfg per model)
_REGISTERED: dict[str, Path] = {}


def register_timm_models() -> dict[str, Path]:
    """Register every preset with timm (idempotent); returns ``{timm name: spec file}``."""
    for name, path in presets.presets().items():
        if name in _REGISTERED:
            continue
        if is_model(name):
            raise ValueError(f"timm already has a model named {name!r} that is not sdpnet's; rename {path}")
        model_spec = load_spec(path)
        plan = resolve(model_spec)
        with torch.device("meta"):  # the stem names the first convolution; nothing is allocated
            stem = nn.Sequential(*(make_block(layer) for layer in plan.layers if layer.role == "stem"))
        default_cfgs[name] = timm_cfg(plan, stem, model_spec)
        register_model(_entrypoint(name, path, str(model_spec.hparams.get("description", ""))))
        _REGISTERED[name] = path
    return dict(_REGISTERED)


def spec_overrides(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """timm keywords -> spec overrides (``drop_rate`` -> ``dropout``, ...); anything else is a ``TypeError``."""
    valid = hparam_types()
    out: dict[str, Any] = {}
    for key, value in kwargs.items():
        target = TIMM_KWARGS.get(key, key)
        if target not in valid or target in ("name", "description"):
            known = [*TIMM_KWARGS, *_MODEL_KWARGS, "features_only", "out_indices", "feature_cls",
                     *(k for k in valid if k not in ("name", "description"))]
            raise TypeError(f"{name}() got an unexpected keyword argument {key!r}; "
                            f"{suggest(key, known, 'valid keywords')}")
        if target == "img_size" and isinstance(value, (tuple, list)):
            if len(value) != 2 or value[0] != value[1]:
                raise ValueError(f"{name}: img_size={tuple(value)}: sdpnet specs are built for square inputs "
                                 f"(any input size runs afterwards); give one int")
            value = value[0]
        out[target] = value
    return out


def _create(name: str, path: Path, file: Path | None = None, **kwargs: Any) -> SpecNet:
    """The model timm's ``build_model_with_cfg`` instantiates: the preset with ``kwargs`` as overrides, with the
    weights in ``file`` (:func:`sdpnet.models.builder.build_pretrained`) when given."""
    device, dtype, global_pool = (kwargs.pop(k, None) for k in _MODEL_KWARGS)
    overrides = spec_overrides(name, kwargs)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = build(path, pretrained=file, **overrides)
    if dtype is not None:
        model.to(dtype=dtype)
    if global_pool is not None:
        model._set_global_pool(global_pool)
    return model


def _entrypoint(name: str, path: Path, description: str) -> Callable[..., nn.Module]:
    def create(pretrained: bool = False, **kwargs: Any) -> nn.Module:
        file = timm_pretrained_file(name, kwargs) if pretrained else None  # your own weights: a file or an error
        feature_cfg = {"feature_cls": "getter", **(kwargs.pop("feature_cfg", None) or {})}
        if kwargs.get("features_only") and "out_indices" not in kwargs and "out_indices" not in feature_cfg:
            spec_kwargs = {k: v for k, v in kwargs.items()
                           if k not in (*_MODEL_KWARGS, "features_only", "feature_cls", "pretrained_cfg",
                                        "pretrained_cfg_overlay", "cache_dir")}
            plan = resolve(load_spec(path, **spec_overrides(name, spec_kwargs)))
            feature_cfg["out_indices"] = default_out_indices(feature_info(plan))
        return build_model_with_cfg(functools.partial(_create, name, path, file), name, pretrained=False,
                                    feature_cfg=feature_cfg, **kwargs)

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"{description} ({path.name})"
    return create


register_timm_models()
