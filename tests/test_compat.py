"""An old run folder still works: ``tests/data/run_ed7f980`` was written by main at ed7f980 (before the package was
split into layers) and must evaluate and resume with today's code, as a user would run both.

It was made, from a checkout of ed7f980 with the Fashion-MNIST .beton files, with ``OLD_RUN`` below and
``--training.stop_after=1 --logging.folder=tests/data/run_ed7f980`` (epoch 1 of 2), then resumed there with
``--training.resume=1`` on a copy: that copy's metrics.jsonl is ``tests/data/run_ed7f980_resumed.jsonl``.
fp32 (``--training.amp=off``) and one loader thread, so it replays on any CPU up to the kernels' summation order.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OLD = REPO / "tests" / "data" / "run_ed7f980"
OLD_RESUMED = REPO / "tests" / "data" / "run_ed7f980_resumed.jsonl"
OLD_RUN = ["--spec", "CONV3(act=relu,d=16),CT3(d=16,norm=bn)-POS-ENC(h=2)+CLS1-DOWN7(d=32)-GAP+MLP",
           "-C", "configs/fashion_mnist.yaml", "--training.epochs=2", "--data.train_subset=4096",
           "--data.val_subset=500", "--training.amp=off", "--data.num_workers=1", "--logging.progress=0"]
ONE_IMAGE = 1 / 500   # a top-1 on the 500 validation images may move by one image on another CPU's kernels


def run_py(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(OLD, run)
    return run


def test_old_run_evaluates(old_run: Path, fashion_mnist_betons: Path, tmp_path: Path):
    res = run_py("-m", "sdpnet", "evaluate", str(old_run), f"--data.val_path={fashion_mnist_betons / 'val.beton'}",
                 "--data.val_subset=500", "--out", str(tmp_path / "eval"), "--device", "cpu")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "eval" / "evaluate.json").read_text())
    recorded = rows(old_run / "metrics.jsonl")[-1]
    assert report["weights"] == "ema" and report["flip"] is True   # the run's EMA and its flip TTA
    top1 = report["sweep"][0]["top1"]
    assert abs(top1 - recorded["ema_top1"]) <= ONE_IMAGE + 1e-9, (top1, recorded["ema_top1"])


def test_old_run_resumes(old_run: Path, fashion_mnist_betons: Path):
    d = fashion_mnist_betons
    res = run_py("train_ffcv.py", *OLD_RUN, f"--data.train_path={d / 'train.beton'}",
                 f"--data.val_path={d / 'val.beton'}", f"--logging.folder={old_run}", "--training.resume=1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming after epoch 1" in res.stdout
    got, want = rows(old_run / "metrics.jsonl"), rows(OLD_RESUMED)
    assert [r["epoch"] for r in got] == [1, 2]
    assert got[0] == want[0]   # epoch 1 is the old run's own record, kept as it was
    for key in ("top1", "ema_top1"):
        assert abs(got[1][key] - want[1][key]) <= 2 * ONE_IMAGE + 1e-9, (key, got[1][key], want[1][key])
    for key in ("train_loss", "val_loss", "ema_val_loss", "lr"):
        assert got[1][key] == pytest.approx(want[1][key], rel=1e-3), key
    assert (old_run / "results.json").is_file()
    config = json.loads((old_run / "config.json").read_text())
    assert config["changes"] == []   # nothing counted as changed: today's options read the old config as it is
