"""Presets by name from anywhere: ``sdpnet.build("sdpnet_xl")``, ``sdpnet.list_models``, ``python -m sdpnet summary
sdpnet_xxs`` and ``timm.create_model`` from any directory, in either import order, and from a regular install of a
built wheel (which carries ``specs/`` as package data)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
import torch

import sdpnet
from sdpnet.spec import presets
from sdpnet.models.builder import count_params
from sdpnet.spec import SpecError

REPO = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted(REPO.glob("specs/*.json")) + sorted(REPO.glob("specs/zoo/*.json"))


def run(args: list[str], cwd: Path, python: str = sys.executable, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python *args`` in ``cwd`` with a clean environment (no PYTHONPATH), as a user would run it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "2"
    return subprocess.run([python, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def meta_count(spec: str | Path) -> int:
    with torch.device("meta"):
        return count_params(sdpnet.build(spec))


class TestByName:
    def test_every_spec_file_is_a_preset(self) -> None:
        """Each spec file is listed under its name with the sdpnet_ prefix, and loads by that name."""
        index = presets.presets()
        assert sorted(index.values()) == sorted(SPEC_FILES)
        for path in SPEC_FILES:
            name = presets.preset_name(json.loads(path.read_text())["name"])
            assert index[name] == path
            assert sdpnet.load_spec(name) == sdpnet.load_spec(path)
        assert meta_count("sdpnet_xxs") == meta_count(REPO / "specs" / "xxs.json")

    def test_list_models(self) -> None:
        """list_models takes fnmatch patterns, as timm.list_models does."""
        assert sdpnet.list_models("sdpnet_v1*") == ["sdpnet_v1_l", "sdpnet_v1_xl", "sdpnet_v1_xxl"]
        assert sdpnet.list_models() == sorted(presets.presets())
        assert "sdpnet_vit_cifar" in sdpnet.list_models("*vit*") and sdpnet.list_models("nothing*") == []

    def test_unknown_name(self) -> None:
        """A name that is no preset is a SpecError naming the nearest preset."""
        with pytest.raises(SpecError, match="no preset named 'sdpnet_xll'") as e:
            sdpnet.build("sdpnet_xll")
        assert "did you mean sdpnet_xl?" in str(e.value.hint)

    def test_overrides_and_source(self) -> None:
        """Overrides apply to a preset built by name; the model's spec remembers the file."""
        with torch.device("meta"):
            model = sdpnet.build("sdpnet_xxs", num_classes=10, dim=64, heads=2)
        assert model.num_classes == 10 and model.embed_dim == 64
        assert Path(model.model_spec.source) == presets.preset_path("sdpnet_xxs")

    def test_from_another_directory(self, tmp_path: Path) -> None:
        """From a directory outside the repository: build by name, the parse CLI and the summary CLI."""
        res = run(["-c", "import sdpnet, torch\n"
                  "with torch.device('meta'):\n"
                  "    m = sdpnet.build('sdpnet_xl')\n"
                   "print(sum(p.numel() for p in m.parameters()))"], tmp_path)
        assert res.returncode == 0, res.stderr
        assert int(res.stdout) == meta_count(REPO / "specs" / "xl.json")
        res = run(["-m", "sdpnet", "summary", "sdpnet_xxs", "--res", "64"], tmp_path)
        assert res.returncode == 0, res.stderr
        assert f"params: {meta_count(REPO / 'specs' / 'xxs.json'):,}" in res.stdout
        res = run(["-m", "sdpnet", "parse", "sdpnet_fashion_mnist"], tmp_path)
        assert res.returncode == 0 and res.stdout.startswith(json.loads((REPO / "specs" / "fashion_mnist.json").read_text())["arch"]), \
            res.stderr

    def test_pyproject_lists_every_package(self) -> None:
        """pyproject.toml names the packages explicitly (to map sdpnet.specs to specs/): none is left out."""
        config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
        found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "sdpnet").rglob("__init__.py")}
        assert found | {"sdpnet.specs", "sdpnet.specs.zoo"} == set(config["packages"])
        assert config["package-dir"] == {"sdpnet.specs": "specs", "sdpnet.specs.zoo": "specs/zoo"}


