"""Activations by name, and KeLU."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


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


_ACTS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "kelu": KeLU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "none": nn.Identity,
}


def get_act(name: str) -> nn.Module:
    """A new activation module for ``name`` (gelu, relu, kelu, silu, tanh, none)."""
    try:
        return _ACTS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(_ACTS)}") from None
