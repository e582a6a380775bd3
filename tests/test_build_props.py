"""The spec language's promise, tested on random specs: every spec that resolves also builds and runs.

Random trees (the strategy of tests/test_spec_props.py) at small widths are resolved; those that resolve are
built and run forward and backward at the largest multiple of their stride within 16 px; no exception of any
kind is allowed after resolution.
"""
from __future__ import annotations

import torch
from hypothesis import HealthCheck, assume, given, settings

from sdpnet import build
from sdpnet.spec import SpecError, load_spec, resolve
from tests.test_spec_props import specs

torch.set_num_threads(2)


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(specs())
def test_resolvable_specs_build_and_run(tree):
    """A random spec that resolves at dim 16 / 16 px builds, runs forward and backward, with finite logits."""
    try:
        plan = resolve(load_spec(str(tree), dim=16, img_size=16, num_classes=3, heads=2))
    except SpecError:
        assume(False)
        return
    assume(len(plan.layers) <= 16 and max(layer.out_dim for layer in plan.layers) <= 128)  # keep each example cheap
    model = build(plan)
    res = 16 // plan.stride * plan.stride  # the grid at img_size is >= 1 (resolution checks it)
    x = torch.randn(2, 3, res, res)
    y = model(x)
    assert y.shape == (2, 3) and torch.isfinite(y).all()
    y.sum().backward()
