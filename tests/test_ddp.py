"""Two-process DDP on CPU (gloo) through torchrun: same weights on both ranks, disjoint samples."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = {"name": "tiny", "arch": "P4+CLS1-[DWC3+MLP,ENC]-MLP", "dim": 32, "heads": 2, "mlp_ratio": 2,
        "num_classes": 10, "img_size": 28}


def test_two_gloo_processes(fashion_mnist_betons: Path, tmp_path: Path):
    """torchrun --nproc_per_node=2: identical parameters after the epoch, disjoint sample sets, one log."""
    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(TINY))
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])),
           "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(REPO / "train_ffcv.py"), "--spec", str(spec), "-C", "configs/fashion_mnist.yaml",
           f"--data.train_path={fashion_mnist_betons / 'train.beton'}",
           f"--data.val_path={fashion_mnist_betons / 'val.beton'}", "--data.train_subset=512",
           "--data.val_subset=200", "--data.num_workers=1", "--training.epochs=1", "--training.batch_size=32",
           "--augment.randaug_n=1", "--augment.mixup=0.8", "--augment.cutmix=1.0",
           "--dist.dump_samples=1", "--logging.progress=0", f"--logging.folder={run}"]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-4000:]
    r0, r1 = (json.loads((run / f"samples_rank{r}_epoch1.json").read_text()) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    # 512 samples, 2 ranks x 32 per batch: 8 steps of 32 on each rank
    assert len(r0["indices"]) == len(r1["indices"]) == len(r0["labels"]) == 256
    assert not set(r0["indices"]) & set(r1["indices"])
    assert len(set(r0["indices"])) == 256
    for key in ("param_sum", "param_abs_sum", "param_weighted"):
        assert r0[key] == r1[key], key
    config = json.loads((run / "config.json").read_text())
    assert config["world_size"] == 2 and config["global_batch"] == 64
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # rank 0 logs once for everybody
    assert json.loads(rows[0])["top1"] >= 0 and (run / "results.json").exists()
