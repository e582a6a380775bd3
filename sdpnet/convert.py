"""Weights of timm's ViT and ConvMixer copied into the equivalent sdpnet build.

``from_timm(timm_model, spec)`` builds ``spec`` and fills every parameter and buffer from ``timm_model``; the
logits then match timm's (tests/test_convert.py: within 1e-4 for vit_tiny_patch16_224 and convmixer_768_32).
The copy is strict: a state entry of either model left unmapped, or a shape that differs, is a ``ValueError``
naming the keys, so a spec that only resembles the timm model is rejected instead of half-loaded.

Equivalent specs (see ``specs/zoo/``)::

    VisionTransformer (class token, global_pool="token")  P16+CLS-POS(cls=true)+ENCx12-TOKS+LIN
    ConvMixer                                            P7(act=gelu,norm=bn)-CM9x20-GAP+LIN(norm=none)

ViT's ``pos_embed`` (1, 1 + gh * gw, C) splits into the class token's position (``POS.cls_pos``) and the
image table (``POS.pos_embed``, reshaped to (1, C, gh, gw)).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sdpnet.blocks import ConvMixerLayer, EncoderBlock, LinearHead, PatchEmbed, PosEmbed
from sdpnet.builder import SpecNet, build


def from_timm(timm_model: nn.Module, spec: Any, **overrides: Any) -> SpecNet:
    """Build ``spec`` (file, string or ModelSpec; ``overrides`` as in :func:`sdpnet.build`) with ``timm_model``'s weights.

    Supports timm's ``VisionTransformer`` (one class token, token pooling, no register tokens) and ``ConvMixer``.
    Raises ``ValueError`` when the spec does not have exactly the timm model's parameters.
    """
    model = build(spec, **overrides)
    kind = type(timm_model).__name__
    if kind == "VisionTransformer":
        mapping = _vit_mapping(timm_model, model)
    elif kind == "ConvMixer":
        mapping = _convmixer_mapping(timm_model, model)
    else:
        raise ValueError(f"from_timm converts timm's VisionTransformer and ConvMixer, not {kind}")
    _load(model, timm_model.state_dict(), mapping)
    return model


def _prefixes(model: nn.Module, kind: type) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, kind)]


def _one(model: nn.Module, kind: type, spec_name: str) -> str:
    found = _prefixes(model, kind)
    if len(found) != 1:
        raise ValueError(f"the spec has {len(found)} {spec_name} blocks; the timm model needs exactly one")
    return found[0]


def _same(src: str, dst: str, keys: list[str]) -> dict[str, str]:
    """timm key -> our key for every entry of timm module ``src`` (``keys``), same local names under ``dst``."""
    return {k: f"{dst}{k[len(src):]}" for k in keys if k.startswith(src + ".")}


def _vit_mapping(vit: nn.Module, model: SpecNet) -> dict[str, Any]:
    if getattr(vit, "global_pool", None) != "token" or getattr(vit, "cls_token", None) is None:
        raise ValueError(f"from_timm supports ViTs pooling one class token (global_pool='token'), "
                         f"got global_pool={getattr(vit, 'global_pool', None)!r}")
    if getattr(vit, "num_reg_tokens", 0) or getattr(vit, "no_embed_class", False):
        raise ValueError("from_timm does not support ViTs with register tokens or no_embed_class=True")
    if getattr(vit, "dynamic_img_size", False):
        raise ValueError("from_timm does not support ViTs with dynamic_img_size=True")
    keys = list(vit.state_dict())
    mapping: dict[str, Any] = {}
    patch = _one(model, PatchEmbed, "P")
    mapping.update(_same("patch_embed.proj", f"{patch}.proj", keys))
    mapping["cls_token"] = "cls_token"
    pos = _one(model, PosEmbed, "POS")
    mapping["pos_embed"] = (f"{pos}.cls_pos", f"{pos}.pos_embed")  # split below
    encs = _prefixes(model, EncoderBlock)
    if len(encs) != len(vit.blocks):
        raise ValueError(f"the spec has {len(encs)} ENC blocks, the timm ViT {len(vit.blocks)}")
    for i, enc in enumerate(encs):
        mapping.update(_same(f"blocks.{i}", enc, keys))
    head = _one(model, LinearHead, "LIN")
    mapping.update(_same("norm", f"{head}.norm", keys))
    mapping.update(_same("head", f"{head}.fc", keys))
    return mapping


def _convmixer_mapping(cm: nn.Module, model: SpecNet) -> dict[str, Any]:
    keys = list(cm.state_dict())
    mapping: dict[str, Any] = {}
    patch = _one(model, PatchEmbed, "P")
    mapping.update(_same("stem.0", f"{patch}.proj", keys))
    mapping.update(_same("stem.2", f"{patch}.norm", keys))
    layers = _prefixes(model, ConvMixerLayer)
    if len(layers) != len(cm.blocks):
        raise ValueError(f"the spec has {len(layers)} CM blocks, the timm ConvMixer {len(cm.blocks)}")
    for i, layer in enumerate(layers):
        for src, dst in (("0.fn.0", "conv_dw"), ("0.fn.2", "norm1"), ("1", "conv_pw"), ("3", "norm2")):
            mapping.update(_same(f"blocks.{i}.{src}", f"{layer}.{dst}", keys))
    head = _one(model, LinearHead, "LIN")
    mapping.update(_same("head", f"{head}.fc", keys))
    return mapping


def _load(model: SpecNet, source: dict[str, torch.Tensor], mapping: dict[str, Any]) -> None:
    """Copy ``source`` into ``model`` by ``mapping`` (timm key -> our key, or a pair for ViT's pos_embed)."""
    target = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    unmapped_src = sorted(k for k in source if k not in mapping)
    for src, dst in mapping.items():
        if src not in source:
            raise ValueError(f"the timm model has no {src!r}; the spec expects it")
        value = source[src]
        if isinstance(dst, tuple):  # ViT pos_embed (1, n + gh * gw, C) -> class positions + (1, C, gh, gw)
            cls_dst, grid_dst = dst
            if cls_dst not in target:
                raise ValueError(f"the timm ViT's pos_embed has class-token positions; write POS(cls=true) "
                                 f"(the spec's POS has no {cls_dst!r})")
            n = target[cls_dst].shape[1]
            _, C, gh, gw = target[grid_dst].shape
            if value.shape != (1, n + gh * gw, C):
                raise ValueError(f"pos_embed: timm has {tuple(value.shape)}, the spec needs (1, {n + gh * gw}, {C}) "
                                 f"({n} class + {gh}x{gw} image positions)")
            state[cls_dst] = value[:, :n]
            state[grid_dst] = value[:, n:].transpose(1, 2).reshape(1, C, gh, gw)
        elif dst not in target:
            raise ValueError(f"the timm model's {src!r} has no place in the spec (no {dst!r}); "
                             f"the spec's keys are {sorted(target)[:8]}...")
        else:
            state[dst] = value
    unmapped_dst = sorted(k for k in target if k not in state)
    if unmapped_src or unmapped_dst:
        raise ValueError(f"the spec and the timm model differ: timm entries with no place in the spec: "
                         f"{unmapped_src or 'none'}; spec entries timm does not fill: {unmapped_dst or 'none'}")
    bad = [f"{k}: spec {tuple(target[k].shape)} vs timm {tuple(v.shape)}"
           for k, v in state.items() if target[k].shape != v.shape]
    if bad:
        raise ValueError("shapes differ between the spec and the timm model: " + "; ".join(bad))
    model.load_state_dict(state, strict=True)


__all__ = ["from_timm"]
