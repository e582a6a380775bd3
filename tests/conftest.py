"""Shared test data: generated ImageFolder trees and the Fashion-MNIST .beton files (written once).

``SDPNET_BLOCK_FFCV=1`` makes ``import ffcv`` fail in the test process (as where FFCV does not build), so that the
loaders run on the torch engine; subprocesses that write .beton files (``run_script``) still have FFCV. A subprocess
with :func:`ffcv_blocker` first on its PYTHONPATH cannot import FFCV either.
``SDPNET_TEST_BETONS=DIR`` reuses a folder that already holds the Fashion-MNIST train.beton and val.beton.
"""
from __future__ import annotations

import importlib.abc
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
BLOCK_FFCV = os.environ.get("SDPNET_BLOCK_FFCV") == "1"


class BlockFFCV(importlib.abc.MetaPathFinder):
    """A meta-path finder that makes ``import ffcv`` (and its submodules) raise ImportError."""

    def find_spec(self, name, path=None, target=None):
        if name == "ffcv" or name.startswith("ffcv."):
            raise ImportError(f"ffcv is blocked in this test run (SDPNET_BLOCK_FFCV=1)", name=name)
        return None


if BLOCK_FFCV:
    if "ffcv" in sys.modules:
        raise RuntimeError("SDPNET_BLOCK_FFCV=1 but ffcv was imported before tests/conftest.py")
    sys.meta_path.insert(0, BlockFFCV())


def run_script(script: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``data_prep/<script>`` as a user would, from the repository root."""
    path = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run([sys.executable, str(REPO / "data_prep" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


def smooth_image(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A photo-like HxWx3 uint8 image: colour gradients plus a little noise (JPEG-friendly)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0.5, 3, size=(3, 2))
    ph = rng.uniform(0, 6.3, size=3)
    img = np.stack([127 + 100 * np.sin(a[c, 0] * x / w * 3 + a[c, 1] * y / h * 3 + ph[c])
                    for c in range(3)], -1)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


# (file name, PIL mode, format, width, height): JPEG and PNG, several sizes and modes.
IMAGE_SPECS = [("a.jpg", "RGB", "JPEG", 40, 30), ("b.jpeg", "RGB", "JPEG", 33, 65),
               ("c.png", "RGB", "PNG", 64, 48), ("d.png", "L", "PNG", 50, 50),
               ("e.JPG", "L", "JPEG", 45, 31), ("f.png", "RGBA", "PNG", 37, 29),
               ("g.png", "P", "PNG", 30, 44)]


def make_image_folder(root: Path, classes: tuple[str, ...] = ("cat", "dog", "zebra"), corrupt: bool = False,
                      big: bool = True, seed: int = 0) -> Path:
    """Write an ImageFolder tree of real JPEG/PNG files; with ``corrupt``, add broken files to 'dog'."""
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True)
        for name, mode, fmt, w, h in IMAGE_SPECS:
            arr = smooth_image(rng, w, h)
            im = Image.fromarray(arr)
            if mode == "RGBA":
                im = Image.fromarray(np.dstack([arr, rng.integers(0, 256, (h, w), np.uint8)]), "RGBA")
            elif mode == "P":   # adaptive palette: smooth, so JPEG tolerances still apply
                im = im.convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
            elif mode != "RGB":
                im = im.convert(mode)
            im.save(root / c / name, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        (root / c / "notes.txt").write_text("not an image")
    if big:
        Image.fromarray(smooth_image(rng, 700, 500)).save(root / classes[0] / "big.jpg", quality=95)
    if corrupt:
        buf = io.BytesIO()
        Image.fromarray(smooth_image(rng, 80, 60)).save(buf, "JPEG", quality=95)
        (root / classes[1] / "x_garbage.jpg").write_bytes(rng.integers(0, 256, 500, np.uint8).tobytes())
        (root / classes[1] / "y_truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        buf = io.BytesIO()
        Image.fromarray(smooth_image(rng, 80, 60)).save(buf, "PNG")
        (root / classes[1] / "z_truncated.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return root


@pytest.fixture(scope="session")
def ffcv_blocker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder that, first on a subprocess's PYTHONPATH, makes ``import ffcv`` raise ImportError (as a broken FFCV
    does): its note reads ``FFCV is not importable (ImportError: ffcv is blocked for this test)``."""
    root = tmp_path_factory.mktemp("blocker")
    (root / "ffcv").mkdir()
    (root / "ffcv" / "__init__.py").write_text("raise ImportError('ffcv is blocked for this test')\n")
    return root


@pytest.fixture(scope="session")
def fashion_mnist_betons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.beton / val.beton written once per session by the real CLI from the Debian IDX files."""
    if os.environ.get("SDPNET_TEST_BETONS"):
        return Path(os.environ["SDPNET_TEST_BETONS"])
    out = tmp_path_factory.mktemp("fmnist")
    res = run_script("write_fashion_mnist.py", f"--cfg.write_dir={out}", "--cfg.num_workers=2")
    assert res.returncode == 0, res.stderr[-2000:]
    return out
