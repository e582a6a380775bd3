"""Plugins: a user's module named by ``--import``, ``SDPNET_PLUGINS`` or an installed ``sdpnet.plugins`` entry
point registers a block that every ``python -m sdpnet`` subcommand can then name. Each case runs in a
subprocess, so the plugin's blocks never join this process's registry."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PLUGIN = textwrap.dedent('''
    from torch import nn
    from sdpnet.registry import register_block, Param

    @register_block("PLUG", kind="layer", roles=("body",), params=(Param("eps", "eps", float, default=1e-6),))
    class Plug(nn.Module):
        def __init__(self, in_dim, eps=1e-6):
            super().__init__()
            self.norm = nn.GroupNorm(1, in_dim, eps=eps)

        def forward(self, x):
            return x + self.norm(x)
''')
SPEC = "P16-PLUG-ENC+CLS5"


def sdpnet(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full.pop("SDPNET_PLUGINS", None) if "SDPNET_PLUGINS" not in (env or {}) else None
    return subprocess.run([sys.executable, "-m", "sdpnet", *args], capture_output=True, text=True, env=full,
                          cwd=ROOT, timeout=120)


@pytest.fixture
def plugin_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_blocks.py"
    path.write_text(PLUGIN)
    return path


class TestImport:
    def test_without_plugin_the_block_is_unknown(self):
        """Without the plugin the spec is refused (nothing imports the user's module)."""
        assert sdpnet("parse", SPEC).returncode == 2

    def test_file(self, plugin_file):
        """``--import FILE.py`` loads a plain file before the subcommand runs."""
        r = sdpnet("parse", "--import", str(plugin_file), SPEC)
        assert r.returncode == 0, r.stderr
        assert "PLUG" in r.stdout

    def test_module(self, plugin_file):
        """``--import MODULE`` imports a module found on the path."""
        r = sdpnet("parse", "--import", "my_blocks", SPEC, env={"PYTHONPATH": f"{ROOT}{os.pathsep}{plugin_file.parent}"})
        assert r.returncode == 0, r.stderr

    def test_env(self, plugin_file):
        """``SDPNET_PLUGINS`` names plugins for every command."""
        r = sdpnet("parse", SPEC, env={"SDPNET_PLUGINS": str(plugin_file)})
        assert r.returncode == 0, r.stderr

    def test_missing_module_one_line(self):
        """A missing plugin module is one error line naming it, exit 2."""
        r = sdpnet("parse", "--import", "no_such_plugin_xyz", SPEC)
        assert r.returncode == 2
        assert r.stderr.strip().count("\n") == 0 and "no_such_plugin_xyz" in r.stderr

    def test_missing_file_one_line(self, tmp_path):
        """A missing plugin file is one error line naming it, exit 2."""
        r = sdpnet("parse", "--import", str(tmp_path / "gone.py"), SPEC)
        assert r.returncode == 2 and "gone.py" in r.stderr and r.stderr.strip().count("\n") == 0


def test_installed_entry_point(tmp_path):
    """A package installed with pip that declares an ``sdpnet.plugins`` entry point is loaded automatically."""
    pkg = tmp_path / "pkg"
    (pkg / "sdpnet_plug_demo").mkdir(parents=True)
    (pkg / "sdpnet_plug_demo" / "__init__.py").write_text(PLUGIN)
    (pkg / "pyproject.toml").write_text(textwrap.dedent('''
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "sdpnet-plug-demo"
        version = "0.1"

        [project.entry-points."sdpnet.plugins"]
        demo = "sdpnet_plug_demo"
    '''))
    site = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(site), str(pkg)], capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot build here: {pip.stderr[-300:]}")
    r = sdpnet("parse", SPEC, env={"PYTHONPATH": f"{ROOT}{os.pathsep}{site}"})
    assert r.returncode == 0, r.stderr


