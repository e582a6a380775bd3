"""Scale and faults on one CPU machine (gloo): two torchrun "nodes" against one node with two processes, and a
worker killed mid-epoch under ``torchrun --max-restarts`` against the same run uninterrupted.

All three launches train the same run (seed 0, 3 epochs of 1,024 Fashion-MNIST images, 2 ranks x 32 per batch,
crops, flips, RandAugment, MixUp/CutMix, one FFCV worker so that crops replay) and must give the same numbers.
Each launch costs about 30 s, most of it the FFCV pipeline's numba compilation in every process.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sdpnet.train.errors import UsageError
from sdpnet.train.options import read_options
from sdpnet.train.prepare import check_run_folder, started_by

REPO = Path(__file__).resolve().parents[1]
TINY = {"name": "tiny", "arch": "P4+CLS1-[DWC3+MLP,ENC]-MLP", "dim": 32, "heads": 2, "mlp_ratio": 2,
        "num_classes": 10, "img_size": 28}
TIMING = {"img_per_s", "epoch_time"}
EPOCHS, BATCH, BASE_LR = 3, 32, 0.02
RUN_FILES = {"config.json", "spec.json", "data.json", "metrics.jsonl", "checkpoint.pt", "results.json", "curves.png"}


def torchrun(*launch: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *launch]


def env() -> dict:
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rows(run: Path) -> list[dict]:
    """metrics.jsonl without the timings."""
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run / "metrics.jsonl").read_text().splitlines()]


def dumps(run: Path) -> dict[tuple[int, int], dict]:
    """{(rank, epoch): what that rank read in that epoch and its parameter checksums} (--dist.dump_samples)."""
    return {(d["rank"], d["epoch"]): d for d in map(json.loads, map(Path.read_text, run.glob("samples_rank*.json")))}


@pytest.fixture(scope="module")
def train_args(fashion_mnist_betons: Path, tmp_path_factory) -> list[str]:
    """train_ffcv.py and its options; the demo config without its fixed lr, so the lr follows the global batch."""
    tmp = tmp_path_factory.mktemp("multinode")
    spec = tmp / "tiny.json"
    spec.write_text(json.dumps(TINY))
    config = yaml.safe_load((REPO / "configs" / "fashion_mnist.yaml").read_text())
    del config["lr"]["lr"]
    (tmp / "config.yaml").write_text(yaml.safe_dump(config))
    d = fashion_mnist_betons
    return [str(REPO / "train_ffcv.py"), "--spec", str(spec), "-C", str(tmp / "config.yaml"),
            f"--data.train_path={d / 'train.beton'}", f"--data.val_path={d / 'val.beton'}",
            "--data.train_subset=1024", "--data.val_subset=200", "--data.num_workers=1",
            f"--training.epochs={EPOCHS}", f"--training.batch_size={BATCH}", f"--lr.base_lr={BASE_LR}",
            "--augment.scale_min=0.35", "--augment.randaug_n=1", "--augment.mixup=0.8", "--augment.cutmix=1.0",
            "--dist.dump_samples=1", "--logging.progress=0"]


@pytest.fixture(scope="module")
def one_node(train_args, tmp_path_factory) -> Path:
    """The reference: one node, two processes, never interrupted."""
    run = tmp_path_factory.mktemp("one_node") / "run"
    res = subprocess.run(torchrun("--standalone", "--nproc_per_node=2", *train_args, f"--logging.folder={run}"),
                         cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    return run


class TestTwoNodes:
    def test_same_run_as_one_node(self, train_args, one_node, tmp_path):
        """Two nodes of one process (c10d rendezvous): the one-node run's metrics, samples and weights; rank 0's
        node alone holds the run folder (the other node's folder has its rank's sample dumps only)."""
        port, nodes = free_port(), [tmp_path / "node0", tmp_path / "node1"]
        procs = []
        for node_rank, cwd in enumerate(nodes):   # the same command on each node, each in its own directory
            cwd.mkdir()
            launch = ("--nnodes=2", "--nproc_per_node=1", f"--node_rank={node_rank}", "--rdzv_backend=c10d",
                      f"--rdzv_endpoint=127.0.0.1:{port}", "--rdzv_id=sdpnet-two-nodes",
                      f"--rdzv_conf=is_host={int(node_rank == 0)}")
            procs.append(subprocess.Popen(torchrun(*launch, *train_args, "--logging.folder=run"), cwd=cwd, env=env(),
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate(timeout=300) for p in procs]
        for p, (_, err) in zip(procs, outs):
            assert p.returncode == 0, err[-4000:]
        runs = [cwd / "run" for cwd in nodes]
        ranks = [{rank for rank, _ in dumps(run)} for run in runs]
        assert sorted(ranks, key=min) == [{0}, {1}]   # one process per node (c10d picks which node is rank 0)
        main, other = (runs[0], runs[1]) if ranks[0] == {0} else (runs[1], runs[0])
        assert {p.name for p in main.iterdir() if not p.name.startswith("samples_")} == RUN_FILES
        assert sorted(p.name for p in other.iterdir()) == [f"samples_rank1_epoch{e}.json"
                                                           for e in range(1, EPOCHS + 1)]
        config, reference = (json.loads((r / "config.json").read_text()) for r in (main, one_node))
        assert config["world_size"] == reference["world_size"] == 2
        assert config["global_batch"] == reference["global_batch"] == 2 * BATCH
        assert config["peak_lr"] == reference["peak_lr"] == pytest.approx(BASE_LR * 2 * BATCH / 512)
        assert config["elastic"]["run_id"] == "sdpnet-two-nodes" and config["elastic"]["restarts"] == []
        assert rows(main) == rows(one_node) and [r["epoch"] for r in rows(main)] == list(range(1, EPOCHS + 1))
        got, want = dumps(main) | dumps(other), dumps(one_node)
        assert got.keys() == want.keys() and len(got) == 2 * EPOCHS
        for key in want:
            assert got[key] == want[key], key   # indices, labels, parameter checksums
        for epoch in range(1, EPOCHS + 1):   # each rank its own shard, 16 steps of 32 per epoch
            a, b = got[0, epoch]["indices"], got[1, epoch]["indices"]
            assert len(a) == len(b) == 1024 // 2 and not set(a) & set(b)
            assert got[0, epoch]["param_weighted"] == got[1, epoch]["param_weighted"]


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (Linux /proc)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def worker_rank(pid: int) -> int | None:
    """The RANK torchrun gave worker ``pid`` (None for a process that is not a worker, or gone)."""
    try:
        env_vars = (Path(f"/proc/{pid}/environ").read_bytes()).split(b"\0")
    except OSError:
        return None
    ranks = [v[len(b"RANK="):] for v in env_vars if v.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def wait_for(what, timeout: float, proc: subprocess.Popen):
    """Poll ``what()`` every 20 ms until it is truthy; fail if ``proc`` ends or time runs out."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = what()
        if value:
            return value
        assert proc.poll() is None, f"torchrun ended early ({proc.returncode}): {proc.communicate()[1][-4000:]}"
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s")


