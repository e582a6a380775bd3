"""timm registration of the spec files: ``timm.create_model("sdpnet_xl")`` builds ``specs/xl.json``.

Every ``specs/*.json`` and ``specs/zoo/*.json`` becomes a timm model named after its ``"name"``, prefixed
with ``sdpnet_`` when it does not start with it (``specs/zoo/vit_tiny_patch16_224.json`` is
``sdpnet_vit_tiny_patch16_224``, so timm's own ``vit_tiny_patch16_224`` is never overwritten).

Importing this module registers them; :mod:`sdpnet.builder` also registers them on import when timm is
already imported (importing timm costs about 2 s, so the builder never imports it itself)::

    import sdpnet.timm_models  # noqa: F401
    model = timm.create_model("sdpnet_xl", num_classes=10, drop_path_rate=0.2)

timm's keywords ``drop_rate`` and ``drop_path_rate`` map to the spec hyperparameters ``dropout`` and
``drop_path``; every other keyword is a spec override (``dim=96``, ``img_size=32``, ...), checked by the
spec resolver like any override. There are no pretrained weights: ``pretrained=True`` is an error.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

# timm's create_model keywords -> spec hyperparameters.
_TIMM_KWARGS = {"drop_rate": "dropout", "drop_path_rate": "drop_path"}

default_cfgs: dict[str, dict[str, Any]] = {}  # read by timm's register_model (one pretrained cfg per model)
_REGISTERED: dict[str, Path] = {}


def spec_files() -> list[Path]:
    """The preset spec files: ``specs/*.json`` then ``specs/zoo/*.json``, sorted."""
    return sorted(SPECS_DIR.glob("*.json")) + sorted((SPECS_DIR / "zoo").glob("*.json"))


def timm_name(spec_name: str) -> str:
    """The timm model name of a spec named ``spec_name`` (``sdpnet_`` prefixed unless already)."""
    return spec_name if spec_name.startswith("sdpnet_") else f"sdpnet_{spec_name}"


def register_timm_models() -> dict[str, Path]:
    """Register every preset spec file with timm (idempotent); returns ``{timm name: spec file}``."""
    from timm.models import is_model, register_model

    for path in spec_files():
        with open(path) as f:
            hparams = json.load(f)
        name = timm_name(str(hparams.get("name") or path.stem))
        known = _REGISTERED.get(name)
        if known is not None:
            if known != path:
                raise ValueError(f"{path} and {known} both register the timm model {name!r}; rename one spec")
            continue
        if is_model(name):
            raise ValueError(f"timm already has a model named {name!r} that is not sdpnet's; rename {path}")
        img_size = int(hparams.get("img_size", 224))
        default_cfgs[name] = {
            "url": "",
            "num_classes": int(hparams.get("num_classes", 1000)),
            "input_size": (int(hparams.get("in_chans", 3)), img_size, img_size),
        }
        register_model(_entrypoint(name, path, str(hparams.get("description", ""))))
        _REGISTERED[name] = path
    return dict(_REGISTERED)


def _entrypoint(name: str, path: Path, description: str) -> Callable[..., nn.Module]:
    def create(pretrained: bool = False, pretrained_cfg: Any = None, pretrained_cfg_overlay: Any = None,
               cache_dir: Any = None, **kwargs: Any) -> nn.Module:
        if pretrained:
            raise ValueError(f"{name}: sdpnet publishes no pretrained weights; create it with pretrained=False")
        device = kwargs.pop("device", None)
        dtype = kwargs.pop("dtype", None)
        from sdpnet.builder import build

        with torch.device(device) if device is not None else nullcontext():
            model = build(str(path), **{_TIMM_KWARGS.get(k, k): v for k, v in kwargs.items()})
        return model.to(dtype=dtype) if dtype is not None else model

    create.__name__ = create.__qualname__ = name
    create.__module__ = __name__
    create.__doc__ = f"{description} ({path.relative_to(SPECS_DIR.parent)})"
    return create


register_timm_models()
