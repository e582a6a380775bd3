"""train_ffcv.py end to end on CPU: real .beton files, a real tiny spec, real training runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sdpnet
from sdpnet.train import load_checkpoint, native_bf16, param_groups
from sdpnet.tools.plot import main as plot_main

REPO = Path(__file__).resolve().parents[1]
TINY = {"name": "tiny", "arch": "P4+CLS1-[DWC3+MLP,ENC]-MLP", "dim": 32, "heads": 2, "mlp_ratio": 2,
        "num_classes": 10, "img_size": 28}
TIMING = {"img_per_s", "epoch_time"}


def train(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run train_ffcv.py as a user would, from the repository root."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
    return subprocess.run([sys.executable, str(REPO / "train_ffcv.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def base_args(fashion_mnist_betons: Path, tiny_spec: Path) -> list[str]:
    """A short Fashion-MNIST run with every augmentation on: FFCV crop and flip (one worker: replayable) too."""
    d = fashion_mnist_betons
    return ["--spec", str(tiny_spec), "-C", "configs/fashion_mnist.yaml",
            f"--data.train_path={d / 'train.beton'}", f"--data.val_path={d / 'val.beton'}",
            "--data.train_subset=1024", "--data.val_subset=256", "--data.num_workers=1",
            "--training.epochs=2", "--training.batch_size=64", "--lr.lr=0.003", "--lr.warmup_epochs=0.5",
            "--augment.scale_min=0.35", "--augment.scale_max=1", "--augment.flip=1",
            "--augment.randaug_n=2", "--augment.erase_p=0.25", "--augment.mixup=0.8", "--augment.cutmix=1.0",
            "--ema.decay=0.9", "--logging.log_interval=4"]


@pytest.fixture(scope="module")
def straight_run(base_args, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("straight") / "run"
    res = train(*base_args, f"--logging.folder={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    (run.parent / "stdout.txt").write_text(res.stdout)
    return run


class TestEndToEnd:
    def test_loss_falls(self, straight_run):
        """Two epochs lower both the training and the validation loss."""
        rows = [json.loads(line) for line in (straight_run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == [1, 2]
        assert rows[1]["train_loss"] < rows[0]["train_loss"]
        assert rows[1]["val_loss"] < rows[0]["val_loss"]

    def test_autocast_resolved_for_this_machine(self, straight_run):
        """The demo config's amp=auto is bf16 autocast exactly where bf16 is native (a CPU with AMX)."""
        assert f"amp={native_bf16('cpu')}," in (straight_run.parent / "stdout.txt").read_text()

    def test_metrics_records(self, straight_run):
        """Each epoch records losses, model and EMA accuracies (fractions), lr, resolution and speed."""
        for r in map(json.loads, (straight_run / "metrics.jsonl").read_text().splitlines()):
            for key in ("top1", "top5", "ema_top1", "ema_top5"):
                assert 0.0 <= r[key] <= 1.0
            assert r["top1"] <= r["top5"] and r["res"] == 28 and r["lr"] > 0
            assert r["img_per_s"] > 0 and r["epoch_time"] > 0 and r["val_loss"] > 0

    def test_run_files(self, straight_run, tiny_spec):
        """config.json, spec.json, results.json, curves.png and a weights_only checkpoint are written."""
        config = json.loads((straight_run / "config.json").read_text())
        assert config["training"]["epochs"] == 2 and config["augment"]["mixup"] == 0.8
        assert config["model"]["spec"] == str(tiny_spec) and "git" in config
        assert config["peak_lr"] == pytest.approx(0.003)
        spec = json.loads((straight_run / "spec.json").read_text())
        assert spec["canonical"] == str(sdpnet.load_spec(str(tiny_spec)).arch) and spec["dim"] == 32
        results = json.loads((straight_run / "results.json").read_text())
        last = json.loads((straight_run / "metrics.jsonl").read_text().splitlines()[-1])
        assert results["top1"] == last["top1"] and results["ema_top1"] == last["ema_top1"]
        assert results["epochs"] == 2 and results["params"] > 0 and results["best_top1"] >= results["top1"]
        ck = load_checkpoint(straight_run / "checkpoint.pt")
        assert ck["epoch"] == 2 and ck["step"] == 2 * (1024 // 64)
        assert not any(k.startswith("_orig_mod") for k in ck["model"])
        assert (straight_run / "curves.png").read_bytes()[:4] == b"\x89PNG"
        assert not list(straight_run.glob(".*tmp*"))

    def test_plot_cli(self, straight_run, tmp_path):
        """The plot entry point draws a PNG and exits 0; a folder without metrics exits 2."""
        out = tmp_path / "c.png"
        assert plot_main([str(straight_run), "-o", str(out)]) == 0
        assert out.read_bytes()[:4] == b"\x89PNG"
        assert plot_main([str(tmp_path)]) == 2


@pytest.fixture(scope="module")
def resumed_run(base_args, tmp_path_factory) -> Path:
    """Stopped after epoch 1 (training.stop_after), then continued with training.resume=1."""
    run = tmp_path_factory.mktemp("resumed") / "run"
    first = train(*base_args, f"--logging.folder={run}", "--training.stop_after=1")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not (run / "results.json").exists() and load_checkpoint(run / "checkpoint.pt")["epoch"] == 1
    second = train(*base_args, f"--logging.folder={run}", "--training.resume=1")
    assert second.returncode == 0, second.stderr[-3000:]
    return run


class TestResume:
    def test_same_metrics(self, straight_run, resumed_run):
        """Stopped after epoch 1 and resumed, crops and flips on: every metric equals the uninterrupted run's."""
        def rows(run):
            return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
                    for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert rows(resumed_run) == rows(straight_run)

    def test_same_weights(self, straight_run, resumed_run):
        """Final model, EMA and optimizer state are bit-identical."""
        a, b = load_checkpoint(straight_run / "checkpoint.pt"), load_checkpoint(resumed_run / "checkpoint.pt")
        for part in ("model", "ema"):
            assert a[part].keys() == b[part].keys()
            for k in a[part]:
                assert torch.equal(a[part][k], b[part][k]), (part, k)
        sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
        assert all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)

    def test_refuses_to_overwrite(self, base_args, straight_run):
        """A folder that holds a run is not overwritten without --training.resume=1 (exit 2)."""
        res = train(*base_args, f"--logging.folder={straight_run}")
        assert res.returncode == 2 and "resume" in res.stderr and "Traceback" not in res.stderr


