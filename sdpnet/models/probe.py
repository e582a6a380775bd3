"""The build-time check of every layer's module against its plan: the shapes the plan promises are the shapes the
module makes.

Each module runs once on its planned input, on the meta device (shapes only: the module's parameters and
buffers are swapped for meta tensors with :func:`torch.func.functional_call`, so nothing is allocated or
computed), and its output is compared with the plan by the layer's kind: the kind of output (a tensor, or the
``(image, tokens)`` pair), the width, the grid and the token count. A module that cannot run on the meta
device (it reads a value, or keeps a tensor outside its parameters and buffers) runs once on a batch of one
on the device of its parameters instead. Layers with the same module type, plan and input are probed once.

A mismatch is a :class:`~sdpnet.spec.SpecError` naming the block, pointing at it in the spec, giving the
planned and the actual shape, and the schema field that would declare what the module does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import nn
from torch.func import functional_call

from sdpnet.registry import get_schema
from sdpnet.spec.errors import SpecError
from sdpnet.spec.plan import LayerPlan, Plan

BATCH = 2   # the probe's batch: 2, so that a module that drops or mixes up the batch dimension shows it


@dataclass(frozen=True)
class Expected:
    """What a layer must return: ``image`` (B, C, H, W), ``pair`` ((B, C, H, W), (B, T, C)), ``sequence``
    (B, T + HW, C) or ``features`` (B, C); ``width`` None: not checked (a classifier with ``num_classes=0``)."""

    form: str
    width: int | None
    grid: tuple[int, int] = (0, 0)
    tokens: int = 0
    rounded: tuple[int, int] = (0, 0)   # the grid rounded up: a strided layer may round as its conv or pool does

    def grid_ok(self, grid: tuple[int, ...]) -> bool:
        return len(grid) == 2 and all(lo <= g <= hi for g, lo, hi in zip(grid, self.grid, self.rounded))


def _inputs(layer: LayerPlan, num_tokens: int, num_cls: int, batch: int, device: torch.device,
            dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """The planned input of ``layer``, as the network hands it over (see :class:`~sdpnet.models.builder.SpecNet`)."""
    B, C, (H, W) = batch, layer.in_dim, layer.grid
    kw = dict(device=device, dtype=dtype)
    if layer.kind == "layer" and layer.role != "head":
        return (torch.zeros(B, C, H, W, **kw),)
    if layer.kind == "tokens":
        return torch.zeros(B, C, H, W, **kw), torch.zeros(B, num_tokens, C, **kw)
    if layer.kind == "sequence":
        return (torch.zeros(B, num_tokens + H * W, C, **kw),)
    if layer.kind == "pool":
        return torch.zeros(B, C, H, W, **kw), torch.zeros(B, num_cls, C, **kw)
    return (torch.zeros(B, C, **kw),)   # head layers after the pool: pooled features


def _expected(layer: LayerPlan, grid_out: tuple[int, int], num_tokens: int) -> Expected:
    if layer.role == "head":
        width = None if layer.kind == "classifier" and layer.out_dim == 0 else layer.out_dim
        return Expected("features", width)
    form = {"layer": "image", "tokens": "pair", "sequence": "sequence"}[layer.kind]
    up = tuple(max(o, -(-g // layer.stride)) for g, o in zip(layer.grid, grid_out))
    return Expected(form, layer.out_dim, grid_out, num_tokens, up)


def _shape_text(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return f"a tensor {tuple(out.shape)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of " + ", ".join(_shape_text(o) for o in out)
    return f"a {type(out).__name__}"


def _planned_text(e: Expected, batch: int) -> str:
    w = "C" if e.width is None else e.width
    H, W = e.grid
    if e.form == "image":
        return f"a tensor {(batch, w, H, W)}"
    if e.form == "pair":
        return f"a tuple of a tensor {(batch, w, H, W)}, a tensor {(batch, e.tokens, w)}"
    if e.form == "sequence":
        return f"a tensor {(batch, e.tokens + H * W, w)}"
    return f"a tensor {(batch, w)}"


def _mismatch(out: Any, e: Expected, batch: int) -> str | None:
    """Which schema field would declare what the module does, or None when ``out`` is as planned."""
    is_t = isinstance(out, torch.Tensor)
    if e.form == "pair":
        if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)):
            return "kind"
        x, t = out
        if x.ndim != 4 or t.ndim != 3 or x.shape[0] != batch or t.shape[0] != batch:
            return "kind"
        if t.shape[1] != e.tokens:
            return "tokens"
        if x.shape[1] != e.width or t.shape[2] != e.width:
            return "width"
        return None if e.grid_ok(tuple(x.shape[2:])) else "stride"
    if not is_t:
        return "kind"
    if e.form == "image":
        if out.ndim != 4 or out.shape[0] != batch:
            return "kind"
        if out.shape[1] != e.width:
            return "width"
        return None if e.grid_ok(tuple(out.shape[2:])) else "stride"
    if e.form == "sequence":
        if out.ndim != 3 or out.shape[0] != batch:
            return "kind"
        if out.shape[2] != e.width:
            return "width"
        sizes = {e.tokens + h * w for h in range(e.grid[0], e.rounded[0] + 1)
                 for w in range(e.grid[1], e.rounded[1] + 1)}
        return None if out.shape[1] in sizes else "tokens"
    if out.ndim != 2 or out.shape[0] != batch:
        return "kind"
    return "width" if e.width is not None and out.shape[1] != e.width else None


def _hint(field: str, layer: LayerPlan) -> str:
    schema = get_schema(layer.name)
    if field == "width":
        keys = [p.key for p in schema.params_for(layer.role) if p.type is int]
        key = keys[0] if keys else "d"
        return (f"if the block changes the width, declare it in its schema: width=Width(key=\"{key}\") (the "
                f"keyword that sets it) or width=Width(factor=...); else make the module return the {layer.out_dim} channels "
                f"the plan gives it")
    if field == "stride":
        return ("if the block changes the grid, declare it in its schema: stride=2, stride=\"<keyword holding "
                "it>\" or stride=Derived(...); else keep the module's grid (padding, stride 1)")
    if field == "tokens":
        return ("a token-aware block returns every token it is given (class and register tokens, then the image "
                "tokens); if it sees the image only, declare kind=\"layer\" in its schema")
    kinds = ("kind=\"layer\": forward(x) -> x (B, C, H, W); kind=\"tokens\": forward(x, t) -> (x, t); "
             "kind=\"sequence\": forward(s) -> s (B, T + HW, C); in the head kind=\"pool\": forward(x, t) -> (B, C) "
             "and kind=\"classifier\": forward(f) -> (B, num_classes)")
    return f"declare what its forward takes and returns with the schema's kind: {kinds}"


def _run(module: nn.Module, args: tuple[torch.Tensor, ...]) -> Any:
    """``module(*args)`` on the meta device: parameters and buffers swapped for meta tensors, nothing computed."""
    meta = {name: torch.empty_like(p, device="meta")
            for name, p in [*module.named_parameters(), *module.named_buffers()]}
    return functional_call(module, meta, args, tie_weights=False, strict=False)


def _device(module: nn.Module) -> torch.device:
    p = next(iter([*module.parameters(), *module.buffers()]), None)
    return torch.device("cpu") if p is None or p.device.type == "meta" else p.device


def probe_module(module: nn.Module, layer: LayerPlan, grid_out: tuple[int, int], plan: Plan) -> str | None:
    """Run ``module`` on the planned input of ``layer`` and compare its output with the plan; returns None when
    it ran on the meta device, else why not (it then ran on a batch of one). Raises :class:`SpecError` on a
    mismatch."""
    num_tokens, e = plan.num_cls + plan.num_reg, _expected(layer, grid_out, plan.num_cls + plan.num_reg)
    modes = [(m, m.training) for m in module.modules()]
    module.eval()   # no dropout or drop-path draws; a probe changes no state that matters (meta buffers)
    batch, fallback = BATCH, None
    try:
        with torch.no_grad():
            try:
                out = _run(module, _inputs(layer, num_tokens, plan.num_cls, batch, torch.device("meta"),
                                           torch.get_default_dtype()))
            except Exception as err:   # cannot run on meta (reads a value, keeps a plain tensor): a batch of one
                batch, dev = 1, _device(module)
                fallback = f"not on the meta device ({type(err).__name__}: {str(err).strip()[:120]}); ran on {dev}"
                try:
                    out = module(*_inputs(layer, num_tokens, plan.num_cls, batch, dev, torch.get_default_dtype()))
                except Exception as err:
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise _error(layer, plan.text, f"its module {type(module).__name__} fails on its planned input "
                                 f"({_planned_input(layer, plan, batch)}): {first[:300]}",
                                 "make the module take the input its kind hands it, or declare the width, stride "
                                 "or kind it needs in its schema") from None
    finally:
        for m, mode in modes:
            m.training = mode
    field = _mismatch(out, e, batch)
    if field is None:
        return fallback
    raise _error(layer, plan.text, f"its module {type(module).__name__} returns {_shape_text(out)}, but the plan "
                 f"gives {_planned_text(e, batch)} (from {_planned_input(layer, plan, batch)}: {field} differs)",
                 _hint(field, layer))


def _planned_input(layer: LayerPlan, plan: Plan, batch: int) -> str:
    args = _inputs(layer, plan.num_cls + plan.num_reg, plan.num_cls, batch, torch.device("meta"), torch.float32)
    return ", ".join(str(tuple(a.shape)) for a in args)


def _error(layer: LayerPlan, spec_text: str | None, message: str, hint: str) -> SpecError:
    where = f"{layer.name} ({layer.role} {layer.kind})"
    return SpecError(f"{where}: {message}", spec_text, layer.col if spec_text is not None else None,
                     span=len(layer.name), hint=hint)


def signature(layer: LayerPlan, module: nn.Module, grid_out: tuple[int, int]) -> tuple:
    """What decides a probe's outcome: the module's type, the layer's plan (its drop-path rate aside) and shapes."""
    return (type(module), layer.name, layer.role, layer.kind, layer.in_dim, layer.out_dim, layer.grid, grid_out,
            tuple(sorted((k, repr(v)) for k, v in layer.kwargs.items() if k != "drop_path")))


def probe_layers(plan: Plan, modules: Sequence[nn.Module]) -> dict[int, str]:
    """Probe every layer of ``plan`` (``modules`` in the plan's order); returns ``{layer index: why}`` for the
    layers probed on a real batch of one instead of the meta device. Raises :class:`SpecError` at the first
    module that disagrees with its plan."""
    layers = plan.layers
    grids = [layer.grid for layer in layers]
    seen: dict[Any, str | None] = {}
    skipped: dict[int, str] = {}
    for i, (layer, module) in enumerate(zip(layers, modules)):
        grid_out = grids[i + 1] if i + 1 < len(layers) else layer.grid
        key = signature(layer, module, grid_out)
        if key not in seen:
            seen[key] = probe_module(module, layer, grid_out, plan)
        if seen[key] is not None:
            skipped[i] = seen[key]
    return skipped
