"""Plan -> ``SpecNet``: the modules of a resolved spec, with timm's model API.

The network carries the image tokens (B, C, H, W) and the class/register tokens (B, T, C) apart. Image blocks
(``forward(x) -> x``) never see the tokens; token-aware blocks (class attribute ``uses_tokens = True``,
``forward(x, t) -> (x, t)``) do: ``ENC`` attends over both, ``DOWN`` projects both. The forward loop branches only
on class attributes, so ``torch.compile(model, fullgraph=True)`` traces it without graph breaks.

Two execution details make the forward cheaper without changing its result: a run of two or more consecutive
sequence-form blocks (``ENC``) joins the tokens and the image into one sequence once, not per block; and when
the pool reads only the class tokens (``TOKS``) and the body ends with such a block, ``forward`` computes that
last block for the class tokens alone (``forward_features`` still returns its full output).
"""
from __future__ import annotations

import inspect
import sys
from typing import Any, Callable

import torch
from torch import nn

import sdpnet.blocks  # noqa: F401  (binds the built-in block names to their modules)
from sdpnet.blocks.attention import join_tokens, split_tokens
from sdpnet.registry import get_block
from sdpnet.spec.plan import LayerPlan, Plan

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Context keys a block receives when its constructor names them (``in_dim`` always).
CONTEXT_KEYS = ("num_classes", "grid", "num_tokens", "num_cls")


def make_block(layer: LayerPlan, context: dict[str, Any]) -> nn.Module:
    """The module of ``layer``: its factory called with its kwargs, ``in_dim`` and the context keys it names."""
    factory: Callable[..., nn.Module] = get_block(layer.name, layer.role)
    accepted = inspect.signature(factory).parameters
    extra = {k: v for k, v in context.items() if k in accepted}
    return factory(**layer.kwargs, in_dim=layer.in_dim, **extra)