class TestElasticRestart:
    def test_killed_worker(self, train_args, one_node, tmp_path):
        """SIGKILL rank 0 in epoch 2: torchrun restarts the group, the run resumes after epoch 1 by itself, and
        metrics.jsonl holds each epoch once, equal to the uninterrupted run's (samples and weights too)."""
        run = tmp_path / "run"
        proc = subprocess.Popen(torchrun("--standalone", "--nproc_per_node=2", "--max-restarts=2",
                                         "--monitor-interval=0.1", *train_args, f"--logging.folder={run}"),
                                cwd=REPO, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            metrics = run / "metrics.jsonl"
            wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) == 1, 200, proc)
            time.sleep(0.2)   # into epoch 2 (about 1 s of training and validation after the first)
            workers = {worker_rank(p): p for p in children(proc.pid)}
            os.kill(workers[0], signal.SIGKILL)
            killed_at = len(metrics.read_text().splitlines())
            out, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 0, err[-4000:]
        assert killed_at == 1, "the kill came after epoch 2 was saved: lengthen the epochs"
        assert "resumed automatically from checkpoint.pt after epoch 1" in out
        config = json.loads((run / "config.json").read_text())
        (restart,) = config["elastic"]["restarts"]
        assert restart["restart"] == 1 and restart["after_epoch"] == 1
        assert restart["run_id"] == config["elastic"]["run_id"]
        assert [r["epoch"] for r in rows(run)] == list(range(1, EPOCHS + 1))
        assert rows(run) == rows(one_node)
        assert dumps(run) == dumps(one_node)   # the epochs after the restart read the same samples, same weights
        assert json.loads((run / "results.json").read_text())["top1"] == rows(one_node)[-1]["top1"]


class TestWhichJobResumes:
    def folder(self, tmp_path: Path, run_id: str | None) -> Path:
        run = tmp_path / "run"
        run.mkdir()
        (run / "config.json").write_text(json.dumps({"elastic": {"run_id": run_id, "restarts": []}}))
        (run / "metrics.jsonl").write_text('{"epoch": 1}\n')
        return run

    def test_started_by(self, tmp_path):
        """A run folder belongs to the torchrun job named in its config.json, and to no other."""
        run = self.folder(tmp_path, "job-a")
        assert started_by(run, "job-a") and not started_by(run, "job-b")
        assert not started_by(tmp_path / "absent", "job-a")

    def test_another_jobs_run_is_refused(self, tmp_path):
        """Without --training.resume=1 only the job that started a run continues it; another job is refused."""
        run = self.folder(tmp_path, "job-a")
        opts = read_options(["--spec", "P4-MLP", f"--logging.folder={run}"])
        assert check_run_folder(opts, job_id="job-a") == run
        for job in ("job-b", None):
            with pytest.raises(UsageError, match="already holds a run"):
                check_run_folder(opts, job_id=job)
