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


NORM_PLUGIN = textwrap.dedent('''
    import torch
    from torch import nn
    from sdpnet import register_act, register_norm


    class ScaleNorm(nn.Module):
        """g * x / max(||x||, eps) over the channels (dim 1 of images, the last of features and tokens)."""

        def __init__(self, channel_dim, eps):
            super().__init__()
            self.g, self.channel_dim, self.eps = nn.Parameter(torch.ones(1)), channel_dim, eps

        def forward(self, x):
            return self.g * x / x.norm(dim=self.channel_dim, keepdim=True).clamp_min(self.eps)


    @register_norm("scalenorm", doc="ScaleNorm: g * x / ||x|| over the channels, one learnable scalar g")
    def scale_norm(dim, *, channels_first, eps):
        return ScaleNorm(1 if channels_first else -1, eps)


    register_act("mish", doc="Mish: x * tanh(softplus(x))")(nn.Mish)
''')
# the plugin block, the plugin norm in a block keyword and in a hyperparameter's place (ENC's norm), a plugin act
NORM_SPEC = "P4(d=16)-PLUG-POOL(norm=scalenorm)+MLP(act=mish)-ENC(h=2,norm=scalenorm)+CLS1-LIN"


@pytest.fixture
def norm_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_norms.py"
    path.write_text(NORM_PLUGIN)
    return path


def train(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("SDPNET_PLUGINS", None)
    return subprocess.run([sys.executable, "train_ffcv.py", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


def tiny_data(d: Path) -> list[str]:
    return ["-C", "configs/fashion_mnist.yaml", f"--data.train_path={d / 'train.beton'}",
            f"--data.val_path={d / 'val.beton'}", "--data.train_subset=256", "--data.val_subset=100",
            "--data.num_workers=1", "--training.batch_size=64", "--logging.progress=0"]


class TestUserNorm:
    def test_unknown_without_the_plugin(self):
        """Without the plugin, norm=scalenorm is refused in one message naming the known norms."""
        r = sdpnet("parse", "P4-POOL(norm=scalenorm)")
        assert r.returncode == 2 and "norm=scalenorm is not one of bn, ln" in r.stderr, r.stderr

    def test_plugin_norm_in_keywords_and_hparams(self, norm_file, plugin_file):
        """With ``--import my_norms.py`` the norm and the activation are valid in every keyword of their type and
        in the hyperparameters that feed them; the summary builds and runs the model; a typo gets a suggestion."""
        imports = ["--import", str(norm_file), "--import", str(plugin_file)]
        r = sdpnet("summary", *imports, NORM_SPEC, "--set", "conv_norm=scalenorm", "--set", "head_act=mish")
        assert r.returncode == 0, r.stderr
        r = sdpnet("parse", *imports, "P4-POOL(norm=scalenrm)")
        assert r.returncode == 2 and "did you mean scalenorm?" in r.stderr, r.stderr

    def test_listed_by_blocks(self, norm_file):
        """``python -m sdpnet blocks`` lists the plugin's norm and activation with their docs."""
        r = sdpnet("blocks", "--import", str(norm_file))
        assert r.returncode == 0, r.stderr
        assert "scalenorm  ScaleNorm: g * x / ||x||" in r.stdout and "mish       Mish" in r.stdout

    def test_registering_twice_is_an_error(self, norm_file, tmp_path):
        """A second plugin registering ``scalenorm`` (or a built-in name) again fails in one line naming it."""
        again = tmp_path / "again.py"
        again.write_text("from torch import nn\nfrom sdpnet import register_norm\n"
                         "register_norm('rms', doc='mine')(lambda dim, *, channels_first, eps: nn.Identity())\n")
        r = sdpnet("parse", "--import", str(again), "P4")
        assert r.returncode != 0 and "norm 'rms' is already declared" in r.stderr, r.stderr


def test_train_sweep_and_resume_with_plugins(fashion_mnist_betons: Path, tmp_path: Path, norm_file: Path,
                                             plugin_file: Path):
    """A user norm and a plugin block from ``train_ffcv.py --import`` (1 epoch), resumed to 2 epochs with
    ``--training.resume=1`` and no ``--import`` (the run's recorded plugins are loaded again), refused in one line
    once a plugin is gone; and the same spec from ``python -m sdpnet sweep --import``."""
    import json
    data, run = tiny_data(fashion_mnist_betons), tmp_path / "run"
    res = train("--import", str(norm_file), "--import", str(plugin_file), "--spec", NORM_SPEC, *data,
                "--training.epochs=1", f"--logging.folder={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    plugins = [str(norm_file.resolve()), str(plugin_file.resolve())]
    assert json.loads((run / "config.json").read_text())["plugins"] == plugins
    res = train("--spec", NORM_SPEC, *data, "--training.epochs=2", "--training.resume=1",
                "--training.resume_changed=1", f"--logging.folder={run}")
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if "epoch" in r][-1] == 2
    assert json.loads((run / "config.json").read_text())["plugins"] == plugins
    norm_file.rename(tmp_path / "moved.py")
    res = train("--spec", NORM_SPEC, *data, "--training.epochs=3", "--training.resume=1",
                "--training.resume_changed=1", f"--logging.folder={run}")
    assert res.returncode == 2 and "my_norms.py" in res.stderr and res.stderr.strip().count("\n") == 0, res.stderr
    (tmp_path / "moved.py").rename(norm_file)

    out = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "sdpnet", "sweep", "--import", str(norm_file), "--import",
                        str(plugin_file), NORM_SPEC, *data, "--budget.epochs=1", "--out", str(out)],
                       capture_output=True, text=True, cwd=ROOT, timeout=600,
                       env={**{k: v for k, v in os.environ.items() if k != "SDPNET_PLUGINS"}, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    (done,) = [p.parent for p in out.glob("*/results.json")]
    assert json.loads((done / "config.json").read_text())["plugins"] == plugins


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
