"""Issue 14, hard edges: every bad input is refused up front (one line naming the key, exit 2,
nothing written), no fault corrupts a run, and the compiled bf16 channels_last path runs on the CPU.

Real .beton files (Fashion-MNIST, and broken ones made here), real train_ffcv.py subprocesses.
"""
from __future__ import annotations

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, run_script
from sdpnet.train.config import ConfigError
from sdpnet.data import DataFileError, LoaderError, check_beton, make_val_loader, read_sidecar
from sdpnet.data.sources import ArraySource
from sdpnet.data.writer import write_beton
from sdpnet.train import load_checkpoint, os_error_text, write_json
from sdpnet.train.errors import UsageError
from sdpnet.train.options import read_options
from sdpnet.train.prepare import prepare

TINY = {"name": "tiny", "arch": "P4+CLS1-[DWC3+MLP,ENC]-MLP", "dim": 32, "heads": 2, "mlp_ratio": 2,
        "num_classes": 10, "img_size": 28}
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)])),
       "OMP_NUM_THREADS": "2"}


def train(*args: str, timeout: float = 300, fsize: int | None = None) -> subprocess.CompletedProcess:
    """train_ffcv.py as a user runs it; ``fsize`` caps the size of any file it writes (RLIMIT_FSIZE)."""
    limit = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    return subprocess.run([sys.executable, str(REPO / "train_ffcv.py"), *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout, preexec_fn=limit)


def one_line_error(res: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single stderr line of a refused run (no traceback), checking the exit status."""
    assert res.returncode == code, (res.returncode, res.stderr[-3000:])
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("train_ffcv.py: error: "), res.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def trainer():
    """The checks train_ffcv.py runs (sdpnet/train/options.py, prepare.py), in-process: no subprocess per case."""
    return SimpleNamespace(read_options=read_options, prepare=prepare, UsageError=UsageError)


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.json"
    path.write_text(json.dumps(TINY))
    return path


@pytest.fixture(scope="module")
def base(fashion_mnist_betons: Path, spec_file: Path) -> list[str]:
    """A run of a few seconds: 256 training and 100 validation samples, batch 64, one loader thread."""
    d = fashion_mnist_betons
    return ["--spec", str(spec_file), "-C", "configs/fashion_mnist.yaml",
            f"--data.train_path={d / 'train.beton'}", f"--data.val_path={d / 'val.beton'}",
            "--data.train_subset=256", "--data.val_subset=100", "--data.num_workers=1", "--training.epochs=2",
            "--training.batch_size=64", "--lr.lr=0.003", "--logging.progress=0", "--logging.log_interval=2"]


# ---- broken data files, made once ----------------------------------------------------------------

def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28, 3), np.uint8)


def _ffcv_write(path: Path, fields: dict, items: list) -> None:
    from ffcv.writer import DatasetWriter
    DatasetWriter(str(path), fields, num_workers=1).from_indexed_dataset(items)


@pytest.fixture(scope="module")
def bad(tmp_path_factory, fashion_mnist_betons: Path) -> dict[str, Path]:
    """A good small .beton and one file for each way a .beton can be wrong."""
    from ffcv.fields import FloatField, IntField, RGBImageField
    root = tmp_path_factory.mktemp("bad")
    classes = [f"c{i}" for i in range(10)]
    side = {"num_classes": 10, "classes": classes, "mean": [120.0] * 3, "std": [60.0] * 3}
    out = {"good": root / "good.beton"}
    write_beton(ArraySource(_images(64), np.arange(64) % 10), out["good"], side, labels=np.arange(64) % 10)

    def variant(name: str, data: bytes | None = None, sidecar: str | None = None) -> None:
        out[name] = root / f"{name}.beton"
        out[name].write_bytes(out["good"].read_bytes() if data is None else data)
        if sidecar is not None:
            Path(f"{out[name]}.json").write_text(sidecar)
    good_side = Path(f"{out['good']}.json").read_text()
    size = out["good"].stat().st_size
    variant("truncated", out["good"].read_bytes()[: size - 5000], good_side)   # cut inside the data
    variant("random", np.random.default_rng(1).integers(0, 256, 4096, np.uint8).tobytes(), good_side)
    variant("no_sidecar")
    variant("bad_json", sidecar='{"num_classes": 10, ')
    variant("few_classes", sidecar=json.dumps({**side, "num_classes": 5, "classes": classes[:5]}))
    variant("nan_mean", sidecar=json.dumps({**side, "mean": [1.0, 2.0, 3.0]}).replace("3.0", "NaN"))
    out["three"] = root / "three.beton"
    write_beton(ArraySource(_images(30), np.arange(30) % 3), out["three"],
                {**side, "num_classes": 3, "classes": ["a", "b", "c"]}, labels=np.arange(30) % 3)
    out["float_label"] = root / "float_label.beton"
    _ffcv_write(out["float_label"], {"image": RGBImageField(), "label": FloatField()},
                [(im, float(i % 10)) for i, im in enumerate(_images(16))])
    Path(f"{out['float_label']}.json").write_text(json.dumps(side))
    out["foreign"] = root / "foreign.beton"
    _ffcv_write(out["foreign"], {"img": RGBImageField(), "target": IntField()},
                [(im, i % 10) for i, im in enumerate(_images(16))])
    Path(f"{out['foreign']}.json").write_text(json.dumps(side))
    return out


# ---- 1. one validation pass before any work ------------------------------------------------------

BAD_OPTIONS = [  # (arguments, text the one-line message must hold: the key, the value, what is valid)
    (["--augment.label_smoothing=nan"], "--augment.label_smoothing='nan' (command line) is invalid: expected a "
                                        "finite float in [0, 1)"),
    (["--lr.lr=inf"], "--lr.lr='inf' (command line) is invalid: expected a finite float > 0"),
    (["--lr.base_lr=-1"], "--lr.base_lr='-1' (command line) is invalid: expected a finite float > 0"),
    (["--ema.decay=1"], "--ema.decay='1' (command line) is invalid: expected a finite float in [0, 1)"),
    (["--resolution.min_res=64", "--resolution.max_res=32"],
     "--resolution.min_res=64 is above --resolution.max_res=32: make min_res <= max_res"),
    (["--resolution.start_ramp=10", "--resolution.end_ramp=5"],
     "--resolution.start_ramp=10 is after --resolution.end_ramp=5: make start_ramp <= end_ramp"),
    (["--validation.crop_ratio=0"], "--validation.crop_ratio='0' (command line) is invalid: expected a finite "
                                    "float in (0, 1]"),
    (["--augment.scale_min=0.9", "--augment.scale_max=0.5"], "--augment.scale_min=0.9 is above --augment.scale_max"),
    (["--augment.ratio_min=2", "--augment.ratio_max=1"], "--augment.ratio_min=2 is above --augment.ratio_max=1"),
    (["--augment.randaug_m=30"], "--augment.randaug_m='30' (command line) is invalid: expected a finite float in "
                                 "(0, 30)"),
    (["--training.epochs=0"], "--training.epochs='0' (command line) is invalid: expected an int >= 1"),
    (["--training.epochs=2.5"], "--training.epochs='2.5' (command line) is invalid: expected an int >= 1"),
    (["--training.seed=-1"], "--training.seed='-1' (command line) is invalid: expected an int in [0, 4294967296)"),
    (["--training.amp=fp16"], "--training.amp='fp16' (command line) is invalid: expected one of auto, bf16, off"),
    (["--lr.t_mult=0.5"], "--lr.t_mult='0.5' (command line) is invalid: expected a finite float >= 1"),
    (["--data.num_workers=0"], "--data.num_workers='0' (command line) is invalid: expected an int >= 1"),
    (["--model.dropout=1.5"], "--model.dropout='1.5' (command line) is invalid: expected a finite float in [0, 1)"),
    (["--training.resume=perhaps"], "--training.resume='perhaps' (command line) is invalid: expected a bool"),
    (["--training.epoch=3"], "unknown key 'training.epoch' (command line); did you mean 'training.epochs'?"),
    (["yaml:model:\n  drop_path: null\n"], "--model.drop_path is null (config file"),
    (["yaml:training:\n  weight_decay: .inf\n"], "--training.weight_decay=inf (config file"),
    (["yaml:augment:\n  mixup: .nan\n"], "--augment.mixup=nan (config file"),
]


class TestOptions:
    @pytest.mark.parametrize("args,expected", BAD_OPTIONS, ids=[a[0].split("=")[0] for a, _ in BAD_OPTIONS])
    def test_bad_option_names_key_value_and_range(self, trainer, base, tmp_path, args, expected):
        """Each bad value is refused by the parse (before data, model or folder), with a message saying why."""
        if args[0].startswith("yaml:"):
            (tmp_path / "c.yaml").write_text(args[0][5:])
            args = ["-C", str(tmp_path / "c.yaml")]
        with pytest.raises(ConfigError) as e:
            trainer.read_options([*base, *args])
        assert expected in str(e.value)

    def test_good_options_are_plain_frozen_values(self, trainer, base):
        """The checked options are one frozen dataclass per section, of plain Python values."""
        o = trainer.read_options(base)
        assert (o.training.epochs, o.lr.lr, o.lr.eta_min, o.data.train_subset) == (2, 0.003, 1e-5, 256)
        assert isinstance(o.augment.flip, bool) and o.training.compile == "off" and o.model.drop_path is None

    def test_refusals_in_a_real_run(self, base, tmp_path):
        """The command line: all bad values in one line, exit 2, no traceback, no run folder."""
        run = tmp_path / "run"
        line = one_line_error(train(*base, f"--logging.folder={run}", "--ema.decay=1", "--lr.lr=inf", timeout=120))
        assert "--ema.decay='1'" in line and "--lr.lr='inf'" in line
        assert not run.exists()


@pytest.mark.parametrize("args,expected", [
    (["--training.batch_size=300"], "--training.batch_size=300 is larger than the 256 training samples (--data."
                                    "train_subset=256): not one batch per epoch; use a batch size of at most 256"),
    (["--data.train_subset=0", "--training.batch_size=70000"], "--training.batch_size=70000 is larger than the 60000"),
    (["--data.train_subset=70000"], "--data.train_subset=70000 is more than the 60000 samples of"),
    (["--data.val_subset=20000"], "--data.val_subset=20000 is more than the 10000 samples of"),
    (["--lr.eta_min=0.01"], "--lr.eta_min=0.01 is above the peak lr 0.003 (--lr.lr); make eta_min at most 0.003"),
    (["--validation.res=30"], "--validation.res=30 is not a multiple of the model's stride 4; use 28"),
    (["--spec", "P4-[DWC3+MLP-MLP"], "bad --model.spec"),
])
def test_checks_needing_data_and_model(trainer, base, tmp_path, args, expected):
    """Relations with the data (batch <= samples, subsets) and the model (stride) are refused by prepare()."""
    opts = trainer.read_options([*base, f"--logging.folder={tmp_path / 'run'}", *args])
    with pytest.raises(trainer.UsageError) as e:
        trainer.prepare(opts)
    assert expected in str(e.value)
    assert not (tmp_path / "run").exists()


class TestRunFolder:
    def _refusal(self, trainer, base, folder: Path | str) -> str:
        with pytest.raises(trainer.UsageError) as e:
            trainer.prepare(trainer.read_options([*base, f"--logging.folder={folder}"]))
        return str(e.value)

    def test_folder_is_a_file(self, trainer, base, tmp_path):
        """A run folder that is a file, or lies under one, is refused."""
        (tmp_path / "f").write_text("x")
        assert "--logging.folder=" in self._refusal(trainer, base, tmp_path / "f") and "is a file" in \
            self._refusal(trainer, base, tmp_path / "f")
        assert "cannot be written" in self._refusal(trainer, base, tmp_path / "f" / "run")

    def test_unwritable_folder(self, trainer, base, tmp_path):
        """A folder where no file can be created is refused, and nothing is created (as root: /sys)."""
        if os.geteuid() == 0:
            target = Path("/sys/sdpnet-run")
        else:
            (tmp_path / "ro").mkdir(mode=0o500)
            target = tmp_path / "ro" / "run"
        msg = self._refusal(trainer, base, target)
        assert f"--logging.folder={target} cannot be written" in msg and "choose a folder you can write to" in msg
        assert not target.exists()


class TestDataFiles:
    @pytest.mark.parametrize("name,expected", [
        ("truncated", "is truncated: it has"),
        ("random", "is not an FFCV .beton (format version"),
        ("no_sidecar", "no sidecar"),
        ("bad_json", "is not valid JSON"),
        ("few_classes", "has labels 0..9 but its sidecar"),
        ("nan_mean", "has a 'mean' in its sidecar"),
        ("float_label", "has the fields 'image' (RGBImageField), 'label' (FloatField); expected exactly 'image' "
                        "(RGBImageField) and 'label' (IntField)"),
        ("foreign", "has the fields 'img' (RGBImageField), 'target' (IntField)"),
    ])
    def test_check_beton(self, bad, name, expected):
        """Each broken file is one DataFileError naming the file, what is wrong and how to fix it."""
        with pytest.raises(DataFileError) as e:
            check_beton(bad[name])
        assert expected in str(e.value) and str(bad[name]) in str(e.value)
        assert "write" in str(e.value) or "sidecar" in str(e.value)

    def test_good_file_described(self, bad):
        """A good file: its sample count, label range and classes."""
        info = check_beton(bad["good"])
        assert (info.num_samples, info.label_min, info.label_max, info.num_classes) == (64, 0, 9, 10)
        assert info.classes[3] == "c3"

    def test_loader_refuses_truncated_file(self, bad):
        """The loader factory checks sizes first: a truncated file is an error, not SIGBUS."""
        with pytest.raises(DataFileError, match="truncated"):
            make_val_loader(str(bad["truncated"]), batch_size=8, res=28)

    @pytest.mark.parametrize("name,expected", [
        ("three", "has 3 classes: a, b, c, but --data.train_path="),
        ("float_label", "(FloatField)"),
        ("truncated", "is truncated"),
    ])
    def test_trainer_refuses_val_file(self, trainer, base, bad, tmp_path, name, expected):
        """Validation data of other classes, float labels or a truncated file: refused before any work."""
        opts = trainer.read_options([*base, f"--data.val_path={bad[name]}", f"--logging.folder={tmp_path / 'r'}"])
        with pytest.raises(trainer.UsageError) as e:
            trainer.prepare(opts)
        assert f"--data.val_path={bad[name]}" in str(e.value) and expected in str(e.value)

    def test_truncated_file_in_a_real_run(self, base, bad, tmp_path):
        """train_ffcv.py on a truncated .beton: one line and exit 2 (not SIGBUS), no run folder."""
        line = one_line_error(train(*base, f"--data.val_path={bad['truncated']}",
                                    f"--logging.folder={tmp_path / 'r'}", timeout=120))
        assert "truncated" in line and not (tmp_path / "r").exists()


def test_loader_thread_error_reaches_the_loop(bad):
    """An exception inside FFCV's loader thread ends the epoch with that error instead of a hang."""
    from dataclasses import replace

    from ffcv.fields.rgb_image import CenterCropRGBImageDecoder
    from ffcv.pipeline.operation import Operation

    from sdpnet.data.ffcv_loaders import _loader, _tail

    class FailOnThirdBatch(Operation):
        def generate_code(self):
            calls = []

            def op(images, dst):
                calls.append(1)
                if len(calls) == 3:
                    raise OSError("disk read error (injected by the test)")
                return images
            return op

        def declare_state_and_memory(self, previous_state):
            return replace(previous_state, jit_mode=False), None

    ops = [CenterCropRGBImageDecoder((28, 28), ratio=1.0),
           *_tail(torch.device("cpu"), np.full(3, 120.0), np.full(3, 60.0), True), FailOnThirdBatch()]
    loader = _loader(str(bad["good"]), ops, batch_size=8, num_workers=1, device=torch.device("cpu"), rank=0,
                     world=1, seed=0, indices=np.arange(check_beton(bad["good"]).num_samples), shuffle=False,
                     drop_last=False, os_cache=True)
    t0, seen = time.monotonic(), 0
    with pytest.raises(LoaderError, match="disk read error") as e:
        for _ in loader:
            seen += 1
    assert seen == 2 and time.monotonic() - t0 < 60 and str(bad["good"]) in str(e.value)


# ---- 2. resume is safe ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_epoch(base, tmp_path_factory) -> Path:
    """A run stopped after epoch 1 of 2 (copied by each test that changes it)."""
    run = tmp_path_factory.mktemp("one_epoch") / "run"
    res = train(*base, f"--logging.folder={run}", "--training.stop_after=1")
    assert res.returncode == 0, res.stderr[-3000:]
    return run


def _copy(run: Path, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run, out)
    return out


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir())}


