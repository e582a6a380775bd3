"""What the timm-parity tests (test_families.py, test_families_conv.py, test_families_coatnet.py) share: timm's
model with random weights that expose a misplaced copy, timm's FLOPs as FlopCounterMode counts them, and the
logit comparison."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

timm = pytest.importorskip("timm")

BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


def random_timm_model(name: str, seed: int, **create_kwargs) -> nn.Module:
    """timm's ``name`` (``timm.create_model(name, **create_kwargs)``) in eval mode, with random weights of
    unit-variance scale drawn directly (timm's truncated-normal init of 20-40M weights costs seconds):

    - class/register tokens and position tables (``pos_embed``, ``cls_token``, ``reg_token``) N(0, 0.5^2);
    - matrices, kernels and relative position tables N(0, 1 / fan_in) (a table's fan-in: its heads);
    - biases N(0, 0.1^2); norm weights, LayerScale/ResScale and StarReLU scales 1 + N(0, 0.2^2) (their
      constant inits would hide a weight copied to the wrong place: LayerScale 1e-6 silences a whole block);
    - BatchNorm running means N(0, 0.1^2) and variances exp(N(0, 0.2^2)), so eval-mode BatchNorm is not the
      identity and a statistic copied to the wrong channel or layer changes the logits;
    - buffers computed from the config (rotary tables, position indices) recomputed by their module's
      ``init_non_persistent_buffers``.

    Any other buffer fails the test: it would hold garbage after ``to_empty``."""
    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False, **create_kwargs)
    ref = ref.to_empty(device="cpu").eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, p in ref.named_parameters():
            if key.endswith(("pos_embed", "cls_token", "reg_token")):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            elif p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
            elif key.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
        for key, b in ref.named_buffers():
            if key.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif key.endswith("running_var"):
                b.copy_(torch.exp(0.2 * torch.randn(b.shape, generator=g)))
            elif key.endswith("num_batches_tracked"):
                b.zero_()
    left = []
    for prefix, m in ref.named_modules():
        local = [k for k, _ in m.named_buffers(recurse=False) if not k.endswith(BN_STATS)]
        if local and hasattr(m, "init_non_persistent_buffers") and set(local) <= m._non_persistent_buffers_set:
            m.init_non_persistent_buffers()
        else:
            left += [f"{prefix}.{k}" for k in local]
    assert not left, f"{name} has buffers this helper does not fill: {left[:3]}; give them values here"
    return ref


def timm_flops(name: str) -> tuple[int, int]:
    """FlopCounterMode's count for timm's ``name`` at its default input size (meta device), with fused attention
    off (the explicit q @ k and attn @ v products, which the counter sees), and that size."""
    with torch.device("meta"):
        ref = timm.create_model(name, pretrained=False).eval()
    for m in ref.modules():
        if hasattr(m, "fused_attn"):
            m.fused_attn = False
    size = ref.pretrained_cfg["input_size"]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        ref(torch.zeros(1, *size, device="meta"))
    return counter.get_total_flops(), size[-1]


def assert_same_logits(ours: nn.Module, ref: nn.Module, res: int, min_spread: float = 0.1,
                       dtype: torch.dtype = torch.float32) -> None:
    """``ours`` and timm's ``ref`` (both in eval mode) give the same 1000 logits within 1e-4 on two random images
    of ``res`` px, and timm's logits spread by more than ``min_spread`` (so the comparison is not of two
    near-constant outputs). ``dtype``: both models and the images cast to it first (float64 for a model whose
    logits are so large that float32 rounding alone passes 1e-4)."""
    ours, ref = ours.to(dtype), ref.to(dtype)
    x = torch.randn(2, 3, res, res, generator=torch.Generator().manual_seed(2)).to(dtype)
    with torch.no_grad():
        got, want = ours(x), ref(x)
    assert got.shape == want.shape == (2, 1000)
    assert want.std() > min_spread, f"timm's logits spread only {want.std():.3f}"
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