class SpecNet(nn.Module):
    """A network built from a :class:`~sdpnet.spec.plan.Plan`: ``stem`` -> tokens -> ``body`` -> ``pool`` -> ``head``.

    Class tokens (``cls_token``, (1, num_cls, dim)) and register tokens (``reg_token``, (1, num_reg, dim)) are
    created right after the stem, initialised with a truncated normal (std 0.02: distinct class tokens need
    distinct starts; timm's 1e-6 would leave five class tokens near-identical), concatenated class-first into
    ``t``. Register tokens are dropped before the head. Linear layers get timm ViT's init (truncated normal
    std 0.02, zero bias); convolutions keep PyTorch's default.

    Args:
        plan: the resolved network.
        model_spec: the spec it came from, kept for saving with runs.
    """

    def __init__(self, plan: Plan, model_spec: Any = None) -> None:
        super().__init__()
        self.plan = plan
        self.model_spec = model_spec
        self.num_cls = plan.num_cls
        self.num_reg = plan.num_reg
        self.embed_dim = plan.dim
        self.num_classes = plan.num_classes

        context: dict[str, Any] = {"num_classes": plan.num_classes, "num_tokens": plan.num_cls + plan.num_reg,
                                   "num_cls": plan.num_cls}
        stem: list[nn.Module] = []
        body: list[nn.Module] = []
        head: list[nn.Module] = []
        stride = 1
        for layer in plan.layers:
            context["grid"] = (plan.img_size // stride, plan.img_size // stride)
            module = make_block(layer, context)
            if layer.role != "head" and module.out_dim != layer.out_dim:
                raise ValueError(f"block {layer.name} at column {layer.col}: the plan expects width "
                                 f"{layer.out_dim}, the module gives {module.out_dim}; give the block's schema a "
                                 f"`d` keyword (target `dim`) if it changes the width")
            stride *= getattr(module, "stride", 1)
            {"stem": stem, "body": body, "head": head}[layer.role].append(module)
        bad = [type(m).__name__ for m in stem if getattr(m, "uses_tokens", False)]
        if bad:
            raise ValueError(f"stem blocks cannot use tokens (tokens are created after the stem): {', '.join(bad)}")
        if len(head) < 2 or not hasattr(head[-1], "reset_classifier"):
            raise ValueError("the plan's head must be a pooling block then a classifier (with reset_classifier)")

        self.stem = nn.Sequential(*stem)
        if self.num_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, self.num_cls, plan.dim))
        else:
            self.register_parameter("cls_token", None)
        if self.num_reg:
            self.reg_token = nn.Parameter(torch.zeros(1, self.num_reg, plan.dim))
        else:
            self.register_parameter("reg_token", None)
        self.body = nn.ModuleList(body)
        self._runs = sequence_runs(body)
        self.pool = head[0]
        # the pool reads only the class tokens: forward computes the last block for them alone
        self._class_tokens_only = not self.pool.reads_image and bool(body) and getattr(body[-1], "sequence_form", False)
        self.head = nn.Sequential(*head[1:])
        self.stride = stride
        self.num_features = self.pool.out_dim
        self.init_weights()
        self.pretrained_cfg = self.default_cfg = self._cfg()  # timm's current and older names

    def _cfg(self) -> dict[str, Any]:
        first_conv = next((n for n, m in self.stem.named_modules() if isinstance(m, nn.Conv2d)), None)
        return {
            "input_size": (self.plan.in_chans, self.plan.img_size, self.plan.img_size),
            "num_classes": self.num_classes,
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "interpolation": "bicubic",
            "crop_pct": 0.9,
            "first_conv": f"stem.{first_conv}" if first_conv else None,
            "classifier": f"head.{len(self.head) - 1}.fc",
        }

    def init_weights(self) -> None:
        """Truncated normal (std 0.02) for tokens and Linear weights, zero Linear biases."""
        for p in (self.cls_token, self.reg_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def no_weight_decay(self) -> set[str]:
        """Names of parameters to exclude from weight decay: tokens and position tables."""
        names = {n for n in ("cls_token", "reg_token") if getattr(self, n) is not None}
        for prefix, m in self.named_modules():
            names.update(f"{prefix}.{p}" for p in getattr(m, "no_weight_decay_params", ()))
        return names

    def _tokens(self, x: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        parts = [p.expand(B, -1, -1) for p in (self.cls_token, self.reg_token) if p is not None]
        return torch.cat(parts, dim=1) if parts else x.new_zeros(B, 0, x.shape[1])  # (B, T, C)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image (B, 3, H, W) -> (image tokens (B, C, H/s, W/s), class+register tokens (B, T, C))."""
        return self._features(x)

    def _features(self, x: torch.Tensor, class_tokens_only: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_features`; ``class_tokens_only``: the last block (sequence form) updates only the
        class tokens, and the image returned is its input (for pools that do not read the image)."""
        H, W = x.shape[-2:]
        if H % self.stride or W % self.stride:
            raise ValueError(f"input {H}x{W} is not divisible by the model's stride {self.stride}; "
                             f"use a multiple of {self.stride}")
        x = self.stem(x)
        t = self._tokens(x)
        for start, stop in self._runs:
            last = class_tokens_only and stop == len(self.body)
            if stop - start == 1 and not last:
                block = self.body[start]
                x, t = block(x, t) if getattr(block, "uses_tokens", False) else (block(x), t)
                continue
            s = join_tokens(x, t)
            for block in self.body[start:stop - 1]:
                s = block(s)
            if last:
                return x, self.body[stop - 1](s, num_queries=self.num_cls)
            x, t = split_tokens(self.body[stop - 1](s), t.shape[1], x.shape[-2:])
        return x, t

    def forward_head(self, features: tuple[torch.Tensor, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Features from :meth:`forward_features` -> logits (or the pooled (B, num_features) with ``pre_logits``)."""
        x, t = features
        f = self.pool(x, t[:, : self.num_cls])  # register tokens dropped
        return f if pre_logits else self.head(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self._features(x, self._class_tokens_only))

    def get_classifier(self) -> nn.Module:
        """The final classifier layer (``fc`` of the last head block)."""
        return self.head[-1].fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier's last layer for ``num_classes`` (0: output pooled/hidden features)."""
        if global_pool is not None:
            raise ValueError(f"global_pool={global_pool!r}: the pooling is part of the spec; change the spec's head")
        self.head[-1].reset_classifier(num_classes)
        self.num_classes = num_classes
        self.pretrained_cfg = self.default_cfg = self._cfg()


def sequence_runs(body: list[nn.Module]) -> list[tuple[int, int]]:
    """``body`` split into runs ``(start, stop)``: maximal runs of sequence-form blocks, other blocks alone."""
    runs: list[tuple[int, int]] = []
    for i, block in enumerate(body):
        if getattr(block, "sequence_form", False) and runs and getattr(body[runs[-1][0]], "sequence_form", False):
            runs[-1] = (runs[-1][0], i + 1)
        else:
            runs.append((i, i + 1))
    return runs


def build(spec: Any, **overrides: Any) -> SpecNet:
    """Build a model from a spec file path, a spec string, a ``Spec``/``ModelSpec`` or a resolved ``Plan``.

    ``overrides`` replace the spec's hyperparameters (``dim=96``, ``num_classes=10``).
    """
    if isinstance(spec, Plan):
        if overrides:
            raise ValueError(f"a resolved Plan takes no overrides (got {sorted(overrides)}); resolve with them")
        return SpecNet(spec)
    from sdpnet.spec import load_spec, resolve

    model_spec = load_spec(spec, **overrides)
    return SpecNet(resolve(model_spec), model_spec)


def count_params(module: nn.Module) -> int:
    """Number of parameters of ``module``."""
    return sum(p.numel() for p in module.parameters())


__all__ = ["CONTEXT_KEYS", "SpecNet", "build", "count_params", "make_block"]

if "timm" in sys.modules:  # timm is in use: register the preset specs with it (never import timm here: ~2 s)
    import sdpnet.timm_models  # noqa: E402,F401
