"""``python -m sdpnet search`` on Fashion-MNIST, every trial a real ``train_ffcv.py`` run on a small subset: a grid
with TensorBoard on, pruning on a time budget, resume and a changed space, several objectives, a training option
in the space, a search killed mid-trial, refusals.
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest

from sdpnet.files import read_jsonl
from sdpnet.tools.search import SearchSpace
from sdpnet.tools.study import counted, space_difference

REPO = Path(__file__).resolve().parents[1]
SPACE = "P4(d=16)+CLS1-{ENC(h=2),DWC3,DWC5,DWC7}-LIN"
# pruning: one design, a recipe that learns and one that cannot (peak lr 1e-5, the schedule's floor: the model stays
# near chance)
PRUNE_SPACE = ["P4(d=16)+CLS1-ENC(h=2)-LIN", "--space", "lr.lr={0.003,0.00001}"]


def sdpnet_cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m sdpnet ARGS`` from the repository root, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def journal(out: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    return optuna.load_study(study_name=out.name, storage=storage)


def training_in(folder: Path) -> bool:
    """Whether a process of this machine is training into ``folder`` (its command line names it)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if str(folder).encode() in cmdline.read_bytes():
                return True
        except OSError:   # the process ended meanwhile
            pass
    return False


@pytest.fixture(scope="module")
def data_args(fashion_mnist_betons: Path) -> list[str]:
    """The demo recipe on a small subset of Fashion-MNIST (a second or two per epoch of a tiny design)."""
    d = fashion_mnist_betons
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={d / 'train.beton'}",
            f"--data.val_path={d / 'val.beton'}", "--data.train_subset=512", "--data.val_subset=200",
            "--data.num_workers=1", "--training.batch_size=64", "--logging.log_interval=4"]


@pytest.fixture(scope="module")
def pruned_study(data_args, tmp_path_factory) -> dict:
    """A grid search on an 18-s time budget with successive halving (the recipe that learns first: seed 1), then
    the same command again."""
    out = tmp_path_factory.mktemp("search") / "prune"
    args = ["search", *PRUNE_SPACE, *data_args, "--data.train_subset=1024", "--sampler", "grid", "--seed", "1",
            "--pruner", "sha", "--budget.minutes=0.3", "--quiet", "--out", str(out)]
    first = sdpnet_cli(*args)
    again = sdpnet_cli(*args)
    return {"out": out, "args": args, "first": first, "again": again}


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
    def test_poor_design_is_pruned(self, pruned_study):
        """The recipe that cannot learn, behind the one that does at the first rung, is stopped there: its trial
        PRUNED, its folder marked and left without results, the leaderboard showing it pruned."""
        r, out = pruned_study["first"], pruned_study["out"]
        assert r.returncode == 0, r.stderr[-3000:]
        good, poor = journal(out).trials
        assert good.params["lr.lr"] == "0.003", "the grid's order under seed 1 changed: pick the seed again"
        assert good.state == optuna.trial.TrialState.COMPLETE and good.value > 0.2
        assert poor.state == optuna.trial.TrialState.PRUNED
        folder = out / poor.user_attrs["run"]
        marker = json.loads((folder / "pruned.json").read_text())
        assert marker["trial"] == poor.number and marker["pruner"] == "sha" and not (folder / "results.json").exists()
        rows = read_jsonl(folder / "metrics.jsonl")
        assert rows[-1]["progress"] < 1 and marker["top1"] == rows[-1]["top1"] < good.value
        assert f"[trial 1] pruned {poor.user_attrs['run']}" in r.stdout
        assert "| pruned |" in (out / "leaderboard.md").read_text()

    def test_time_budget_steps_are_percent(self, pruned_study):
        """On a time budget the steps are the percents of the budget spent at each epoch; the steps between two
        epochs carry the earlier epoch's top-1, up to 100."""
        best = journal(pruned_study["out"]).best_trial
        rows = read_jsonl(pruned_study["out"] / best.user_attrs["run"] / "metrics.jsonl")
        assert len(rows) >= 2 and rows[-1]["progress"] == pytest.approx(1.0, abs=0.01)
        expected, prev = {}, None   # a step takes the value of the first epoch to reach it
        for row in rows:
            step = min(100, math.floor(100 * row["progress"] + 1e-9))
            for s in range(prev[0] + 1, step) if prev else ():
                expected.setdefault(s, prev[1])
            expected.setdefault(step, row["top1"])
            prev = (step, row["top1"])
        assert best.intermediate_values == expected and max(expected) == 100, (
            f"reported {best.intermediate_values}, rows {[(r['epoch'], r['progress'], r['top1']) for r in rows]}")

    def test_rerun_trains_nothing(self, pruned_study):
        """The same command again finds the study finished: nothing starts, the summary and leaderboard are redone."""
        a = pruned_study["again"]
        assert a.returncode == 0, a.stderr[-3000:]
        assert "continuing: 2 of 2" in a.stdout and "start" not in a.stdout and "resume" not in a.stdout
        assert len(journal(pruned_study["out"]).trials) == 2
        assert (pruned_study["out"] / "pareto.png").stat().st_size > 0
        assert len(pd.read_csv(pruned_study["out"] / "trials.csv")) == 2

    def test_changed_space_is_refused(self, pruned_study):
        """Another template, or another recipe, on the same study: one line naming the difference, exit 2."""
        args = [a if a != PRUNE_SPACE[0] else a.replace("ENC(h=2)", "ENC(h=4)") for a in pruned_study["args"]]
        r = sdpnet_cli(*args)
        assert r.returncode == 2 and len(r.stderr.splitlines()) == 1
        assert "searches another space: the templates:" in r.stderr and "ENC(h=4)" in r.stderr
        r = sdpnet_cli(*pruned_study["args"], "--lr.base_lr=0.002")
        assert r.returncode == 2 and "--lr.base_lr: 0.001 in the study, 0.002 here" in r.stderr