class TestStrictConfig:
    def test_typo_names_the_valid_key(self, base_args, tmp_path):
        """A misspelt key exits 2 naming the nearest valid key, before any run file is written."""
        run = tmp_path / "run"
        res = train(*base_args, f"--logging.folder={run}", "--training.epoch=3", timeout=120)
        assert res.returncode == 2 and "training.epochs" in res.stderr and "Traceback" not in res.stderr
        assert not run.exists()

    def test_bad_values_and_missing_spec(self, tiny_spec, tmp_path):
        """Wrong type, bad boolean, bad choice and no --spec are all reported at once, exit 2."""
        res = train("--training.epochs=three", "--augment.flip=maybe", "--training.amp=fp16",
                    f"--logging.folder={tmp_path / 'r'}", timeout=120)
        assert res.returncode == 2 and "Traceback" not in res.stderr
        for key in ("training.epochs", "augment.flip", "training.amp", "model.spec"):
            assert key in res.stderr
        assert not (tmp_path / "r").exists()

    def test_bad_spec_exits_2(self, base_args, tmp_path):
        """A malformed spec exits 2 with the SpecError message and no traceback."""
        res = train(*base_args, f"--logging.folder={tmp_path / 'r'}", "--spec", "P4-[DWC3+MLP-MLP", timeout=120)
        assert res.returncode == 2 and "spec" in res.stderr and "Traceback" not in res.stderr
        assert not (tmp_path / "r").exists()

    def test_missing_data_exits_2(self, tiny_spec, tmp_path):
        """A missing .beton exits 2 naming the file and the script that writes it."""
        res = train("--spec", str(tiny_spec), "-C", "configs/fashion_mnist.yaml",
                    f"--data.train_path={tmp_path / 'nope.beton'}", f"--logging.folder={tmp_path / 'r'}",
                    timeout=120)
        assert res.returncode == 2 and "nope.beton" in res.stderr and "write_" in res.stderr

    def test_resolution_not_multiple_of_stride(self, base_args, tmp_path):
        """A validation resolution the model cannot take exits 2 and suggests one it can."""
        res = train(*base_args, f"--logging.folder={tmp_path / 'r'}", "--validation.res=30", timeout=120)
        assert res.returncode == 2 and "stride 4" in res.stderr and "use 28" in res.stderr


class TestParamGroups:
    def test_no_decay_on_norms_biases_tokens(self, tiny_spec):
        """Decay applies to conv/linear weights only; class tokens, norms and biases are exempt."""
        model = sdpnet.build(str(tiny_spec))
        decay, no_decay = param_groups(model, 0.05, set(model.no_weight_decay()))
        names = {id(p): n for n, p in model.named_parameters()}
        exempt = {names[id(p)] for p in no_decay["params"]}
        assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
        assert all(p.ndim > 1 for p in decay["params"])
        assert set(model.no_weight_decay()) <= exempt
        assert any(n.endswith("bias") for n in exempt) and any("norm" in n for n in exempt)
        assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
