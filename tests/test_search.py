"""``python -m sdpnet search``: one real search on Fashion-MNIST (two train_ffcv.py trials, TensorBoard on), and the
study's machinery with tests/data/fake_train.py standing in for the trainer (the same run folder in a fraction of a
second per epoch): pruning, several objectives, resume, a changed space, a worker killed mid-trial, refusals.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from sdpnet.tools.search import SearchSpace
from sdpnet.tools.study import counted, space_difference

REPO = Path(__file__).resolve().parents[1]
FAKE = str(REPO / "tests" / "data" / "fake_train.py")
# one good design (ENC: the fake trains it to 90%), three poor ones (50%)
SPACE = "P4(d=16)+CLS1-{ENC(h=2),DWC3,DWC5,DWC7}-LIN"


def sdpnet_cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m sdpnet ARGS`` from the repository root, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def journal(out: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=out.name, storage=storage)


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory) -> list[str]:
    """Options of a search whose trials run the fake trainer: .beton paths with sidecars (no images needed)."""
    d = tmp_path_factory.mktemp("fake_data")
    for name in ("train", "val"):
        (d / f"{name}.beton").write_bytes(b"")
        (d / f"{name}.beton.json").write_text(json.dumps({"num_classes": 10}))
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={d / 'train.beton'}",
            f"--data.val_path={d / 'val.beton'}", "--script", FAKE, "--quiet"]


@pytest.fixture(scope="module")
def pruned_study(fake_data, tmp_path_factory) -> dict:
    """A grid search over SPACE on a time budget with successive halving, then the same command again."""
    out = tmp_path_factory.mktemp("search") / "prune"
    args = ["search", SPACE, *fake_data, "--sampler", "grid", "--seed", "1", "--pruner", "sha",
            "--budget.minutes=0.05", "--out", str(out)]
    first = sdpnet_cli(*args, env={"FAKE_EPOCH_S": "0.6"})   # the search reads metrics.jsonl every 0.5 s
    again = sdpnet_cli(*args)
    return {"out": out, "args": args, "first": first, "again": again}


@pytest.fixture(scope="module")
def data_args(fashion_mnist_betons: Path) -> list[str]:
    d = fashion_mnist_betons
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={d / 'train.beton'}",
            f"--data.val_path={d / 'val.beton'}", "--data.train_subset=512", "--data.val_subset=200",
            "--data.num_workers=1", "--training.batch_size=64", "--logging.log_interval=4"]


class TestRealSearch:
    def test_fashion_mnist(self, data_args, tmp_path):
        """Two real train_ffcv.py trials (the grid of a template) with TensorBoard on: run folders, the study, the
        leaderboard, and event files whose top-1 is metrics.jsonl's."""
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        out = tmp_path / "real"
        r = sdpnet_cli("search", "P4(d=16)+CLS1-{DWC3+MLP,ENC(h=2)}-LIN", *data_args, "--sampler", "grid",
                       "--budget.epochs=1", "--logging.tensorboard=1", "--quiet", "--out", str(out), timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        study = journal(out)
        assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
        for t in study.trials:
            run = out / t.user_attrs["run"]
            results = json.loads((run / "results.json").read_text())
            assert t.value == results["top1"] and t.intermediate_values == {1: results["top1"]}
            acc = EventAccumulator(str(run))
            acc.Reload()
            assert [(e.step, round(e.value, 5)) for e in acc.Scalars("val/top1")] == [(1, round(results["top1"], 5))]
        assert {t.user_attrs["spec"] for t in study.trials} == {"P4(d=16)+CLS1-DWC3+MLP-LIN",
                                                               "P4(d=16)+CLS1-ENC(h=2)-LIN"}
        assert "best: trial" in r.stdout and (out / "leaderboard.md").is_file() and (out / "pareto.png").is_file()


class TestPruning:
    def test_poor_designs_are_pruned(self, pruned_study):
        """Every design runs once; a poor one behind the good one is stopped at the first rung, its folder marked."""
        r, out = pruned_study["first"], pruned_study["out"]
        assert r.returncode == 0, r.stderr[-3000:]
        trials = journal(out).trials
        states = [t.state for t in trials]
        assert len(trials) == 4 and states.count(optuna.trial.TrialState.PRUNED) >= 1
        best = max((t for t in trials if t.state == optuna.trial.TrialState.COMPLETE), key=lambda t: t.value)
        assert "ENC" in best.user_attrs["spec"] and best.value == pytest.approx(0.9 * (1 - 0.5 ** 4))
        for t in trials:
            folder = out / t.user_attrs["run"]
            if t.state == optuna.trial.TrialState.PRUNED:
                marker = json.loads((folder / "pruned.json").read_text())
                assert marker["trial"] == t.number and not (folder / "results.json").exists()
                assert len((folder / "metrics.jsonl").read_text().splitlines()) < 4
                assert "pruned" in r.stdout and "| pruned |" in (out / "leaderboard.md").read_text()

    def test_time_budget_steps_are_percent(self, pruned_study):
        """On a time budget the steps are percents of the budget; the steps between two epochs carry the earlier
        epoch's value."""
        best = journal(pruned_study["out"]).best_trial
        steps = best.intermediate_values
        assert sorted(steps) == list(range(25, 101))
        assert steps[25] == steps[49] == pytest.approx(0.45) and steps[50] == pytest.approx(0.675)

    def test_rerun_trains_nothing(self, pruned_study):
        """The same command again finds the study finished: nothing starts, the summary and leaderboard are redone."""
        a = pruned_study["again"]
        assert a.returncode == 0, a.stderr[-3000:]
        assert "continuing: 4 of 4" in a.stdout and "start" not in a.stdout and "resume" not in a.stdout
        assert len(journal(pruned_study["out"]).trials) == 4
        assert (pruned_study["out"] / "pareto.png").stat().st_size > 0
        assert len(pd.read_csv(pruned_study["out"] / "trials.csv")) == 4

    def test_changed_space_is_refused(self, pruned_study):
        """Another template, or another recipe, on the same study: one line naming the difference, exit 2."""
        args = [a if a != SPACE else SPACE.replace("DWC7", "DWC9") for a in pruned_study["args"]]
        r = sdpnet_cli(*args)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
        assert "searches another space: the templates:" in r.stderr and "DWC9" in r.stderr
        r = sdpnet_cli(*pruned_study["args"], "--lr.lr=0.01")
        assert r.returncode == 2 and "--lr.lr: 0.003 in the study, 0.01 here" in r.stderr


class TestObjectives:
    def test_nsga2_pareto_front(self, fake_data, tmp_path):
        """Two objectives: NSGA-II, every trial with both values, the Pareto front printed and drawn."""
        out = tmp_path / "mo"
        r = sdpnet_cli("search", "P4(d=16)+CLS1-{ENC(h=2),DWC3}x{1..2}-LIN", *fake_data, "--objectives", "top1,gflops",
                       "--trials", "4", "--seed", "0", "--budget.epochs=2", "--out", str(out),
                       env={"FAKE_EPOCH_S": "0.05"})
        assert r.returncode == 0, r.stderr[-3000:]
        assert "sampler nsga2" in r.stdout and "Pareto front: trial" in r.stdout
        study = journal(out)
        assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == 4 and all(len(t.values) == 2 and t.values[1] > 0 for t in complete)
        assert (out / "pareto.png").stat().st_size > 0

    def test_refusals(self, fake_data, tmp_path):
        """Pruning with two objectives, an unknown objective, a grid over a continuous range: exit 2, nothing made."""
        out = tmp_path / "no"
        r = sdpnet_cli("search", SPACE, *fake_data, "--objectives", "top1,gflops", "--pruner", "median",
                       "--trials", "2", "--out", str(out))
        assert r.returncode == 2 and "Optuna prunes single-objective studies only" in r.stderr
        r = sdpnet_cli("search", SPACE, *fake_data, "--objectives", "top1,speed", "--trials", "2", "--out", str(out))
        assert r.returncode == 2 and "--objectives top1,speed" in r.stderr
        r = sdpnet_cli("search", "P4(d=16)-ENC(r={1.0..4.0})-LIN", *fake_data, "--sampler", "grid", "--out", str(out))
        assert r.returncode == 2 and "is continuous, so the space has no grid" in r.stderr
        assert "  P4(d=16)-ENC(r={1.0..4.0})-LIN" in r.stderr.splitlines()
        r = sdpnet_cli("search", "P4(d={16..}})-ENC-LIN", *fake_data, "--trials", "2", "--out", str(out))
        assert r.returncode == 2 and "has no high end" in r.stderr
        assert not out.exists()


class TestSpace:
    def test_several_sources(self):
        """Several templates: ``design`` chooses one, and only its parameters are asked."""
        space = SearchSpace(["P4-ENCx{1,2}", "P4-DWC{3,7}"], {"lr.lr": "{0.001..0.01:log}"})
        assert [p.name for p in space.params] == ["design", "[1]{1,2}@7", "[2]{3,7}@6", "lr.lr"]
        asked = []

        def pick(p):
            asked.append(p.name)
            return {"design": "P4-DWC{3,7}", "[2]{3,7}@6": "7", "lr.lr": 0.00123456}[p.name]
        design = space.sample(pick)
        assert design.expansion.text == "P4-DWC7" and design.point == {"lr.lr": "0.001235"}
        assert asked == ["design", "lr.lr", "[2]{3,7}@6"] and space.size() is None

    def test_difference_in_words(self):
        """A changed space is named by its first difference."""
        old = {"sources": ["A"], "space": {}, "set": [], "objectives": ["top1"], "options": {"lr.lr": 0.003}}
        assert space_difference(old, old) is None
        new = {**old, "space": {"dim": "{32,64}"}}
        assert space_difference(old, new) == "--space: none in the study, dim={32,64} here"
        assert space_difference(old, {**old, "options": {"lr.lr": 0.01}}) == "--lr.lr: 0.003 in the study, 0.01 here"

    def test_training_option_in_the_space(self, fake_data, tmp_path):
        """--space over a training option: each trial's run gets its value (and its own folder)."""
        out = tmp_path / "lr"
        r = sdpnet_cli("search", "P4(d=16)+CLS1-ENC(h=2)-LIN", *fake_data, "--space", "lr.lr={0.001..0.01:log}",
                       "--trials", "2", "--sampler", "random", "--seed", "0", "--budget.epochs=1", "--out", str(out),
                       env={"FAKE_EPOCH_S": "0.05"})
        assert r.returncode == 0, r.stderr[-3000:]
        trials = journal(out).trials
        assert len({t.user_attrs["run"] for t in trials}) == 2
        for t in trials:
            argv = json.loads((out / t.user_attrs["run"] / "config.json").read_text())["argv"]
            value = t.user_attrs["point"]["lr.lr"]
            assert f"--lr.lr={value}" in argv and float(value) == pytest.approx(t.params["lr.lr"], rel=1e-3)


class TestKilled:
    def test_killed_worker_is_retried(self, fake_data, tmp_path):
        """SIGKILL of the search mid-trial: the same command fails the dead trial, retries its design from the
        run's checkpoint, keeps every finished trial and finishes the study."""
        out = tmp_path / "kill"
        args = ["search", SPACE, *fake_data, "--trials", "3", "--sampler", "grid", "--seed", "0",
                "--budget.epochs=3", "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": str(REPO), "FAKE_EPOCH_S": "0.5"}
        proc = subprocess.Popen([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:   # the second trial has saved an epoch
                study = journal(out) if (out / "study.journal").exists() else None
                if study and len(study.trials) >= 2 and study.trials[1].state == optuna.trial.TrialState.RUNNING:
                    run = out / study.trials[1].user_attrs.get("run", "?")
                    if (run / "checkpoint.pt").exists():
                        break
                time.sleep(0.1)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
        before = journal(out).trials
        assert [t.state for t in before[:2]] == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING]
        r = sdpnet_cli(*args)
        assert r.returncode == 0, r.stderr[-3000:]
        trials = journal(out).trials
        assert trials[0].state == optuna.trial.TrialState.COMPLETE and trials[0].value == before[0].value
        assert trials[1].state == optuna.trial.TrialState.FAIL and "error" not in trials[1].user_attrs
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
        assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
        assert retry[0].params == trials[1].params and f"[trial {retry[0].number}] resume after epoch" in r.stdout
        assert counted(trials) == 3 and "its worker" in r.stdout
