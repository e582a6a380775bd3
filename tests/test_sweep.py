"""``python -m sdpnet sweep`` and ``compare`` end to end: real train_ffcv.py runs on a Fashion-MNIST subset.

One sweep of a tiny spec (3 epochs) is killed with SIGKILL after its first saved epoch, run again (it
resumes the run from the checkpoint) and run a third time (the finished run is skipped); the leaderboard
is then read from the run folder. One run on a time budget checks the budget's records.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sdpnet.tools.compare import find_runs, leaderboard, pareto_front, read_run
from sdpnet.tools.sweep import grid_points, SweepError

REPO = Path(__file__).resolve().parents[1]
TINY = "P4(d=16)+CLS1-DWC3+MLP,ENC(h=2)-LIN"
BUDGET_MIN = 0.2


def sdpnet_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m sdpnet ARGS`` from the repository root, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
    return subprocess.run([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def data_args(fashion_mnist_betons: Path) -> list[str]:
    d = fashion_mnist_betons
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={d / 'train.beton'}",
            f"--data.val_path={d / 'val.beton'}", "--data.train_subset=512", "--data.val_subset=200",
            "--data.num_workers=1", "--training.batch_size=64", "--logging.log_interval=4"]


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[-1].startswith("Z"))


@pytest.fixture(scope="module")
def killed_and_resumed(data_args, tmp_path_factory) -> dict:
    """A one-run sweep SIGKILLed after its first checkpoint, then the same command twice more."""
    out = tmp_path_factory.mktemp("sweep") / "sw"
    args = ["sweep", TINY, *data_args, "--budget.epochs=3", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    run = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            runs = [p for p in out.glob("*/checkpoint.pt")] if out.exists() else []
            if runs:
                run = runs[0].parent
                break
            time.sleep(0.05)
        assert run is not None, "the sweep saved no epoch in time"
        child = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert child, "the run was not a child process of the sweep"
    gone = time.monotonic() + 60
    while any(_alive(c) for c in child) and time.monotonic() < gone:
        time.sleep(0.1)
    killed = {"orphans": [c for c in child if _alive(c)], "results": (run / "results.json").exists(),
              "epochs": len((run / "metrics.jsonl").read_text().splitlines())}
    resumed = sdpnet_cli(*args)
    again = sdpnet_cli(*args)
    return {"out": out, "run": run, "killed": killed, "resumed": resumed, "again": again}


class TestSweepResume:
    def test_kill_leaves_a_partial_run_and_no_orphan(self, killed_and_resumed):
        """SIGKILL of the sweep also ends its run (no orphan trains on); the saved epoch stays, unfinished."""
        k = killed_and_resumed["killed"]
        assert k["orphans"] == [] and not k["results"] and k["epochs"] >= 1

    def test_second_sweep_resumes_from_checkpoint(self, killed_and_resumed):
        """The same command resumes the run after its saved epoch and finishes it."""
        r, run = killed_and_resumed["resumed"], killed_and_resumed["run"]
        assert r.returncode == 0, r.stderr[-3000:]
        assert f"resume after epoch {killed_and_resumed['killed']['epochs']} {run.name}" in r.stdout
        assert "resuming after epoch" in (run / "train.log").read_text()
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["epoch"] for r in rows] == list(range(1, len(rows) + 1))
        assert (run / "results.json").is_file()

    def test_third_sweep_skips_finished_run(self, killed_and_resumed):
        """A finished run is skipped: nothing trains, and the leaderboard is written."""
        a, out = killed_and_resumed["again"], killed_and_resumed["out"]
        assert a.returncode == 0, a.stderr[-3000:]
        assert "skip" in a.stdout and "start" not in a.stdout and "resume after" not in a.stdout
        assert "0 run(s) trained, 1 already done" in a.stdout
        for name in ("leaderboard.csv", "leaderboard.md", "pareto.png", "curves.png"):
            assert (out / name).stat().st_size > 0

    def test_run_records_budget_and_cost(self, data_args, tmp_path):
        """A run on a time budget trains until the time is spent (lr laid over it, ending near eta_min) and
        records its cost."""
        run = tmp_path / "budget"
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        res = subprocess.run([sys.executable, str(REPO / "train_ffcv.py"), "--spec", TINY, *data_args,
                              f"--budget.minutes={BUDGET_MIN}", f"--logging.folder={run}", "--logging.progress=0"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        results = json.loads((run / "results.json").read_text())
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert results["budget_s"] == pytest.approx(60 * BUDGET_MIN)
        assert results["budget_s"] <= results["budget_time_s"] < results["budget_s"] + 10
        assert results["flops"] > 0 and results["params"] > 0 and results["img_per_s"] > 0
        assert results["peak_mem_mib"] > 0
        assert rows[-1]["progress"] == pytest.approx(1.0)
        assert all(a["progress"] < b["progress"] for a, b in zip(rows, rows[1:]))
        config = json.loads((run / "config.json").read_text())
        assert rows[-1]["lr"] < 0.05 * config["peak_lr"]   # the cosine has run out with the budget

    def test_folder_name_is_label_and_hash(self, killed_and_resumed):
        """The run folder is a readable name plus 8 hex digits; sweep.json lists the run and each command."""
        run, out = killed_and_resumed["run"], killed_and_resumed["out"]
        label, _, key = run.name.rpartition("-")
        assert label.startswith("P4d16") and len(key) == 8 and int(key, 16) >= 0
        manifest = json.loads((out / "sweep.json").read_text())
        assert manifest["runs"][run.name]["spec"] == TINY and len(manifest["commands"]) == 3


class TestCompare:
    def test_reads_run_folders(self, killed_and_resumed):
        """A row per run from its own files: the canonical spec, cost, time and accuracies."""
        run = killed_and_resumed["run"]
        row = read_run(run, target=0.05)
        results = json.loads((run / "results.json").read_text())
        assert row["spec"] == TINY and row["done"] and row["params"] == results["params"]
        assert row["gflops"] == pytest.approx(results["flops"] / 1e9)
        assert row["top1"] == results["top1"] and row["best_top1"] >= results["top1"]
        assert 0 < row["time_to_target"] <= row["train_s"]

    def test_counts_flops_of_runs_without_them(self, killed_and_resumed, tmp_path):
        """A run folder that records no FLOPs (not made by this sweep) has them counted from its spec.json."""
        run = killed_and_resumed["run"]
        other = tmp_path / "runs" / "old"
        shutil.copytree(run, other)
        results = json.loads((other / "results.json").read_text())
        flops = results.pop("flops")
        (other / "results.json").write_text(json.dumps(results))
        assert find_runs([tmp_path / "runs"]) == [other]
        assert read_run(other)["gflops"] == pytest.approx(flops / 1e9)

    def test_cli_tables_and_plots(self, killed_and_resumed, tmp_path):
        """compare on run folders prints the table and writes CSV, Markdown and both plots."""
        run = killed_and_resumed["run"]
        res = sdpnet_cli("compare", str(run), "--target", "0.05", "--out", str(tmp_path / "cmp"))
        assert res.returncode == 0, res.stderr[-3000:]
        df = pd.read_csv(tmp_path / "cmp" / "leaderboard.csv")
        assert list(df["spec"]) == [TINY] and "time_to_target" in df
        md = (tmp_path / "cmp" / "leaderboard.md").read_text()
        assert f"`{TINY}`" in md and "s to 5%" in md
        assert (tmp_path / "cmp" / "pareto.png").stat().st_size > 0 and (tmp_path / "cmp" / "curves.png").exists()

    def test_not_a_run_exits_2(self, tmp_path):
        res = sdpnet_cli("compare", str(tmp_path))
        assert res.returncode == 2 and "holds no training run" in res.stderr


class TestPareto:
    def test_front(self):
        """Dominated points are off the front; the front is ordered by cost."""
        cost, score = [1, 2, 3, 4, 2.5], [50, 60, 55, 70, 60]
        assert pareto_front(cost, score) == [0, 1, 3]

    def test_sorting(self, killed_and_resumed, tmp_path):
        """The leaderboard is sorted by the chosen accuracy, best first."""
        run = killed_and_resumed["run"]
        worse = tmp_path / "worse"
        shutil.copytree(run, worse)
        results = json.loads((worse / "results.json").read_text())
        results["top1"] = results["top1"] / 2
        (worse / "results.json").write_text(json.dumps(results))
        df = leaderboard([worse, run])
        assert list(df["run"]) == [run.name, "worse"]


class TestRefusals:
    def test_bad_specs_exit_2_before_anything(self, data_args, tmp_path):
        """Every spec that does not parse is reported with its caret; nothing is created."""
        out = tmp_path / "sw"
        res = sdpnet_cli("sweep", "P4-ENCC", "P4-DWC7x{2,", TINY, *data_args, "--out", str(out))
        assert res.returncode == 2
        assert "unknown block 'ENCC'" in res.stderr and "unclosed '{'" in res.stderr
        lines = res.stderr.splitlines()
        assert "  P4-ENCC" in lines and "     ^^^^" in lines
        assert not out.exists()

    def test_resolve_and_option_errors_exit_2(self, data_args, tmp_path):
        """Specs that fail to resolve with the run's data, and bad grid options, stop the sweep before any run."""
        out = tmp_path / "sw"
        res = sdpnet_cli("sweep", "P4(d=30)-ENC(h={2,4})-LIN", *data_args, "--out", str(out))
        assert res.returncode == 2 and "not divisible by h=4" in res.stderr and not out.exists()
        res = sdpnet_cli("sweep", TINY, *data_args, "--grid", "lr.lrr=0.1,0.2", "--out", str(out))
        assert res.returncode == 2 and "did you mean 'lr.lr'" in res.stderr and not out.exists()

    def test_schedule_length_on_a_time_budget(self, data_args, tmp_path):
        """With --budget.minutes, --training.epochs is the schedule's length and passes to every run; with
        --budget.epochs the two are refused together (exit 2, one line)."""
        res = sdpnet_cli("sweep", TINY, *data_args, "--budget.minutes=0.5", "--training.epochs=3", "--dry-run",
                         "--out", str(tmp_path / "sw"))
        assert res.returncode == 0, res.stderr
        res = sdpnet_cli("sweep", TINY, *data_args, "--budget.epochs=1", "--training.epochs=3", "--out",
                         str(tmp_path / "sw"))
        assert res.returncode == 2 and len(res.stderr.splitlines()) == 1
        assert "give --budget.epochs or --training.epochs, not both" in res.stderr and not (tmp_path / "sw").exists()

    def test_grid_points(self):
        assert grid_points(["lr.lr=1,2", "dim=8,16"]) == [
            {"lr.lr": "1", "dim": "8"}, {"lr.lr": "1", "dim": "16"}, {"lr.lr": "2", "dim": "8"},
            {"lr.lr": "2", "dim": "16"}]
        with pytest.raises(SweepError, match="no empty value"):
            grid_points(["lr.lr=1,"])
        with pytest.raises(SweepError, match="sets logging.folder itself"):
            grid_points(["logging.folder=a,b"])
