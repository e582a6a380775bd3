"""Per-layer output shapes, parameters and FLOPs of a spec's model (``python -m sdpnet summary``:
:mod:`sdpnet.tools.summary`).

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` on one forward of a (1, 3, res, res)
zero image: matrix multiplies, convolutions and attention (2 FLOPs per multiply-add; MACs = FLOPs / 2);
norms, activations and pooling are not counted, as in fvcore/timm tables. The command line builds the model
on the meta device (shapes only: nothing is allocated or computed, so a 100M-parameter spec costs
milliseconds); there attention runs as its two matrix products, and on a real CPU model
``scaled_dot_product_attention`` gets the same formula, so the count is what FlopCounterMode gives timm's
models with fused attention off (``tests/test_families.py``: equal for every zoo spec). The count is of the full network
(``forward_features`` then ``forward_head``), as published tables give it, not of ``forward``'s shortcut for a
final encoder read only through its class tokens. Encoder blocks inside a run of two or more show the joint
sequence ``[tokens, image]`` (B, T + HW, C) as their output.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from sdpnet.models.builder import SpecNet, count_params
from sdpnet.registry import get_schema
from sdpnet.spec.plan import LayerPlan


def _sdpa_flops(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, out_shape: Any = None,
                **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# CPU attention dispatches to an op FlopCounterMode does not know (torch 2.14): count it like the GPU kernels.
_CPU_SDPA = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_CUSTOM_FLOPS = {_CPU_SDPA: _sdpa_flops} if _CPU_SDPA is not None else {}


def _label(layer: LayerPlan) -> str:
    schema = get_schema(layer.name)
    arg = layer.kwargs.get(schema.arg) if schema and schema.arg else None
    return f"{layer.name}{arg if arg is not None else ''}"


def _shape(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return "x".join(str(s) for s in out.shape)
    return " + ".join(_shape(o) for o in out)


class _FullNetwork(nn.Module):
    """``forward_features`` then ``forward_head`` of ``net`` in one call, so FLOPs are attributed per layer."""

    def __init__(self, net: SpecNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_head(self.net.forward_features(x))


def summarize(model: SpecNet, res: int) -> dict[str, Any]:
    """Per-layer rows and totals of ``model`` for a (1, C, res, res) input: params, FLOPs, output shapes.

    The input is made on the model's device (the meta device counts without computing)."""
    named: list[tuple[str, str, nn.Module]] = []
    stem = [layer for layer in model.plan.layers if layer.role == "stem"]
    body = [layer for layer in model.plan.layers if layer.role == "body"]
    head = [layer for layer in model.plan.layers if layer.role == "head"]
    named += [(f"stem.{i}", _label(layer), m) for i, (layer, m) in enumerate(zip(stem, model.stem))]
    named += [(f"body.{i}", _label(layer), m) for i, (layer, m) in enumerate(zip(body, model.body))]
    named += [("pool", _label(head[0]), model.pool)]
    named += [(f"head.{i}", _label(layer), m) for i, (layer, m) in enumerate(zip(head[1:], model.head))]

    shapes: dict[str, str] = {}
    hooks = [m.register_forward_hook(lambda mod, args, out, name=name: shapes.__setitem__(name, _shape(out)))
             for name, _, m in named]
    device = next(model.parameters()).device
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_CUSTOM_FLOPS) as counter:
            _FullNetwork(model)(torch.zeros(1, model.plan.in_chans, res, res, device=device))
    finally:
        for h in hooks:
            h.remove()
    flops = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = f"{_FullNetwork.__name__}.net"

    rows = [{"layer": name, "block": label, "output": shapes[name], "params": count_params(m),
             "flops": flops.get(f"{root}.{name}", 0)} for name, label, m in named]
    num_tokens = model.num_cls + model.num_reg
    if num_tokens:
        label = "+".join(f"{n}{k}" for n, k in (("CLS", model.num_cls), ("REG", model.num_reg)) if k)
        params = sum(p.numel() for p in (model.cls_token, model.reg_token) if p is not None)
        rows.insert(len(stem), {"layer": "tokens", "block": label, "output": f"1x{num_tokens}x{model.embed_dim}",
                                "params": params, "flops": 0})
    total = counter.get_total_flops()
    return {"params": count_params(model), "flops": total, "macs": total // 2, "res": res, "layers": rows}


def format_table(summary: dict[str, Any]) -> str:
    """The summary as an aligned text table with totals."""
    head = ("layer", "block", "output", "params", "MFLOPs")
    lines = [(r["layer"], r["block"], r["output"], f"{r['params']:,}", f"{r['flops'] / 1e6:,.1f}")
             for r in summary["layers"]]
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]

    def fmt(row: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    rule = "-" * len(fmt(head))
    out = [fmt(head), rule, *(fmt(row) for row in lines), rule]
    out.append(f"params: {summary['params']:,}   FLOPs: {summary['flops'] / 1e9:.3f} G   "
               f"MACs: {summary['macs'] / 1e9:.3f} G   at {summary['res']}x{summary['res']}")
    return "\n".join(out)
