"""A block whose module disagrees with its schema is refused when the model is built (sdpnet.models.probe), with the
block, its place in the spec, the planned and the actual shape, and the schema field that would declare it.

User blocks are registered in subprocesses, so they never join this process's registry (the docs' tables are
generated from it). Built-in blocks pass the probe in every other test: every model is probed when it is built.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sdpnet

ROOT = Path(__file__).resolve().parent.parent

BLOCKS = r'''
import torch
from torch import nn
from sdpnet import Param, register_block

@register_block("XWIDEN", roles=("body",), params=(Param("d", "dim", int, default=None),))
class Widen(nn.Module):   # the issue's block: makes d channels, but its schema says it keeps the width
    def __init__(self, in_dim, dim=None):
        super().__init__(); self.proj = nn.Conv2d(in_dim, dim or 2 * in_dim, 1)
    def forward(self, x): return self.proj(x)

@register_block("XSHRINK", roles=("body",))
class Shrink(nn.Module):   # halves the grid without declaring stride=2
    def __init__(self, in_dim):
        super().__init__(); self.conv = nn.Conv2d(in_dim, in_dim, 3, stride=2, padding=1)
    def forward(self, x): return self.conv(x)

@register_block("XPAIR", roles=("body",))
class Pair(nn.Module):   # a layer (forward(x) -> x) that returns a tuple
    def __init__(self, in_dim):
        super().__init__(); self.norm = nn.BatchNorm2d(in_dim)
    def forward(self, x): return self.norm(x), x

@register_block("XDROPTOK", roles=("body",), kind="sequence", context=("num_tokens",))
class DropTokens(nn.Module):   # a sequence block that returns the image tokens only
    def __init__(self, in_dim, num_tokens):
        super().__init__(); self.num_tokens = num_tokens; self.fc = nn.Linear(in_dim, in_dim)
    def forward(self, s): return self.fc(s[:, self.num_tokens:])

@register_block("XTOK", roles=("body",), kind="tokens")
class TokensWider(nn.Module):   # a tokens block whose tokens come out wider than the image
    def __init__(self, in_dim):
        super().__init__(); self.fc = nn.Linear(in_dim, 2 * in_dim)
    def forward(self, x, t): return x, self.fc(t)

@register_block("XITEM", roles=("body",))
class ReadsValue(nn.Module):   # reads a value (.item()): cannot run on the meta device, but is right
    def __init__(self, in_dim):
        super().__init__(); self.scale = nn.Parameter(torch.ones(1))
    def forward(self, x): return x * float(self.scale.abs().max().item())
'''

DRIVER = r'''
import json, sys, torch
import sdpnet
exec(compile(sys.stdin.read(), "blocks", "exec"), {})
out = {}
for spec, kw in json.loads(sys.argv[1]):
    try:
        model = sdpnet.build(spec, **kw)
        y = model(torch.randn(2, 3, kw.get("img_size", 32), kw.get("img_size", 32)))
        out[spec] = {"ok": list(y.shape), "fallbacks": {str(k): v for k, v in model.probe_fallbacks.items()}}
    except ValueError as e:
        out[spec] = {"error": str(e), "type": type(e).__name__}
print(json.dumps(out))
'''

KW = {"dim": 32, "num_classes": 10, "img_size": 32}
CASES = {
    "width": "P4-DWC3-XWIDEN(d=96)-DWC3-GAP+LIN",
    "stride": "P4-DWC3-XSHRINK-DWC3-GAP+LIN",
    "kind": "P4-XPAIR-GAP+LIN",
    "tokens": "P4+CLS2-DWC3-XDROPTOK-TOKS+LIN",
    "token width": "P4+CLS1-XTOK-ENC(h=2)-TOKS+LIN",
    "fallback": "P4-DWC3-XITEM-GAP+LIN",
}


@pytest.fixture(scope="module")
def results() -> dict:
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps([[s, KW] for s in CASES.values()])],
                          input=BLOCKS, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _error(results: dict, case: str) -> str:
    r = results[CASES[case]]
    assert r.get("type") == "SpecError", r   # a ValueError: SpecError subclasses it
    return r["error"]


def test_undeclared_width_is_refused_at_build(results: dict) -> None:
    """The issue's snippet: refused by sdpnet.build, naming XWIDEN with a caret, both shapes, and Width(key="d")."""
    msg = _error(results, "width")
    spec = CASES["width"]
    first, echoed, caret = msg.splitlines()[:3]
    assert first.startswith("XWIDEN (body layer): its module Widen returns a tensor (2, 96, 8, 8), but the plan "
                            "gives a tensor (2, 32, 8, 8)")
    assert "width differs" in first and f"(column {spec.index('XWIDEN') + 1})" in first
    assert echoed.strip() == spec and caret.index("^") - echoed.index(spec[0]) == spec.index("XWIDEN")
    assert caret.count("^") == len("XWIDEN")
    assert 'width=Width(key="d")' in msg