@pytest.mark.parametrize("imports", ["import sdpnet\nimport timm", "import timm\nimport sdpnet",
                                     "import sdpnet.models.builder\nimport timm", "import timm\nimport sdpnet.models.builder",
                                     "import sdpnet\nsdpnet.register_timm()", "import sdpnet.models.timm_models"])
def test_timm_registration_either_order(imports: str, tmp_path: Path) -> None:
    """Importing sdpnet (or any of its modules) and timm in either order, or calling sdpnet.register_timm() before
    timm is imported, registers every preset with timm, without a warning."""
    pytest.importorskip("timm")
    res = run(["-c", f"{imports}\nimport timm, torch, sdpnet\n"
               "m = timm.create_model('sdpnet_vit_cifar', device='meta')\n"
               "print(type(m).__name__, sorted(timm.list_models('sdpnet_*')) == sdpnet.list_models())"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["SpecNet", "True"]
    assert "could not register" not in res.stderr, res.stderr


def test_import_sdpnet_stays_torch_free(tmp_path: Path) -> None:
    """``import sdpnet`` (and listing presets) imports neither torch nor timm."""
    res = run(["-c", "import sys, sdpnet\nsdpnet.list_models()\nsdpnet.load_spec('sdpnet_xl')\n"
               "print('torch' in sys.modules, 'timm' in sys.modules)"], tmp_path)
    assert res.returncode == 0 and res.stdout.split() == ["False", "False"], res.stderr


def test_wheel_install(tmp_path: Path) -> None:
    """A wheel built from the source ships the presets: installed (not editable) into a fresh virtualenv that
    reuses this one's packages, sdpnet builds every preset by name from a temporary directory, the summary
    CLI runs there, and timm.create_model finds the presets."""
    pytest.importorskip("timm")
    src = tmp_path / "src"
    for name in ("sdpnet", "specs"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    res = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(wheels), str(src)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    (wheel,) = wheels.glob("sdpnet-*.whl")
    with zipfile.ZipFile(wheel) as z:   # FFCV is an extra: a plain install never tries to build it
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert "Provides-Extra: ffcv" in meta.splitlines()
    assert {r for r in requires if r.split(";")[0].strip() in ("ffcv", "numba")} == \
        {'ffcv; extra == "ffcv"', 'numba; extra == "ffcv"'}, requires

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = str(venv / "bin" / "python")
    res = run(["-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path, python)
    site = Path(res.stdout.strip())
    (site / "reuse-torch.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # torch, timm, pip from here
    res = subprocess.run([python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q",
                          str(wheel)], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]

    work = tmp_path / "elsewhere"
    work.mkdir()
    expected = {p.stem: meta_count(p) for p in SPEC_FILES}
    res = run(["-c", "import json, sdpnet, torch\n"
              "from sdpnet.spec import presets\n"
              "counts = {}\n"
              "with torch.device('meta'):\n"
              "    for name, path in presets.presets().items():\n"
              "        counts[path.stem] = sum(p.numel() for p in sdpnet.build(name).parameters())\n"
              "import timm\n"
              "m = timm.create_model('sdpnet_xl', device='meta')\n"
              "print(json.dumps({'file': sdpnet.__file__, 'specs': str(presets.specs_dir()), 'counts': counts,\n"
              "                  'timm': sum(p.numel() for p in m.parameters())}))"], work, python)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    assert Path(out["file"]).is_relative_to(site) and out["specs"] == str(site / "sdpnet" / "specs")
    assert out["counts"] == expected and out["timm"] == expected["xl"]
    res = run(["-m", "sdpnet", "summary", "sdpnet_xxs", "--res", "64"], work, python)
    assert res.returncode == 0 and f"params: {expected['xxs']:,}" in res.stdout, res.stderr[-3000:]