def _epochs(run: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


class TestResume:
    def test_changed_config_refused_then_recorded(self, base, one_epoch, tmp_path):
        """A resume that changes the run lists the differences (exit 2, folder untouched); with
        resume_changed=1 it continues, records the change, and repairs what a crash left."""
        run = _copy(one_epoch, tmp_path)
        before = _files(run)
        changed = ["--training.weight_decay=0.1", "--training.batch_size=32"]
        line = one_line_error(train(*base, f"--logging.folder={run}", "--training.resume=1", *changed, timeout=120))
        assert "training.batch_size 64 -> 32" in line and "training.weight_decay 0.05 -> 0.1" in line
        assert "--training.resume_changed=1" in line and _files(run) == before
        # what a crash between two writes can leave: a half-written metrics line, a killed writer's temporary
        with open(run / "metrics.jsonl", "a") as f:
            f.write('{"epoch": 2, "train_lo')
        dead = subprocess.Popen(["true"])
        dead.wait()
        (run / f".checkpoint.pt.{dead.pid}.tmp").write_bytes(b"partial")
        res = train(*base, f"--logging.folder={run}", "--training.resume=1", "--training.resume_changed=1",
                    changed[0])
        assert res.returncode == 0, res.stderr[-3000:]
        assert "metrics.jsonl rewritten from checkpoint.pt" in res.stdout and "left by a killed run" in res.stdout
        assert _epochs(run) == [1, 2] and not list(run.glob(".*"))
        config = json.loads((run / "config.json").read_text())
        assert config["training"]["weight_decay"] == 0.1
        assert config["changes"] == [{"epoch": 1, "values": {"training.weight_decay": [0.05, 0.1]}}]

    def test_disk_full_during_commit(self, base, one_epoch, tmp_path):
        """A checkpoint write that fails (file-size limit: EFBIG, as a full disk gives ENOSPC) stops the run in
        one line; the folder still holds epoch 1 exactly, and a later resume adds epoch 2 once."""
        run = _copy(one_epoch, tmp_path)
        before = _files(run)
        limit = (run / "checkpoint.pt").stat().st_size // 2   # the checkpoint no longer fits; the others do
        line = one_line_error(train(*base, f"--logging.folder={run}", "--training.resume=1", fsize=limit), code=1)
        assert f"cannot write {run / 'checkpoint.pt'}: the file is larger than the file-size limit allows" in line
        assert "epoch 2 is not saved and the run folder holds epoch 1" in line
        assert _files(run) == before   # no temporary left, nothing half-written
        res = train(*base, f"--logging.folder={run}", "--training.resume=1")
        assert res.returncode == 0, res.stderr[-3000:]
        assert _epochs(run) == [1, 2] and load_checkpoint(run / "checkpoint.pt")["epoch"] == 2
        assert [r["epoch"] for r in load_checkpoint(run / "checkpoint.pt")["metrics"]] == [1, 2]

    def test_damaged_checkpoint_names_the_way_out(self, trainer, base, one_epoch, tmp_path):
        """A truncated checkpoint.pt: refused, saying it cannot be read and how to restart; nothing changed."""
        run = _copy(one_epoch, tmp_path)
        ck = run / "checkpoint.pt"
        ck.write_bytes(ck.read_bytes()[:5000])
        before = _files(run)
        with pytest.raises(trainer.UsageError) as e:
            trainer.prepare(trainer.read_options([*base, f"--logging.folder={run}", "--training.resume=1"]))
        assert f"'{ck}' cannot be read" in str(e.value) and f"mv {ck} {ck}.bad" in str(e.value)
        assert _files(run) == before


def test_diverged_run_stops_without_nan_in_json(base, tmp_path):
    """A loss that becomes NaN stops the run (exit 1, one line); no epoch is saved, no JSON holds NaN."""
    run = tmp_path / "run"
    line = one_line_error(train(*base, f"--logging.folder={run}", "--lr.lr=1e30", "--logging.log_interval=1",
                                "--training.grad_clip=0"), code=1)
    assert re.search(r"the training loss became (nan|inf) by step \d+ \(epoch 1", line), line
    assert "no epoch is saved: start again; lower --lr.lr" in line
    assert not (run / "checkpoint.pt").exists() and not (run / "metrics.jsonl").exists()
    for f in run.glob("*.json"):
        json.loads(f.read_text(), parse_constant=lambda c: pytest.fail(f"{f.name} holds {c}"))


def test_json_writers_refuse_nan(tmp_path):
    """Run files never get bare NaN/Infinity: writing one is an error and leaves no file."""
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "r.json", {"loss": float("nan")})
    assert not list(tmp_path.iterdir())


