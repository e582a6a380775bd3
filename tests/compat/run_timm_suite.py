"""timm's own model tests as the acceptance test of sdpnet's timm API, and timm's ``train.py`` as a client.

    .venv/bin/python tests/compat/run_timm_suite.py                    # timm's tests/test_models.py, sdpnet_* only
    .venv/bin/python tests/compat/run_timm_suite.py -k "forward and not fx" --models "sdpnet_vit_*" sdpnet_xl
    .venv/bin/python tests/compat/run_timm_suite.py --train --train-py /path/to/train.py

1. ``pip download timm==<installed version> --no-binary :all: --no-deps`` into ``--work`` (kept, so a second run
   does not download again) and extracts its ``tests/`` and ``pyproject.toml`` (timm's pytest markers).
2. Runs ``tests/test_models.py`` byte for byte as shipped, through ``timm_suite_plugin.py`` (next to this
   file), which restricts timm's model lists to the sdpnet models, deselects timm's tests of its own named
   models and reports the tests that do not apply (TorchScript; pretrained weights) as ``n/a`` with the
   reason; see that file for exactly what it decides. Prints passed / failed / skipped / n/a per test function
   and the first line of each failure; exit status 1 when any test failed.
3. With ``--train``: writes a small ImageFolder of real Fashion-MNIST images (PNG, from the Debian package's IDX
   files), runs timm's ``train.py`` on the CPU for a few steps with ``--model-ema --layer-decay 0.75
   --grad-checkpointing``, prints its per-epoch summary and loads the checkpoint it wrote back with
   ``timm.models.load_checkpoint`` (weights and EMA weights). timm's sdists up to at least 1.0.31 do not ship
   ``train.py`` (only the repository does); pass its path with ``--train-py`` when the sdist lacks it.

Not part of ``make test``: CI never downloads timm's tests. Our own tests of each API item are in
``tests/test_timm_api.py``.
"""
from __future__ import annotations

import argparse
import collections
import gzip
import importlib.metadata
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")


def fetch_sdist(version: str, work: Path) -> Path:
    """timm's source distribution for ``version``, downloaded with pip into ``work`` and extracted there."""
    root = work / f"timm-{version}"
    if (root / "tests" / "test_models.py").is_file():
        return root
    tarball = work / f"timm-{version}.tar.gz"
    if not tarball.is_file():
        cmd = [sys.executable, "-m", "pip", "download", f"timm=={version}", "--no-binary", ":all:", "--no-deps",
               "-q", "-d", str(work)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    with tarfile.open(tarball) as tar:
        wanted = [m for m in tar.getmembers()
                  if m.name.startswith(f"timm-{version}/tests/") or m.name in (f"timm-{version}/pyproject.toml",
                                                                               f"timm-{version}/train.py")]
        tar.extractall(work, members=wanted, filter="data")
    return root


def run_suite(root: Path, models: str, extra: list[str]) -> int:
    """Run timm's test_models.py over ``models``; print the counts; return the number of failures."""
    report = root / "sdpnet-report.jsonl"
    report.unlink(missing_ok=True)
    test_file = root / "tests" / "test_models.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
           "SDPNET_TIMM_MODELS": models, "SDPNET_TIMM_REPORT": str(report), "SDPNET_TIMM_TEST_FILE": str(test_file),
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    cmd = [sys.executable, "-m", "pytest", "-p", "timm_suite_plugin", "-q", "-p", "no:cacheprovider",
           "-W", "ignore::pytest.PytestUnknownMarkWarning", str(test_file.relative_to(root)), *extra]
    print("$", " ".join(cmd), f"  (in {root}, SDPNET_TIMM_MODELS={models})", flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, cwd=root, env=env)
    elapsed = time.perf_counter() - start
    rows = [json.loads(line) for line in report.read_text().splitlines()] if report.is_file() else []
    by_test: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for r in rows:
        by_test[r["nodeid"].split("::")[-1].split("[")[0]][r["outcome"]] += 1
    total = collections.Counter(r["outcome"] for r in rows)
    columns = ("passed", "failed", "skipped", "not applicable")
    print(f"\n{'test':48} {'passed':>6} {'failed':>6} {'skipped':>7} {'n/a':>4}")
    for name, c in sorted(by_test.items()):
        print(f"{name:48} " + " ".join(f"{c[k]:{w}}" for k, w in zip(columns, (6, 6, 7, 4))))
    print(f"{'total':48} " + " ".join(f"{total[k]:{w}}" for k, w in zip(columns, (6, 6, 7, 4)))
          + f"   ({elapsed:.0f} s)")
    reasons = collections.Counter((r["nodeid"].split("::")[-1].split("[")[0], r["reason"]) for r in rows
                                  if r["outcome"] == "not applicable")
    for (name, reason), n in sorted(reasons.items()):
        print(f"  N/A     {name} ({n}): {reason}")
    for r in rows:
        if r["outcome"] in ("failed", "skipped"):
            print(f"  {r['outcome'].upper():7} {r['nodeid'].split('::')[-1]}: {r['reason']}")
    return total["failed"]


def write_fashion_mnist_folder(root: Path, train: int, val: int) -> Path:
    """``root/{train,validation}/<class>/<i>.png``: the first ``train`` training and ``val`` test images."""
    from PIL import Image

    def idx(name: str) -> np.ndarray:
        with gzip.open(FASHION_MNIST / name) as f:
            data = f.read()
        dims = data[3]
        shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
        return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)

    for split, prefix, n in (("train", "train", train), ("validation", "t10k", val)):
        images, labels = idx(f"{prefix}-images-idx3-ubyte.gz")[:n], idx(f"{prefix}-labels-idx1-ubyte.gz")[:n]
        for c in CLASSES:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i, (image, label) in enumerate(zip(images, labels)):
            Image.fromarray(image, "L").save(root / split / CLASSES[label] / f"{i:05d}.png")
    return root