class TestObjectives:
    def test_nsga2_pareto_front(self, data_args, tmp_path):
        """Two objectives: NSGA-II, every trial with both values, the Pareto front printed and drawn."""
        out = tmp_path / "mo"
        r = sdpnet_cli("search", "P4(d=16)+CLS1-{ENC(h=2),DWC3}x{1..2}-LIN", *data_args, "--objectives", "top1,gflops",
                       "--trials", "3", "--seed", "0", "--budget.epochs=1", "--quiet", "--out", str(out))
        assert r.returncode == 0, r.stderr[-3000:]
        assert "sampler nsga2" in r.stdout and "Pareto front: trial" in r.stdout
        study = journal(out)
        assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        assert len(complete) == 3
        for t in complete:
            results = json.loads((out / t.user_attrs["run"] / "results.json").read_text())
            assert t.values == [results["top1"], pytest.approx(results["flops"] / 1e9)]
        assert (out / "pareto.png").stat().st_size > 0

    def test_refusals(self, data_args, tmp_path):
        """Pruning with two objectives, an unknown objective, a grid over a continuous range: exit 2, nothing made."""
        out = tmp_path / "no"
        r = sdpnet_cli("search", SPACE, *data_args, "--objectives", "top1,gflops", "--pruner", "median",
                       "--trials", "2", "--out", str(out))
        assert r.returncode == 2 and "Optuna prunes single-objective studies only" in r.stderr
        r = sdpnet_cli("search", SPACE, *data_args, "--objectives", "top1,speed", "--trials", "2", "--out", str(out))
        assert r.returncode == 2 and "--objectives top1,speed" in r.stderr
        r = sdpnet_cli("search", "P4(d=16)-ENC(r={1.0..4.0})-LIN", *data_args, "--sampler", "grid", "--out", str(out))
        assert r.returncode == 2 and "is continuous, so the space has no grid" in r.stderr
        assert "  P4(d=16)-ENC(r={1.0..4.0})-LIN" in r.stderr.splitlines()
        r = sdpnet_cli("search", "P4(d={16..}})-ENC-LIN", *data_args, "--trials", "2", "--out", str(out))
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

    def test_training_option_in_the_space(self, data_args, tmp_path):
        """--space over a training option: each trial's run gets its value (and its own folder)."""
        out = tmp_path / "lr"
        r = sdpnet_cli("search", "P4(d=16)+CLS1-ENC(h=2)-LIN", *data_args, "--space", "lr.lr={0.001..0.01:log}",
                       "--trials", "2", "--sampler", "random", "--seed", "0", "--budget.epochs=1", "--quiet",
                       "--out", str(out))
        assert r.returncode == 0, r.stderr[-3000:]
        trials = journal(out).trials
        assert len({t.user_attrs["run"] for t in trials}) == 2
        for t in trials:
            config = json.loads((out / t.user_attrs["run"] / "config.json").read_text())
            value = t.user_attrs["point"]["lr.lr"]
            assert float(value) == pytest.approx(t.params["lr.lr"], rel=1e-3)
            assert config["lr"]["lr"] == float(value) and config["peak_lr"] == pytest.approx(float(value))


class TestKilled:
    def test_killed_worker_is_retried(self, data_args, tmp_path):
        """SIGKILL of the search mid-trial (its run has saved an epoch): the same command fails the dead trial,
        retries its design from the run's checkpoint, keeps every finished trial and finishes the study."""
        out = tmp_path / "kill"
        args = ["search", SPACE, *data_args, "--trials", "2", "--sampler", "grid", "--seed", "0",
                "--budget.epochs=4", "--quiet", "--out", str(out)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "sdpnet", *args], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:   # the second trial has saved an epoch
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
        killed_run = out / before[1].user_attrs["run"]
        deadline = time.monotonic() + 60   # its run ends too (SIGTERM when its parent dies)
        while training_in(killed_run) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not (killed_run / "results.json").exists()
        r = sdpnet_cli(*args)
        assert r.returncode == 0, r.stderr[-3000:]
        trials = journal(out).trials
        assert trials[0].state == optuna.trial.TrialState.COMPLETE and trials[0].value == before[0].value
        assert trials[1].state == optuna.trial.TrialState.FAIL and "error" not in trials[1].user_attrs
        retry = [t for t in trials if t.system_attrs.get("failed_trial") == 1]
        assert len(retry) == 1 and retry[0].state == optuna.trial.TrialState.COMPLETE
        assert retry[0].params == trials[1].params and f"[trial {retry[0].number}] resume after epoch" in r.stdout
        assert counted(trials) == 2 and "its worker" in r.stdout
        results = json.loads((killed_run / "results.json").read_text())
        assert retry[0].value == results["top1"] and results["epochs"] == 4
