"""The spec language keeps its promises: no hang, and a value that resolves also builds (bounds are part of
the schema, checked with the caret). Each case is run through the real CLI."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CASES = [  # spec, extra args, fragment of the one-line error
    ("P4-DOWN2x24-ENC(h=7)", [], "nothing is left at img_size 224"),
    ("P4-DOWN2x24-ENC(h=7)", ["--set", "img_size=16384"], "widths are 1 to 65,536"),
    ("P4-DOWN2x5-ENC(h=7)", ["--set", "dim=32", "--set", "img_size=256"], "use h=4 or h=8"),
    ("P4-DWC2", [], "kernel_size must be odd"),
    ("P4-CONV4", [], "kernel_size must be odd"),
    ("P4-MLP(r=0.0)", [], "r=0 must be > 0"),
    ("P4-ENC(r=1e308)", [], "must be <= 64"),
    ("P4-DWC3(ls=1e308)", [], "must be <= 10000"),
    ("P4-ENC(drop=2.0)", [], "drop=2 must be <= 1"),
    ("P1000000", [], "patch_size must be <= 1024"),
    ("P4-CONV3(s=2)x9", [], "use a smaller stride, or img_size >= 256"),
    ("P4-ENC", ["--set", "layer_scale=1e308"], "must be <= 10000"),
    ("P4-ENC", ["--set", "dim=100000"], "from 1 to 65,536"),
]


@pytest.mark.parametrize("spec,extra,fragment", CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in CASES])
def test_bad_values_are_one_clear_error(spec: str, extra: list[str], fragment: str) -> None:
    """Exit 2 within seconds, the fragment in the message, a caret line, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "sdpnet", "parse", spec, *extra], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith("error: ")


def test_summary_res_zero() -> None:
    """summary --res 0 is refused, not silently replaced by the spec's img_size."""
    proc = subprocess.run([sys.executable, "-m", "sdpnet", "summary", "P4-DWC3", "--set", "dim=8", "--res", "0"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "--res 0" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
