"""User blocks of every kind, registered exactly as docs/blocks.md tells a user to (its code is run as
written), work: each spec under an example builds with the widths, grids and parameter counts the schema
promises. Schemas that do not fit their modules are refused at registration or build time.

Runs in a subprocess, so the test blocks never join this process's registry (the docs' tables are generated
from it).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "docs/blocks.md").read_text(), re.S)

DRIVER = r'''
import json, sys, torch
import sdpnet
from sdpnet.models.builder import count_params
torch.manual_seed(0)
exec(compile(sys.stdin.read(), "docs/blocks.md", "exec"), {})
out = {}
for spec, kw, res in json.loads(sys.argv[1]):
    model = sdpnet.build(spec, **kw)
    x = torch.randn(2, 3, res, res)
    y = model(x)
    y.sum().backward()
    mods = {l.name: m for l, m in zip(model.plan.layers,
            list(model.stem) + list(model.body) + [model.pool] + list(model.head))}
    out[spec] = {
        "layers": [[l.name, l.kind, l.in_dim, l.out_dim, list(l.grid), l.stride] for l in model.plan.layers],
        "params": {n: count_params(m) for n, m in mods.items()},
        "logits": list(y.shape), "stride": model.stride,
        "grads": all(p.grad is not None for p in model.parameters()),
        "shapes": {n: [list(p.shape) for p in m.parameters()] for n, m in mods.items()},
    }
print(json.dumps(out))
'''

CASES = [  # spec, overrides, resolution
    ("P4-DWC3-WIDEN(d=96)-DWC3-GAP+LIN", {"dim": 32, "num_classes": 10, "img_size": 32}, 32),
    ("P4-WIDEN-GAP+LIN", {"dim": 32, "num_classes": 10, "img_size": 32}, 32),
    ("P4-HALVE2+POS-DWC3-GAP+LIN", {"dim": 16, "num_classes": 10, "img_size": 32}, 32),
    ("STEM-DWC3-GAP+LIN", {"dim": 32, "num_classes": 10, "img_size": 32}, 32),
    ("P4+CLS2-DWC3-PEEK-ENC-TOKS+LIN", {"dim": 32, "num_classes": 10, "img_size": 32, "heads": 2}, 32),
    ("P4+CLS1-TOKMIX-TOKS+LIN", {"dim": 16, "num_classes": 10, "img_size": 32}, 32),
    ("P4+CLS2-ENC-BOTH+LIN", {"dim": 32, "num_classes": 10, "img_size": 32, "heads": 2}, 32),
    ("P4-DWC3-GAP+COS", {"dim": 32, "num_classes": 10, "img_size": 32}, 32),
]


def _run(code: str, cases: list) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cases)], input=code, capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def built() -> dict:
    assert len(EXAMPLES) >= 7, "docs/blocks.md lost its examples"
    proc = _run("\n".join(EXAMPLES), CASES)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _layer(result: dict, name: str) -> list:
    return next(layer for layer in result["layers"] if layer[0] == name)


def test_every_kind_has_an_example(built: dict) -> None:
    """The docs register one block of each kind that a user may add."""
    kinds = {layer[1] for r in built.values() for layer in r["layers"]}
    assert {"layer", "tokens", "sequence", "pool", "classifier"} <= kinds
    assert all(r["logits"] == [2, 10] and r["grads"] for r in built.values())


def test_width_changing_layer(built: dict) -> None:
    """WIDEN(d=96) at dim 32 outputs 96 (the user's d, not the plan's width); the next blocks are 96 wide."""
    r = built["P4-DWC3-WIDEN(d=96)-DWC3-GAP+LIN"]
    assert _layer(r, "WIDEN")[2:4] == [32, 96]
    assert r["params"]["WIDEN"] == 32 * 96 + 96
    assert r["shapes"]["LIN"][-2] == [10, 96]  # fc weight
    assert _layer(built["P4-WIDEN-GAP+LIN"], "WIDEN")[2:4] == [32, 64]  # factor 2 without d


def test_strided_layer_and_position_table(built: dict) -> None:
    """HALVE2 halves the 8x8 grid; the POS after it is created 4x4; the model's stride is 8."""
    r = built["P4-HALVE2+POS-DWC3-GAP+LIN"]
    assert _layer(r, "HALVE")[4:] == [[8, 8], 2] and _layer(r, "POS")[4] == [4, 4]
    assert r["shapes"]["POS"] == [[1, 16, 4, 4]] and r["stride"] == 8