# Runs timm's train.py as __main__ after registering sdpnet's models with timm (timm has no plugin entry point: a
# model registry outside timm is imported first, as a user adds `import sdpnet` to their copy). On a machine
# without CUDA it also makes torch.cuda.synchronize a no-op: train.py before 2024 (e.g. 2aabaef) calls it in
# validate() whatever the device (validate's device argument defaults to cuda and main() passes none).
_TRAIN_BOOTSTRAP = """
import runpy, sys, torch
import sdpnet
sdpnet.register_timm()
if not torch.cuda.is_available():
    torch.cuda.synchronize = lambda device=None: None
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_train(train_py: Path, work: Path, model: str, epochs: int) -> int:
    """timm's train.py on a 200-image Fashion-MNIST ImageFolder with EMA, layer decay and grad checkpointing, on
    the CPU; then the checkpoint it wrote is loaded back with timm (weights and EMA weights). Prints the
    per-epoch summary; returns train.py's exit status (1 if the checkpoint does not load)."""
    data = work / "fashion-mnist-folder"
    if not (data / "validation").is_dir():
        write_fashion_mnist_folder(data, train=200, val=100)
    out = Path(tempfile.mkdtemp(prefix="timm-train-", dir=work))
    config = out / "device.yaml"  # train.py's -c config sets any args attribute, also where it has no --device
    config.write_text("device: cpu\n")
    cmd = [sys.executable, "-c", _TRAIN_BOOTSTRAP, str(train_py), "-c", str(config), "--data-dir", str(data),
           "--model", model, "--num-classes", "10", "--workers", "0", "--batch-size", "32",
           "--epochs", str(epochs), "--opt", "adamw", "--lr", "1e-3", "--weight-decay", "0.05", "--warmup-epochs",
           "0", "--sched", "cosine", "--model-ema", "--model-ema-decay", "0.9", "--layer-decay", "0.75",
           "--grad-checkpointing", "--log-interval", "2", "--output", str(out), "--experiment", model]
    print("$", " ".join(c if c != _TRAIN_BOOTSTRAP else "<bootstrap>" for c in cmd), flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    res = subprocess.run(cmd, cwd=train_py.parent, env=env)
    run_dir = out / model
    summary = run_dir / "summary.csv"
    if summary.is_file():
        print(f"\n{summary}:\n{summary.read_text()}")
    checkpoints = sorted(p.name for p in run_dir.glob("*.pth.tar"))
    print(f"checkpoints in {run_dir}: {checkpoints}")
    if res.returncode == 0 and checkpoints:
        check = ("import sys, timm, torch, sdpnet\nsdpnet.register_timm()\n"
                 "for ema in (False, True):\n"
                 "    m = timm.create_model(sys.argv[1], num_classes=10)\n"
                 "    timm.models.load_checkpoint(m, sys.argv[2], use_ema=ema, strict=True)\n"
                 "    print('loaded', 'EMA' if ema else 'model', 'weights:', type(m).__name__, "
                 "sum(p.numel() for p in m.parameters()), 'parameters')")
        loaded = subprocess.run([sys.executable, "-c", check, model, str(run_dir / "last.pth.tar")], env=env)
        return 1 if loaded.returncode else 0
    return res.returncode if res.returncode else 1   # no checkpoint written


def main(argv: list[str] | None = None) -> int:
    """Command line; returns 0 when everything that ran passed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "sdpnet-timm-suite",
                        help="folder for timm's sdist and the run's files (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=["sdpnet_*"], help="fnmatch patterns of the models to test")
    parser.add_argument("-k", dest="keyword", default=None, help="pytest -k expression over timm's tests")
    parser.add_argument("--no-suite", action="store_true", help="skip timm's test_models.py")
    parser.add_argument("--train", action="store_true", help="also run timm's train.py for a few steps")
    parser.add_argument("--train-py", type=Path, default=None, help="timm's train.py (default: the sdist's)")
    parser.add_argument("--train-model", default="sdpnet_fashion_mnist")
    parser.add_argument("--train-epochs", type=int, default=2, help="epochs of 7 steps (200 images, batch 32)")
    parser.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args(argv)
    version = importlib.metadata.version("timm")
    args.work.mkdir(parents=True, exist_ok=True)
    root = fetch_sdist(version, args.work)
    if args.train:  # checked before the (long) suite, so a missing train.py fails at once
        train_py = args.train_py or root / "train.py"
        if not train_py.is_file():
            print(f"error: timm {version}'s sdist has no train.py; pass --train-py PATH "
                  f"(train.py of timm's repository at v{version})", file=sys.stderr)
            return 2
    failed = 0
    if not args.no_suite:
        extra = [*(["-k", args.keyword] if args.keyword else []), *args.pytest_args]
        failed += run_suite(root, ",".join(args.models), extra)
    if args.train:
        rc = run_train(train_py.resolve(), args.work, args.train_model, args.train_epochs)
        print(f"train.py exit status: {rc}")
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