def test_train_records_and_evaluate_reloads(fashion_mnist_betons: Path, tmp_path: Path, plugin_file: Path):
    """``train_ffcv.py --import FILE`` trains a spec naming the plugin's block and records it in config.json;
    ``evaluate`` loads it again from the record, and says in one line which plugin is missing once it is gone."""
    import json
    d, run = fashion_mnist_betons, tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SDPNET_PLUGINS", None)
    res = subprocess.run([sys.executable, "train_ffcv.py", "--import", str(plugin_file), "--spec",
                          "P4(d=16)-PLUG-ENC+CLS5", "-C", "configs/fashion_mnist.yaml",
                          f"--data.train_path={d / 'train.beton'}", f"--data.val_path={d / 'val.beton'}",
                          "--data.train_subset=256", "--data.val_subset=128", "--training.epochs=1",
                          "--logging.progress=0", f"--logging.folder={run}"],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((run / "config.json").read_text())["plugins"] == [str(plugin_file.resolve())]
    r = sdpnet("evaluate", str(run))
    assert r.returncode == 0, r.stderr
    plugin_file.unlink()
    r = sdpnet("evaluate", str(run))
    assert r.returncode == 2 and "my_blocks.py" in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr


TEMPLATE = "P4(d=16)-PLUGx{1,2}-ENC(h=2)+CLS5"   # both designs of the grid name the plugin's block


def tiny_trials(betons: Path) -> list[str]:
    """Options of tiny real train_ffcv.py trials on Fashion-MNIST (a few seconds of training each)."""
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={betons / 'train.beton'}",
            f"--data.val_path={betons / 'val.beton'}", "--data.train_subset=128", "--data.val_subset=64",
            "--training.batch_size=64", "--budget.epochs=1", "--quiet"]


def assert_trained_with_plugin(run: Path, plugin_file: Path) -> None:
    """The run folder records the plugin and a finished training of a spec naming its block."""
    import json
    assert json.loads((run / "config.json").read_text())["plugins"] == [str(plugin_file.resolve())]
    assert "PLUG" in json.loads((run / "spec.json").read_text())["canonical"]
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 1 and 0.0 <= results["top1"] <= 1.0


def test_search_passes_plugins_to_trials(fashion_mnist_betons: Path, tmp_path: Path, plugin_file: Path):
    """``search --import FILE``: the search checks a template naming the plugin's block, and every trial (a
    train_ffcv.py process) loads the plugin, trains, and records it in its config.json."""
    import optuna
    out = tmp_path / "search"
    r = subprocess.run([sys.executable, "-m", "sdpnet", "search", "--import", str(plugin_file), TEMPLATE,
                        *tiny_trials(fashion_mnist_betons), "--sampler", "grid", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={k: v for k, v in {**os.environ, "PYTHONPATH": str(ROOT)}.items() if k != "SDPNET_PLUGINS"})
    assert r.returncode == 0, r.stderr[-3000:]
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))
    trials = optuna.load_study(study_name="search", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert {t.user_attrs["spec"] for t in trials} == {"P4(d=16)-PLUG-ENC(h=2)+CLS5", "P4(d=16)-PLUGx2-ENC(h=2)+CLS5"}
    for t in trials:
        assert_trained_with_plugin(out / t.user_attrs["run"], plugin_file)


def test_sweep_passes_plugins_to_runs(fashion_mnist_betons: Path, tmp_path: Path, plugin_file: Path):
    """``sweep --import FILE``: every run of a template naming the plugin's block loads it, trains, and records it."""
    out = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "sdpnet", "sweep", "--import", str(plugin_file), TEMPLATE,
                        *tiny_trials(fashion_mnist_betons), "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=900,
                       env={k: v for k, v in {**os.environ, "PYTHONPATH": str(ROOT)}.items() if k != "SDPNET_PLUGINS"})
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted(p.parent for p in out.glob("*/config.json"))
    assert len(runs) == 2
    for run in runs:
        assert_trained_with_plugin(run, plugin_file)
