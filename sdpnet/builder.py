"""Plan -> ``SpecNet``: the modules of a resolved spec, with timm's model API.

The network carries the image tokens (B, C, H, W) and the class/register tokens (B, T, C) apart. Each layer is
called by the kind its plan gives (:data:`sdpnet.registry.KINDS`): a ``layer`` sees the image only
(``forward(x) -> x``), a ``tokens`` block both (``forward(x, t) -> (x, t)``), a ``sequence`` block the joined
sequence ``[t; flatten(x)]`` (``forward(s) -> s``). Kinds are fixed when the model is built, so the forward loop
has only static branches and ``torch.compile(model, fullgraph=True)`` traces it without graph breaks. Every
shape fact (widths, grids, strides) comes from the plan; modules report none.

Two execution details make the forward cheaper without changing its result: a run of consecutive sequence
blocks joins the tokens and the image into one sequence once, not per block; and when the pool does not read
the image (its schema's ``reads_image``) and the body ends with a sequence block that takes ``num_queries``,
``forward`` computes that last block for the class tokens alone (``forward_features`` still returns its full
output).
"""
from __future__ import annotations

import inspect
import sys
from typing import Any, Callable

import torch
from torch import nn

import sdpnet.blocks  # noqa: F401  (binds the built-in block names to their modules)
from sdpnet.registry import check_factory, get_block, get_schema
from sdpnet.spec.plan import LayerPlan, Plan

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_block(layer: LayerPlan) -> nn.Module:
    """The module of ``layer``: its factory called with the plan's keywords and ``in_dim``.

    A factory whose signature does not fit its schema is a ``ValueError`` naming the block.
    """
    factory: Callable[..., nn.Module] = get_block(layer.name, layer.role)
    check_factory(get_schema(layer.name), layer.role, factory)
    return factory(**layer.kwargs, in_dim=layer.in_dim)


def join_tokens(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Image (B, C, H, W) and tokens (B, T, C) -> the sequence ``[tokens, image]`` (B, T + HW, C)."""
    return torch.cat([t, x.flatten(2).transpose(1, 2)], dim=1)


def split_tokens(s: torch.Tensor, num_tokens: int, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The sequence ``[tokens, image]`` (B, T + HW, C) -> image (B, C, H, W) and tokens (B, T, C)."""
    B, _, C = s.shape
    H, W = grid
    t, x = s.split([num_tokens, H * W], dim=1)
    return x.transpose(1, 2).reshape(B, C, H, W), t


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

        stem: list[nn.Module] = []
        body: list[nn.Module] = []
        head: list[nn.Module] = []
        for layer in plan.layers:
            {"stem": stem, "body": body, "head": head}[layer.role].append(make_block(layer))
        body_layers = [layer for layer in plan.layers if layer.role == "body"]
        pool_layer, classifier = (layer for layer in plan.layers if layer.role == "head")
        if not hasattr(head[-1], "reset_classifier"):
            raise ValueError(f"classifier {classifier.name}: its module {type(head[-1]).__name__} needs a "
                             f"reset_classifier(num_classes) method and its final layer named fc")

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
        self._kinds = tuple(layer.kind for layer in body_layers)
        self._runs = sequence_runs(self._kinds)
        self.pool = head[0]
        # the pool reads only the class tokens: forward computes the last block for them alone
        self._class_tokens_only = (not get_schema(pool_layer.name).reads_image and bool(body)
                                   and self._kinds[-1] == "sequence"
                                   and "num_queries" in inspect.signature(body[-1].forward).parameters)
        self.head = nn.Sequential(*head[1:])
        self.stride = plan.stride
        self.num_features = plan.num_features
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
        """Initialise by the spec's ``init`` hyperparameter.

        ``timm``: truncated normal (std 0.02) for the tokens and Linear weights, zero Linear biases.
        ``cct`` (Compact-Transformers): the same, but zero class tokens and Kaiming-normal weights for the
        stem's convolutions (CCT's Tokenizer). Position tables are initialised by ``POS`` itself, which reads
        the same hyperparameter; LayerNorms keep PyTorch's weight 1, bias 0.
        """
        from sdpnet.spec.files import DEFAULTS

        cct = self.plan.hparams.get("init", DEFAULTS["init"]) == "cct"
        for p, zero in ((self.cls_token, cct), (self.reg_token, False)):
            if p is not None and zero:
                nn.init.zeros_(p)
            elif p is not None:
                nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if cct:
            for m in self.stem.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight)

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
            kind = self._kinds[start]
            if kind == "layer":
                x = self.body[start](x)
                continue
            if not self.num_cls + self.num_reg:  # no tokens: an empty set at the current width
                t = x.new_zeros(x.shape[0], 0, x.shape[1])
            if kind == "tokens":
                x, t = self.body[start](x, t)
                continue
            last = class_tokens_only and stop == len(self.body)
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


def sequence_runs(kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    """The body (its layers' kinds) split into runs ``(start, stop)``: maximal runs of ``sequence`` blocks,
    other blocks alone."""
    runs: list[tuple[int, int]] = []
    for i, kind in enumerate(kinds):
        if kind == "sequence" and runs and kinds[runs[-1][0]] == "sequence":
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


__all__ = ["SpecNet", "build", "count_params", "join_tokens", "make_block", "split_tokens"]

if "timm" in sys.modules:  # timm is in use: register the preset specs with it (never import timm here: ~2 s)
    import sdpnet.timm_models  # noqa: E402,F401
