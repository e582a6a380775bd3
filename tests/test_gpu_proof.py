"""bench/gpu_proof.py on the CPU: ``--tiny`` runs every part's code (sdpnet_xl's architecture trained by the trainer's
step, a .beton of synthetic JPEGs written and read by FFCV, ViT-S against timm) as a real subprocess; a part that
fails leaves its row and the others still run. On a GPU the same script runs at full size (README, "GPU proof")."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from sdpnet.data.loaders import FFCV_ERROR

sys.path.insert(0, str(REPO / "bench"))
import gpu_proof  # noqa: E402


def proof(*args: str, block: Path | None = None) -> subprocess.CompletedProcess:
    """``python bench/gpu_proof.py ARGS`` from the repository root (with ``import ffcv`` failing given ``block``)."""
    path = [str(block) if block else None, os.environ.get("PYTHONPATH"), str(REPO)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path))}
    env.pop("SDPNET_BLOCK_FFCV", None)
    return subprocess.run([sys.executable, "bench/gpu_proof.py", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.skipif(FFCV_ERROR is not None, reason="part (b) writes its .beton with FFCV")
def test_tiny_on_cpu(tmp_path: Path):
    """Every part gives its rows: positive img/s, positive ratios, MFU n/a on the CPU, a peak memory, counted FLOPs."""
    out = tmp_path / "proof.json"
    res = proof("--tiny", "--device", "cpu", "--json", str(out), "--work", str(tmp_path))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["tiny"] and report["compile"] is False
    rows = report["rows"]
    assert [r["part"] for r in rows] == ["a", "b", "b", "c", "c"] and not any("error" in r for r in rows)
    assert all(r["img_s"] > 0 for r in rows)
    assert all(r["ratio"] > 0 for r in rows if "ratio" in r) and sum("ratio" in r for r in rows) == 3
    (a,) = (r for r in rows if r["part"] == "a")
    assert a["mfu"] is None and a["peak_flops"] is None and a["peak_mib"] > 0
    assert 0 < a["forward_gflops"] <= a["summary_gflops"]   # forward skips the last encoder's image tokens
    assert a["params"] == sum(p.numel() for p in gpu_proof.sdpnet.build("sdpnet_xl", dim=32, heads=2,
                                                                        img_size=56).parameters())
    table = res.stdout.splitlines()
    assert table[0].startswith("gpu_proof on cpu:") and "compile off" in table[0] and "MFU n/a" in table[0]
    assert any(line.startswith("a ") and " n/a " in line for line in table)
    assert list(tmp_path.iterdir()) == [out]   # the .beton's temporary folder is gone


def test_a_failed_part_leaves_a_row(ffcv_blocker: Path, tmp_path: Path):
    """With FFCV unimportable part (b) cannot write its .beton: its row says why, part (a) still runs, exit 1."""
    out = tmp_path / "proof.json"
    res = proof("--tiny", "--device", "cpu", "--parts", "ab", "--json", str(out), block=ffcv_blocker)
    assert res.returncode == 1, res.stderr[-3000:]
    a, b = json.loads(out.read_text())["rows"]
    assert a["part"] == "a" and a["img_s"] > 0
    assert b["part"] == "b" and b["error"].startswith("ImportError: ffcv is blocked"), b
    assert any(line.startswith("b ") and "failed: ImportError" in line for line in res.stdout.splitlines())


def test_bad_device_is_a_usage_error():
    res = proof("--device", "cuda:99" if gpu_proof.torch.cuda.is_available() else "cuda", "--json", os.devnull)
    assert res.returncode == 2 and "--device=cuda" in res.stderr and "use cpu" in res.stderr.splitlines()[-1]


@pytest.mark.parametrize("name,peak", [("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12),
                                       ("NVIDIA H100 NVL", 835e12), ("NVIDIA H200", 989e12),
                                       ("NVIDIA A100-SXM4-80GB", 312e12), ("NVIDIA GeForce RTX 4090", None)])
def test_peak_by_device_name(name: str, peak: float | None):
    """The specific parts (NVL, PCIe) are matched before the plain names; an unlisted device has no peak."""
    assert gpu_proof.peak_for(name) == peak