def test_os_error_text():
    """Disk full and permission errors are named in plain words."""
    import errno
    assert os_error_text(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))).startswith("the disk is full")
    assert os_error_text(OSError(errno.EACCES, os.strerror(errno.EACCES))) == "permission denied"


# ---- 5. the GPU fast path, on the CPU --------------------------------------------------------------

def test_compiled_bf16_channels_last_epoch(base, tmp_path):
    """compile=on, amp=bf16, channels_last=1 through the real loop on the CPU: the loss falls and
    torch.compile meets no graph break (results.json counts them; TORCH_LOGS would print them)."""
    run = tmp_path / "run"
    env_logs = {**ENV, "TORCH_LOGS": "graph_breaks"}
    res = subprocess.run([sys.executable, str(REPO / "train_ffcv.py"), *base, f"--logging.folder={run}",
                          "--training.compile=on", "--training.amp=bf16", "--training.channels_last=1",
                          "--ema.enabled=0", "--lr.lr=0.01", "--lr.warmup_epochs=0", "--validation.batch_size=100"],
                         cwd=REPO, env=env_logs, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "compile=True" in res.stdout and "amp=True" in res.stdout
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[1]["train_loss"] < rows[0]["train_loss"] < 2.3 and rows[1]["val_loss"] < rows[0]["val_loss"]
    assert json.loads((run / "results.json").read_text())["graph_breaks"] == 0
    assert "Graph break" not in res.stderr


# ---- 3. writers: 16-bit and float images, nested class folders --------------------------------------

def test_writer_converts_16bit_float_and_reads_nested_folders(tmp_path):
    """16-bit grey is scaled (not clipped), float [0, 1] is scaled (not black), float beyond [0, 1] is listed
    as skipped with the reason, and images in sub-folders of a class are written in ImageFolder's order."""
    from torchvision.datasets import ImageFolder

    from test_data_write import beton_samples
    root = tmp_path / "tree"
    ramp16 = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)
    ramp_f = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)
    (root / "a" / "sub" / "deep").mkdir(parents=True)
    (root / "b").mkdir()
    Image.fromarray(ramp16).save(root / "a" / "g16.png")
    Image.fromarray(ramp_f).save(root / "a" / "sub" / "f.tiff")
    Image.fromarray(ramp_f * 300).save(root / "a" / "sub" / "deep" / "too_bright.tiff")
    Image.fromarray(np.full((16, 16, 3), 7, np.uint8)).save(root / "a" / "sub" / "deep" / "x.png")
    Image.fromarray(np.full((16, 16, 3), 9, np.uint8)).save(root / "b" / "y.png")
    out = tmp_path / "o.beton"
    res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={out}", "--cfg.write_mode=raw",
                     "--cfg.num_workers=1")
    assert res.returncode == 0, res.stderr[-3000:]
    meta = read_sidecar(out)
    assert [Path(s["path"]).name for s in meta["skipped"]] == ["too_bright.tiff"]
    assert "float image with values in [0, 300]" in meta["skipped"][0]["error"]
    expected = [(p, c) for p, c in ImageFolder(str(root)).samples if not p.endswith("too_bright.tiff")]
    samples = beton_samples(out)
    assert [lab for _, _, lab in samples] == [c for _, c in expected] == [0, 0, 0, 1]
    by_name = {Path(p).name: pixels for (p, _), (_, pixels, _) in zip(expected, samples)}
    np.testing.assert_array_equal(by_name["g16.png"][..., 0], np.arange(256).reshape(16, 16))
    np.testing.assert_array_equal(by_name["f.tiff"][..., 1], np.rint(ramp_f * 255).astype(np.uint8))
    assert (by_name["x.png"] == 7).all()


def test_writer_bad_input_exits_2(tmp_path):
    """A writer refuses bad input like the trainer: one line, exit 2, and no output folder is created."""
    res = run_script("write_imagenet.py", f"--cfg.data_dir={tmp_path / 'none'}",
                     f"--cfg.write_path={tmp_path / 'out' / 'o.beton'}")
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "does not exist" in res.stderr
    assert not (tmp_path / "out").exists()