def test_undeclared_stride(results: dict) -> None:
    msg = _error(results, "stride")
    assert "XSHRINK" in msg and "returns a tensor (2, 32, 4, 4), but the plan gives a tensor (2, 32, 8, 8)" in msg
    assert "stride differs" in msg and "stride=2" in msg


def test_wrong_kind_of_output(results: dict) -> None:
    msg = _error(results, "kind")
    assert "XPAIR" in msg and "returns a tuple of a tensor (2, 32, 8, 8), a tensor (2, 32, 8, 8)" in msg
    assert "but the plan gives a tensor (2, 32, 8, 8)" in msg and 'kind="tokens"' in msg


def test_dropped_tokens(results: dict) -> None:
    msg = _error(results, "tokens")
    assert "XDROPTOK (body sequence)" in msg
    assert "returns a tensor (2, 64, 32), but the plan gives a tensor (2, 66, 32)" in msg
    assert "tokens differs" in msg and "returns every token" in msg


def test_token_width(results: dict) -> None:
    msg = _error(results, "token width")
    assert "XTOK (body tokens)" in msg and "a tensor (2, 1, 64)" in msg and "width differs" in msg


def test_meta_fallback_builds_and_is_recorded(results: dict) -> None:
    """A right module that cannot run on the meta device is probed on a batch of one, and the model works."""
    r = results[CASES["fallback"]]
    assert r["ok"] == [2, 10]
    (why,) = r["fallbacks"].values()
    assert "not on the meta device" in why and "ran on cpu" in why


def test_builtin_blocks_pass_the_probe_on_meta() -> None:
    """Every shipped spec (presets, zoo, gallery) builds on the meta device, each layer probed there."""
    specs = sorted((ROOT / "specs").glob("*.json")) + sorted((ROOT / "specs" / "zoo").glob("*.json")) \
        + sorted((ROOT / "specs" / "gallery").glob("*.json"))
    assert len(specs) > 30
    for path in specs:
        with torch.device("meta"):
            model = sdpnet.build(str(path))
        assert model.probe_fallbacks == {}, path


def test_train_ffcv_refuses_with_exit_2(fashion_mnist_betons: Path, tmp_path: Path) -> None:
    """train_ffcv.py with the user's block module imported: exit 2, the message, and no run folder."""
    (tmp_path / "my_blocks.py").write_text(BLOCKS)
    run = tmp_path / "run"
    d = fashion_mnist_betons
    argv = ["train_ffcv.py", "--spec", "P4-DWC3-XWIDEN(d=96)-DWC3-GAP+LIN", "-C", "configs/fashion_mnist.yaml",
            f"--data.train_path={d / 'train.beton'}", f"--data.val_path={d / 'val.beton'}",
            "--training.epochs=1", f"--logging.folder={run}"]
    code = ("import runpy, sys; import my_blocks; sys.argv = " + json.dumps(argv)
            + "; runpy.run_path('train_ffcv.py', run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "bad --model.spec: XWIDEN (body layer): its module Widen returns a tensor" in proc.stderr
    assert 'width=Width(key="d")' in proc.stderr and "^^^^^^" in proc.stderr
    assert not run.exists()