def test_stem_tokenizer(built: dict) -> None:
    """A user tokenizer opens the stem, outputs dim (its last tokenizer) and sets the stride."""
    r = built["STEM-DWC3-GAP+LIN"]
    assert _layer(r, "STEM")[1:6] == ["layer", 3, 32, [32, 32], 4] and r["stride"] == 4
    assert r["params"]["STEM"] == (3 * 16 * 9 + 16) + (16 * 32 * 9 + 32)


def test_token_aware_and_sequence_blocks(built: dict) -> None:
    """PEEK is called with the tokens; TOKMIX gets the joined sequence sized from its grid and tokens."""
    assert _layer(built["P4+CLS2-DWC3-PEEK-ENC-TOKS+LIN"], "PEEK")[1] == "tokens"
    r = built["P4+CLS1-TOKMIX-TOKS+LIN"]
    n = 1 + 8 * 8
    assert _layer(r, "TOKMIX")[1] == "sequence" and r["params"]["TOKMIX"] == 2 * 16 + n * n + n


def test_pool_and_classifier(built: dict) -> None:
    """A user pool is used as written (no GAP inserted) and its width factor reaches the classifier;
    a user classifier ends the head."""
    r = built["P4+CLS2-ENC-BOTH+LIN"]
    assert [layer[0] for layer in r["layers"]][-2:] == ["BOTH", "LIN"]
    assert _layer(r, "BOTH")[2:4] == [32, 64] and r["shapes"]["LIN"][-2] == [10, 64]
    r = built["P4-DWC3-GAP+COS"]
    assert _layer(r, "COS")[1:4] == ["classifier", 32, 10] and r["params"]["COS"] == 1 + 32 * 10


BAD = [
    ("a schema passing a keyword the constructor lacks",
     'from torch import nn\nfrom sdpnet import Param, Width, register_block\n'
     '@register_block("BAD", kind="layer", roles=("body",), width=Width("d"), params=(Param("d", "dim", int),))\n'
     'class Bad(nn.Module):\n    def __init__(self, in_dim): super().__init__()\n',
     "its schema passes dim but Bad() takes no such parameter"),
    ("a constructor requiring what the schema never passes",
     'from torch import nn\nfrom sdpnet import register_block\n'
     '@register_block("BAD", kind="layer", roles=("body",))\n'
     'class Bad(nn.Module):\n    def __init__(self, in_dim, depth): super().__init__()\n',
     "requires depth, which the schema never passes"),
    ("a token-aware block in the stem", 'from sdpnet import register_block\n'
     '@register_block("BAD", kind="tokens", roles=("stem", "body"))\nclass Bad: pass\n',
     "cannot stand in the stem"),
    ("a width key that is no keyword", 'from sdpnet import Width, register_block\n'
     '@register_block("BAD", kind="layer", roles=("body",), width=Width("d"))\nclass Bad: pass\n',
     "width key 'd' must be one of its int keywords"),
    ("a pool outside the head", 'from sdpnet import register_block\n'
     '@register_block("BAD", kind="pool", roles=("body",))\nclass Bad: pass\n',
     "stands only in the head"),
    ("a classifier without reset_classifier",
     'import torch\nfrom torch import nn\nfrom sdpnet import register_block\n'
     '@register_block("BAD", kind="classifier", roles=("head",), context=("num_classes",))\n'
     'class Bad(nn.Module):\n    def __init__(self, in_dim, num_classes):\n        super().__init__()\n'
     '        self.fc = nn.Linear(in_dim, num_classes)\n    def forward(self, f): return self.fc(f)\n'
     'import sdpnet; sdpnet.build("P4-GAP+BAD", dim=8)\n',
     "needs a reset_classifier(num_classes) method"),
]


@pytest.mark.parametrize("what,code,message", BAD, ids=[b[0] for b in BAD])
def test_inconsistent_schemas_are_refused(what: str, code: str, message: str) -> None:
    """Each inconsistency is a ValueError naming the block, at registration (or build for the head)."""
    proc = _run(textwrap.dedent(code), [])
    assert proc.returncode != 0 and "ValueError" in proc.stderr and message in proc.stderr, proc.stderr
