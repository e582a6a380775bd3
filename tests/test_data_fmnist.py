"""Fashion-MNIST and CIFAR -> .beton through the real CLIs, read back from the files; bad input."""
from __future__ import annotations

import gzip
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from ffcv.reader import Reader

from conftest import FASHION_MNIST_DIR, run_script
from sdpnet.data import read_sidecar
from sdpnet.data.sources import read_idx


def raw_images(path: Path, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """All images (N,h,w,3) and labels (N,) of a raw-mode, fixed-size .beton, read from the file."""
    reader = Reader(str(path))
    img = reader.metadata["f0"]
    assert (img["mode"] == 1).all() and (img["height"] == h).all() and (img["width"] == w).all()
    blob = np.fromfile(path, np.uint8)
    n = h * w * 3
    images = np.stack([blob[p:p + n] for p in img["data_ptr"].astype(np.int64)]).reshape(-1, h, w, 3)
    return images, reader.metadata["f1"].astype(np.int64)


class TestFashionMnist:
    @pytest.mark.parametrize("split,prefix,count", [("train", "train", 60000), ("val", "t10k", 10000)])
    def test_pixels_and_labels_exact(self, fashion_mnist_betons: Path, split: str, prefix: str, count: int):
        """All samples, in order, with grey replicated to 3 channels and labels as in the IDX files."""
        ref_x = read_idx(Path(FASHION_MNIST_DIR) / f"{prefix}-images-idx3-ubyte.gz")
        ref_y = read_idx(Path(FASHION_MNIST_DIR) / f"{prefix}-labels-idx1-ubyte.gz")
        x, y = raw_images(fashion_mnist_betons / f"{split}.beton", 28, 28)
        assert len(x) == len(y) == count
        np.testing.assert_array_equal(np.bincount(y, minlength=10), np.bincount(ref_y, minlength=10))
        np.testing.assert_array_equal(y, ref_y)
        for c in range(3):
            np.testing.assert_array_equal(x[..., c], ref_x)

    def test_sidecar(self, fashion_mnist_betons: Path):
        """Classes, counts and the training pixels' mean/std (0-255) are recorded."""
        meta = read_sidecar(fashion_mnist_betons / "train.beton")
        ref = read_idx(Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz").astype(np.float64)
        assert meta["num_classes"] == 10 and meta["classes"][9] == "Ankle boot"
        assert sum(meta["counts"].values()) == meta["num_samples"] == 60000
        np.testing.assert_allclose(meta["mean"], [ref.mean()] * 3, rtol=1e-6)
        np.testing.assert_allclose(meta["std"], [ref.std()] * 3, rtol=1e-6)
        assert read_sidecar(fashion_mnist_betons / "val.beton")["mean"] == meta["mean"]


@pytest.fixture()
def idx_copy(tmp_path: Path) -> Path:
    """A writable copy of the Fashion-MNIST IDX folder, uncompressed."""
    out = tmp_path / "fm"
    out.mkdir()
    for f in Path(FASHION_MNIST_DIR).glob("*-ubyte.gz"):
        (out / f.name[:-3]).write_bytes(gzip.decompress(f.read_bytes()))
    return out


class TestIdxErrors:
    def test_truncated_idx(self, idx_copy: Path, tmp_path: Path):
        """A truncated image file is reported with the expected and actual sizes; nothing written."""
        f = idx_copy / "t10k-images-idx3-ubyte"
        f.write_bytes(f.read_bytes()[:-1000])
        res = run_script("write_fashion_mnist.py", f"--cfg.data_dir={idx_copy}", f"--cfg.write_dir={tmp_path}/o")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert "truncated" in res.stderr and "t10k-images-idx3-ubyte" in res.stderr
        assert not (tmp_path / "o" / "train.beton").exists()

    def test_count_mismatch(self, idx_copy: Path, tmp_path: Path):
        """Image and label files of different lengths are rejected with both counts."""
        shutil.copy(idx_copy / "t10k-labels-idx1-ubyte", idx_copy / "train-labels-idx1-ubyte")
        res = run_script("write_fashion_mnist.py", f"--cfg.data_dir={idx_copy}", f"--cfg.write_dir={tmp_path}/o")
        assert res.returncode == 2 and "Traceback" not in res.stderr
        assert "60000 images but 10000 labels" in res.stderr

    def test_missing_folder(self, tmp_path: Path):
        """A missing IDX folder is named."""
        res = run_script("write_fashion_mnist.py", f"--cfg.data_dir={tmp_path}/none", f"--cfg.write_dir={tmp_path}/o")
        assert res.returncode == 2 and "does not exist" in res.stderr and "Traceback" not in res.stderr


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_cifar(root: Path, kind: str, per_file: int = 12, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small CIFAR folder in the official pickle layout; returns the (N,32,32,3) images and labels per split."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True)
    n_cls = 10 if kind == "cifar10" else 100
    files = ({"train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"]} if kind == "cifar10"
             else {"train": ["train"], "val": ["test"]})
    out = {}
    for split, names in files.items():
        xs, ys = [], []
        for name in names:
            x = rng.integers(0, 256, (per_file, 3072), np.uint8)
            y = rng.integers(0, n_cls, per_file).tolist()
            key = b"labels" if kind == "cifar10" else b"fine_labels"
            _pickle(root / name, {b"data": x, key: y, b"coarse_labels": [v // 5 for v in y]})
            xs.append(x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            ys += y
        out[split] = (np.concatenate(xs), np.array(ys))
    if kind == "cifar10":
        _pickle(root / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    else:
        _pickle(root / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                b"coarse_label_names": [f"k{i}".encode() for i in range(20)]})
    return out


class TestCifar:
    @pytest.mark.parametrize("kind,folder", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python")])
    def test_round_trip(self, tmp_path: Path, kind: str, folder: str):
        """Both layouts: pixels exact, labels in file order, class names and train statistics recorded."""
        ref = make_cifar(tmp_path / folder, kind)
        res = run_script("write_cifar.py", f"--cfg.data_dir={tmp_path / folder}", f"--cfg.write_dir={tmp_path}/o",
                         "--cfg.num_workers=1")
        assert res.returncode == 0, res.stderr[-2000:]
        for split in ("train", "val"):
            x, y = raw_images(tmp_path / "o" / f"{split}.beton", 32, 32)
            np.testing.assert_array_equal(x, ref[split][0])
            np.testing.assert_array_equal(y, ref[split][1])
        meta = read_sidecar(tmp_path / "o" / "train.beton")
        assert meta["source"]["kind"] == kind and meta["num_classes"] == (10 if kind == "cifar10" else 100)
        train = ref["train"][0].reshape(-1, 3).astype(np.float64)
        np.testing.assert_allclose(meta["mean"], train.mean(0), rtol=1e-6)
        np.testing.assert_allclose(meta["std"], train.std(0), rtol=1e-6)

    def test_rejects_code_in_pickle(self, tmp_path: Path):
        """A pickle that would call a function is refused, not executed."""
        make_cifar(tmp_path / "c", "cifar10")
        marker = tmp_path / "pwned"

        class Evil:
            def __reduce__(self):
                return (os.mkdir, (str(marker),))
        _pickle(tmp_path / "c" / "data_batch_3", {b"data": Evil()})
        res = run_script("write_cifar.py", f"--cfg.data_dir={tmp_path / 'c'}", f"--cfg.write_dir={tmp_path}/o")
        assert res.returncode == 2 and "refusing" in res.stderr and "Traceback" not in res.stderr
        assert not marker.exists() and not (tmp_path / "o" / "train.beton").exists()

    def test_not_a_cifar_folder(self, tmp_path: Path):
        """A folder without CIFAR's meta file says which layouts are expected."""
        (tmp_path / "x").mkdir()
        res = run_script("write_cifar.py", f"--cfg.data_dir={tmp_path / 'x'}", f"--cfg.write_dir={tmp_path}/o")
        assert res.returncode == 2 and "cifar-10-batches-py" in res.stderr and "Traceback" not in res.stderr
