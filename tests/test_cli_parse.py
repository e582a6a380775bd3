"""The command line: ``python -m sdpnet parse`` and ``blocks``, run as a user would."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARD = "P16-[2xDWC7+MLP,ENC]x17-ENC+CLS5-MLP"


def sdpnet(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60)


def test_parse_prints_canonical_and_json():
    """parse prints the canonical form, then the JSON tree."""
    out = sdpnet("parse", "P16 - 2x[DWC7 + MLP, ENC]x1 - GAP + LIN")
    assert out.returncode == 0, out.stderr
    first, rest = out.stdout.split("\n", 1)
    assert first == "P16-[DWC7+MLP,ENC]x2-GAP+LIN"
    assert json.loads(rest)["stages"][0] == [{"block": "P", "arg": 16}]


def test_parse_file_prints_hparams(tmp_path):
    """parse of a .json file prints the hyperparameters too, with --set overrides applied."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"name": "m", "arch": CARD, "dim": 384}))
    out = sdpnet("parse", str(path), "--set", "dim=192")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(CARD + "\n")
    assert '"dim": 192' in out.stdout and '"name": "m"' in out.stdout


def test_bad_spec_exits_2_with_caret():
    """A bad spec prints the caret message, no traceback, and exits 2."""
    out = sdpnet("parse", "P16-DWX7")
    assert out.returncode == 2
    assert "unknown block 'DWX'" in out.stderr and "      ^^^" in out.stderr and "did you mean DWC" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_heads_error_exits_2():
    """Errors found at resolution (dim / heads) also exit 2."""
    out = sdpnet("parse", "P16-ENC(h=7)", "--set", "dim=64")
    assert out.returncode == 2 and "not divisible by h=7" in out.stderr and "Traceback" not in out.stderr


def test_blocks_lists_vocabulary():
    """blocks lists every block with its roles and keywords."""
    out = sdpnet("blocks")
    assert out.returncode == 0
    names = {line.split()[0] for line in out.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"P", "CT", "DWC", "ENC", "MLP", "GAP", "TOKS", "SEQPOOL", "LIN", "CLS", "REG"} <= names
