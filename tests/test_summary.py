"""``python -m sdpnet summary``: per-layer table and JSON, FLOPs against hand counts, errors exit 2."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sdpnet.models.builder import build, count_params
from sdpnet.tools.summary import main

REPO = Path(__file__).resolve().parents[1]


def _json(capsys: pytest.CaptureFixture, *argv: str) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


class TestCounts:
    """Parameters and FLOPs equal hand counts (FLOPs = 2 x multiply-adds of convs, linears, attention)."""

    def test_conv_mlp_flops(self, capsys: pytest.CaptureFixture) -> None:
        """P4 + 1x1 MLP + linear head at 16 px, dim 8: 12,288 + 8,192 + 160 FLOPs."""
        out = _json(capsys, "P4-MLP(r=2)-GAP+LIN(norm=none)", "--res", "16", "--set", "dim=8",
                    "--set", "num_classes=10")
        rows = {r["layer"]: r for r in out["layers"]}
        assert rows["stem.0"]["flops"] == 2 * (4 * 4) * 8 * (3 * 4 * 4)
        assert rows["body.0"]["flops"] == 2 * 16 * (8 * 16 + 16 * 8)
        assert rows["head.0"]["flops"] == 2 * 8 * 10
        assert out["flops"] == 12_288 + 8_192 + 160 and out["macs"] == out["flops"] // 2
        assert rows["body.0"]["output"] == "1x8x4x4" and rows["pool"]["output"] == "1x8"

    def test_enc_flops_include_attention(self, capsys: pytest.CaptureFixture) -> None:
        """ENC over 2 tokens + 16 image tokens counts its linears and the attention products."""
        out = _json(capsys, "P4+CLS2-ENC(r=2)-TOKS+LIN", "--res", "16", "--set", "dim=16", "--set", "heads=2")
        enc = next(r for r in out["layers"] if r["block"] == "ENC")
        n, c = 2 + 16, 16
        assert enc["flops"] == 2 * (n * (3 * c * c + c * c + 2 * 2 * c * c) + 2 * n * n * c)
        assert enc["output"] == "1x18x16"  # a sequence block: [tokens; image]

    def test_params_match_model(self, capsys: pytest.CaptureFixture) -> None:
        """Total params equal the model's; the rows (tokens included) add up to it."""
        spec = "P4+POS+CLS2+REG1-DWC3,ENC,DOWN2-TOKS+MLP"
        out = _json(capsys, spec, "--res", "32", "--set", "dim=16", "--set", "img_size=32", "--set", "heads=2")
        model = build(spec, dim=16, img_size=32, heads=2)
        assert out["params"] == count_params(model) == sum(r["params"] for r in out["layers"])
        assert [r["layer"] for r in out["layers"]][:3] == ["stem.0", "stem.1", "tokens"]


class TestTable:
    """The default output is an aligned table with totals."""

    def test_table(self, capsys: pytest.CaptureFixture) -> None:
        """One row per layer, then the totals line with params, GFLOPs and GMACs at the resolution."""
        assert main(["P4+CLS1-DWC3,ENC-TOKS+LIN", "--res", "32", "--set", "dim=16", "--set", "heads=2"]) == 0
        text = capsys.readouterr().out
        lines = text.splitlines()
        assert lines[0] == "P4+CLS1-DWC3,ENC-TOKS+LIN"
        assert lines[1].split()[:4] == ["layer", "block", "output", "params"]
        assert any(line.split()[:3] == ["body.1", "ENC", "1x65x16"] for line in lines)
        params = count_params(build("P4+CLS1-DWC3,ENC-TOKS+LIN", dim=16, heads=2))
        assert lines[-1].startswith(f"params: {params:,}   FLOPs: ") and lines[-1].endswith("at 32x32")


class TestErrors:
    """Bad input exits 2 with a message, no traceback."""

    def test_bad_res(self, capsys: pytest.CaptureFixture) -> None:
        """A resolution not divisible by the stride is refused, naming the stride."""
        assert main(["P16-DWC3-GAP+LIN", "--res", "100", "--set", "dim=16"]) == 2
        assert "not divisible by the model's stride 16" in capsys.readouterr().err

    def test_cli_bad_spec(self) -> None:
        """`python -m sdpnet summary` with an unknown block prints the SpecError and exits 2."""
        path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
        res = subprocess.run([sys.executable, "-m", "sdpnet", "summary", "P16-DWCC7-GAP"], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2 and "unknown block 'DWCC'" in res.stderr and "did you mean DWC" in res.stderr
        assert "Traceback" not in res.stderr
