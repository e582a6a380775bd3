"""Fine-tuning with train_ffcv.py: --model.init_from, --lr.layer_decay, --model.freeze_stem, on real data.

Fashion-MNIST split in two: classes 0-4 (12,000 training images) and classes 5-9 (3,000), each a .beton of
its own (labels 0-4, the class names in the sidecar). A tiny hybrid trained for one epoch on 0-4, then
fine-tuned for one epoch on 5-9, must beat the same model trained from scratch for that one epoch on 5-9
(same seed, same recipe: batch 64, the demo's config).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import sdpnet
from sdpnet.data.sources import FASHION_MNIST_CLASSES, ArraySource, read_fashion_mnist
from sdpnet.data.writer import write_raw_splits
from sdpnet.train import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
FMNIST = "/usr/share/datasets/fashion-mnist"
TINY = {"name": "ft_tiny", "arch": "CT3(d=16,norm=bn),CT3(d=32,norm=bn)+CLS1-POS-ENC(h=2,r=2.0)-LIN", "dim": 32,
        "num_classes": 5, "img_size": 28}


def train(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
    return subprocess.run([sys.executable, str(REPO / "train_ffcv.py"), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def class_split(root: Path, classes: list[int], n_train: int, n_val: int) -> Path:
    """A train/val .beton pair of the Fashion-MNIST images of ``classes``, relabelled 0..len(classes)-1."""
    rng = np.random.default_rng(0)
    remap = np.full(10, -1)
    remap[classes] = np.arange(len(classes))
    splits = {}
    for split, n in (("train", n_train), ("val", n_val)):
        src = read_fashion_mnist(FMNIST, split)
        idx = np.sort(rng.choice(np.flatnonzero(np.isin(src.labels, classes)), n, replace=False))
        splits[split] = ArraySource(src.images[idx], remap[src.labels[idx]])
    root.mkdir(parents=True)
    write_raw_splits(splits, {s: root / f"{s}.beton" for s in splits}, classes=[FASHION_MNIST_CLASSES[c] for c in classes],
                     kind="fashion-mnist", data_dir=FMNIST, resolution=28, settings={"classes": classes}, num_workers=1)
    return root


@pytest.fixture(scope="module")
def splits(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("split")
    (root / "tiny.json").write_text(json.dumps(TINY))
    return {"first": class_split(root / "first", [0, 1, 2, 3, 4], 12000, 1000),
            "second": class_split(root / "second", [5, 6, 7, 8, 9], 3000, 1000), "spec": root / "tiny.json"}


def recipe(splits: dict[str, Path], part: str, folder: Path, *extra: str) -> list[str]:
    d = splits[part]
    return ["--spec", str(splits["spec"]), "-C", "configs/fashion_mnist.yaml", f"--data.train_path={d / 'train.beton'}",
            f"--data.val_path={d / 'val.beton'}", "--training.epochs=1", "--training.seed=0", "--logging.progress=0",
            "--training.batch_size=64", "--validation.batch_size=250", f"--logging.folder={folder}", *extra]


@pytest.fixture(scope="module")
def pretrained(splits, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("pre") / "run"
    res = train(*recipe(splits, "first", run))
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def top1(run: Path) -> float:
    return json.loads((run / "results.json").read_text())["top1"]


class TestFineTune:
    def test_beats_training_from_scratch(self, splits, pretrained, tmp_path):
        tuned = train(*recipe(splits, "second", tmp_path / "tuned", f"--model.init_from={pretrained}"))
        assert tuned.returncode == 0, tuned.stderr[-3000:]
        # the first half's names are not the second's: a new classifier, every other tensor loaded, by name
        assert "classifier head.0.fc left new" in tuned.stdout and "Sandal" in tuned.stdout
        assert "not in the file head.0.fc.weight" in tuned.stdout
        scratch = train(*recipe(splits, "second", tmp_path / "scratch"))
        assert scratch.returncode == 0, scratch.stderr[-3000:]
        assert top1(tmp_path / "tuned") > top1(tmp_path / "scratch") + 0.02, (top1(tmp_path / "tuned"),
                                                                             top1(tmp_path / "scratch"))
        data = json.loads((tmp_path / "tuned" / "data.json").read_text())
        assert data["classes"] == FASHION_MNIST_CLASSES[5:]

    def test_layer_decay_and_frozen_stem(self, splits, pretrained, tmp_path):
        run = tmp_path / "run"
        res = train(*recipe(splits, "second", run, f"--model.init_from={pretrained / 'checkpoint.pt'}",
                            "--lr.layer_decay=0.5", "--model.freeze_stem=1", "--data.train_subset=512"))
        assert res.returncode == 0, res.stderr[-3000:]
        src = load_checkpoint(pretrained / "checkpoint.pt")["ema"]
        ck = load_checkpoint(run / "checkpoint.pt")
        stem = [k for k in ck["model"] if k.startswith("stem.") and "running" not in k and "num_batches" not in k]
        assert stem and all(torch.equal(ck["model"][k], src[k]) for k in stem)           # frozen
        assert not torch.equal(ck["model"]["body.1.attn.qkv.weight"], src["body.1.attn.qkv.weight"])   # learnt
        # 2 body blocks (POS, ENC): stem and class token 0.5^3, POS 0.5^2, ENC 0.5, head 1; each group at
        # lr x its scale (the frozen stem is in no group; the class token is not part of it and learns)
        scales = sorted({g["lr_scale"] for g in ck["optimizer"]["param_groups"] if g["params"]})
        assert scales == [0.125, 0.25, 0.5, 1.0]
        lr = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]["lr"]
        for g in ck["optimizer"]["param_groups"]:
            assert g["lr"] == pytest.approx(lr * g["lr_scale"])

    def test_other_class_count_and_resolution(self, pretrained):
        """In-process: 3 classes at 56 px from the 5-class 28-px run: new classifier, position table resampled."""
        from sdpnet.train.finetune import init_from

        spec = json.loads((pretrained / "spec.json").read_text())
        spec.pop("canonical", None)
        model = sdpnet.build(sdpnet.ModelSpec.from_json(spec), num_classes=3, img_size=56)
        report = init_from(model, pretrained)
        assert [n for n, _, _ in report.resampled] == ["body.0.pos_embed"]
        assert [n for n, _, _ in report.mismatched] == ["head.0.fc.weight", "head.0.fc.bias"]
        assert not report.missing and not report.unexpected
        assert model(torch.randn(2, 3, 56, 56)).shape == (2, 3)

    def test_bad_init_from_is_a_usage_error(self, splits, tmp_path):
        res = train(*recipe(splits, "second", tmp_path / "run", f"--model.init_from={tmp_path / 'nothing'}"))
        assert res.returncode == 2 and "init_from" in res.stderr and "nothing" in res.stderr
        assert not (tmp_path / "run").exists()
