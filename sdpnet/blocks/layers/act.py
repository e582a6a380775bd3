"""Activations by name: the constructors of the ``act`` registry (``fn() -> nn.Module``; names and docs are
declared torch-free in :mod:`sdpnet.vocabulary`), with KeLU and MetaFormer's StarReLU and squared ReLU."""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from sdpnet.registry import get_component, register_act


class KeLU(nn.Module):
    """KeLU: a smooth ReLU, exactly ReLU outside [-a, a].

    ``KeLU(x) = 0`` for ``x < -a``, ``x`` for ``x > a``, else ``0.5 x (1 + x/a + sin(pi x/a)/pi)``.
    Value and first derivative are continuous at ``+-a``.

    Args:
        a: half-width of the smooth region (3.5 as in SdP-Net).
    """

    def __init__(self, a: float = 3.5) -> None:
        super().__init__()
        if a <= 0:
            raise ValueError(f"KeLU needs a > 0, got a={a}")
        self.a = float(a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = 0.5 * x * (1.0 + x / self.a + torch.sin(x * (math.pi / self.a)) / math.pi)
        return torch.where(x.abs() <= self.a, inner, F.relu(x))

    def extra_repr(self) -> str:
        return f"a={self.a}"


class GatedAct(nn.Module):
    """GLU-style gate: split the input in two along ``dim`` and return ``act(a) * b``.

    Args:
        act: the activation applied to the first half.
        dim: the dimension to split (1 for NCHW, -1 for tokens).
    """

    def __init__(self, act: nn.Module, dim: int) -> None:
        super().__init__()
        self.act = act
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=self.dim)
        return self.act(a) * b


class _StarReLUFunction(torch.autograd.Function):
    """``scale * relu(x) ** 2 + bias`` with a hand-written backward.

    Autograd of the plain expression runs 4 kernels forward (relu, pow, mul, add) and about 8 backward, and
    keeps both ``relu(x)`` and its square; here it is 3 forward and 5 backward, keeping ``relu(x)`` only (it
    is 0 where ``x <= 0``, so it carries ReLU's gradient mask too). On MetaFormer's wide hidden layers that is
    a few percent of a CPU training step.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        r = F.relu(x)
        ctx.save_for_backward(r, scale)
        return torch.addcmul(bias, r * scale, r)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r, scale = ctx.saved_tensors
        gr = grad * r
        grad_scale = (gr * r).sum().reshape(scale.shape)
        return gr.mul_(2 * scale), grad_scale, grad.sum().reshape(scale.shape)


class StarReLU(nn.Module):
    """StarReLU (MetaFormer baselines): ``scale * relu(x) ** 2 + bias`` with a learnable scalar scale and bias.

    The same function and parameters as timm's ``StarReLU`` (``scale``, ``bias``, each of shape (1,)), read in
    the same order (scale, then bias), so weights map one to one; the gradient is computed by hand
    (:class:`_StarReLUFunction`).

    Args:
        scale: initial scale (1, as MetaFormer).
        bias: initial bias (0).
    """

    def __init__(self, scale: float = 1.0, bias: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(scale)))
        self.bias = nn.Parameter(torch.full((1,), float(bias)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _StarReLUFunction.apply(x, self.scale, self.bias)


class SquaredReLU(nn.Module):
    """Squared ReLU, ``relu(x) ** 2`` (Primer; MetaFormer's MLP head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


# The built-in activations, bound to the names declared in sdpnet.vocabulary.ACTS: one line each.
_ACTS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "kelu": KeLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "none": nn.Identity,
    "starrelu": StarReLU,
    "sqrelu": SquaredReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
}
for _name, _factory in _ACTS.items():
    register_act(_name)(_factory)


def get_act(name: str) -> nn.Module:
    """A new activation module of the registered activation ``name`` (``python -m sdpnet blocks`` lists them)."""
    return get_component("act", name)()
