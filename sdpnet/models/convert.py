"""Weights of a timm model copied into the equivalent sdpnet build, by the structure of the computation.

``from_timm(timm_model, spec)`` builds ``spec`` and fills every state entry (parameters and buffers) from
``timm_model``; the logits then match timm's (tests/test_convert.py, tests/test_families.py: within 1e-4 for
ViT, DeiT III, ViT with registers, ConvMixer, ConvNeXt, PoolFormer, ConvFormer, CAFormer and MLP-Mixer).

There is no table per model. Both models run one forward pass (eval mode, the spec's ``img_size``) while a
``TorchFunctionMode`` records the order in which each state entry is first read. Two models that compute the
same function with the same layers read their weights in the same order (a conv's weight then its bias, a
norm's, the next layer's...), whatever the modules are called, so the two sequences are matched in order:
each timm tensor takes the first not-yet-matched tensor of ours, among the next few, whose shape fits. So a new
spec of a known family (another depth, width, kernel) converts without new code, and so does a new timm model
that our blocks compute. A shape fits when it is

- the same;
- the same up to trailing size-1 dimensions (a 1x1 convolution's (out, in, 1, 1) and a Linear's (out, in);
  a per-channel scale (C,) and (C, 1, 1));
- a token-sequence table (1, H * W, C) for our image table (1, C, H, W) (ViT's position embedding);
- a table of prefix and image positions (1, n + H * W, C) for two of ours, (1, n, C) and (1, C, H, W), the
  prefix rows first (ViT's position embedding with class-token positions, ``POS(cls=true)``).

The look-ahead lets two models order independent reads differently (timm's DeiT reads the class token before
the position table, ``P16+CLS+POS`` the other way round). Entries never read in the forward pass (BatchNorm's
``num_batches_tracked``) follow the module the rest of their module matched. The copy is strict: a timm tensor
with no counterpart, an entry of ours left unfilled, or a model that fails at the spec's resolution is a
``ValueError`` naming the keys and shapes, so a spec that only resembles the timm model is rejected instead of
half-loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from sdpnet.models.builder import SpecNet, build

LOOKAHEAD = 8  # how many of our next unmatched tensors a timm tensor may skip to find its counterpart


@dataclass
class _Entry:
    key: str
    value: torch.Tensor


class _ReadOrder(TorchFunctionMode):
    """Records the state entries of a module in the order torch functions first read them."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names = names
        self.order: list[str] = []
        self._seen: set[str] = set()

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        for leaf in tree_leaves((args, kwargs)):
            key = self.names.get(id(leaf)) if isinstance(leaf, torch.Tensor) else None
            if key is not None and key not in self._seen:
                self._seen.add(key)
                self.order.append(key)
        return func(*args, **kwargs)


def read_order(module: nn.Module, forward: Callable[[torch.Tensor], Any], x: torch.Tensor) -> list[str]:
    """The state-dict keys of ``module`` in the order ``forward(x)`` first reads them (eval mode, no grad)."""
    keys = set(module.state_dict())
    named = list(module.named_parameters(remove_duplicate=False)) + list(module.named_buffers(remove_duplicate=False))
    names = {id(t): k for k, t in named if k in keys}
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), _ReadOrder(names) as mode:
            forward(x)
    finally:
        module.train(was_training)
    return mode.order


def from_timm(timm_model: nn.Module, spec: Any, **overrides: Any) -> SpecNet:
    """Build ``spec`` (file, string or ModelSpec; ``overrides`` as in :func:`sdpnet.build`) with ``timm_model``'s
    weights.

    Raises ``ValueError`` when the spec does not compute with exactly the timm model's tensors.
    """
    model = build(spec, **overrides)
    load_from(model, timm_model)
    return model


def load_from(model: SpecNet, reference: nn.Module) -> None:
    """Fill every state entry of ``model`` from ``reference`` (a model computing the same function; see above)."""
    plan = model.plan
    x = torch.randn(1, plan.in_chans, plan.img_size, plan.img_size, generator=torch.Generator().manual_seed(0))
    try:
        src_order = read_order(reference, reference, x)
    except Exception as e:  # the reference's own error, reported with what it was given
        raise ValueError(f"the timm model does not run on a {tuple(x.shape)} input (the spec's in_chans and "
                         f"img_size {plan.img_size}): {e}; create it for that size (img_size=...) or set the "
                         f"spec's img_size") from None
    dst_order = read_order(model, lambda t: model.forward_head(model.forward_features(t)), x)
    source, target = reference.state_dict(), model.state_dict()
    state, pairs = _match([_Entry(k, source[k]) for k in src_order], [_Entry(k, target[k]) for k in dst_order],
                          len(source), len(target))
    _unread(source, target, src_order, dst_order, state, pairs)
    model.load_state_dict(state, strict=True)


def _fit(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor | None:
    """``src`` laid out as ``dst`` when one of the layout rules applies (module docstring), else None."""
    a, b = tuple(src.shape), tuple(dst.shape)
    if a == b:
        return src
    if _strip(a) == _strip(b) and src.numel() == dst.numel():
        return src.reshape(b)
    if len(a) == 3 and len(b) == 4 and a[0] == b[0] == 1 and a == (1, b[2] * b[3], b[1]):
        return src.transpose(1, 2).reshape(b)
    return None


def _strip(shape: tuple[int, ...]) -> tuple[int, ...]:
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def _split(src: torch.Tensor, window: list[_Entry]) -> tuple[tuple[_Entry, torch.Tensor], ...] | None:
    """(1, n + H*W, C) for a (1, n, C) prefix table and a (1, C, H, W) image table among ``window``, or None."""
    if src.ndim != 3 or src.shape[0] != 1:
        return None
    N, C = src.shape[1], src.shape[2]
    for image in window:
        s = tuple(image.value.shape)
        if len(s) == 4 and s[:2] == (1, C) and s[2] * s[3] < N:
            n = N - s[2] * s[3]
            prefix = next((e for e in window if tuple(e.value.shape) == (1, n, C)), None)
            if prefix is not None:
                return ((prefix, src[:, :n]), (image, src[:, n:].transpose(1, 2).reshape(s)))
    return None


def _shape(e: _Entry) -> str:
    return str(tuple(e.value.shape))


def _match(src: list[_Entry], dst: list[_Entry], n_src: int, n_dst: int) -> tuple[dict, dict[str, str]]:
    """Our state (key -> tensor) and the key pairs (ours -> timm's), matching the two read orders."""
    state: dict[str, torch.Tensor] = {}
    pairs: dict[str, str] = {}
    pending = list(dst)
    for i, s in enumerate(src):
        window = pending[:LOOKAHEAD]
        found = next(((d, v) for d in window if (v := _fit(s.value, d.value)) is not None), None)
        matched = ((found,) if found else None) or _split(s.value, window)
        if matched is None:
            ahead = ", ".join(f"{d.key} {_shape(d)}" for d in window[:4]) or "nothing (the spec has no more tensors)"
            hint = ""
            if s.value.ndim == 3 and any(d.value.ndim == 4 for d in window):
                hint = ("; a position table with rows for class tokens splits into POS(cls=true)'s class and "
                        "image positions")
            raise ValueError(f"the spec and the timm model differ: the timm model's {s.key} {_shape(s)} (its "
                             f"tensor {i + 1} of {len(src)} in the order the forward pass reads them) has no "
                             f"counterpart in the spec; the spec's next tensors are {ahead}{hint} (timm has "
                             f"{n_src} state entries, the spec {n_dst})")
        for d, v in matched:
            state[d.key] = v
            pairs[d.key] = s.key
            pending.remove(d)
    if pending:
        left = ", ".join(f"{d.key} {_shape(d)}" for d in pending[:6]) + (" ..." if len(pending) > 6 else "")
        raise ValueError(f"the spec and the timm model differ: {len(pending)} spec tensors the timm model does not "
                         f"fill: {left} (timm has {n_src} state entries, the spec {n_dst})")
    return state, pairs


def _unread(source: dict, target: dict, src_read: list[str], dst_read: list[str], state: dict,
            pairs: dict[str, str]) -> None:
    """Fill the entries the forward pass never reads (``num_batches_tracked``) by their module's match."""
    modules = {d.rpartition(".")[0]: s.rpartition(".")[0] for d, s in pairs.items()}
    src_left = sorted(set(source) - set(src_read))
    taken = set()
    for key in sorted(set(target) - set(dst_read)):
        owner, _, local = key.rpartition(".")
        src_key = f"{modules[owner]}.{local}" if owner in modules else None
        if src_key not in src_left or source[src_key].shape != target[key].shape:
            raise ValueError(f"the spec's {key} is never read in the forward pass and the timm model has no "
                             f"counterpart for it (its module matched {modules.get(owner, 'nothing')!r})")
        state[key] = source[src_key]
        taken.add(src_key)
    left = [k for k in src_left if k not in taken]
    if left:
        raise ValueError(f"the timm model's {', '.join(left[:6])} are never read in the forward pass and have no "
                         f"counterpart in the spec")


__all__ = ["from_timm", "load_from", "read_order"]
