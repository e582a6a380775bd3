"""The train/val loader factory on real .beton files: batches, normalisation, resolution, subsets, shards."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import FASHION_MNIST_DIR, REPO, make_image_folder, run_script
from sdpnet.data import (IMAGENET_MEAN, IMAGENET_STD, dataset_stats, make_train_loader, make_val_loader,
                         read_sidecar, set_train_resolution, shard_indices, subset_indices)
from sdpnet.data.loaders import FFCV_ERROR
from sdpnet.data.sources import read_idx


@pytest.fixture(scope="module")
def mixed_beton(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Images of several sizes and modes, half raw and half JPEG (FFCV's proportion mode)."""
    root = make_image_folder(tmp_path_factory.mktemp("mixed") / "train")
    out = root.parent / "mixed.beton"
    res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={out}",
                     "--cfg.max_resolution=128", "--cfg.num_workers=1")
    assert res.returncode == 0, res.stderr[-2000:]
    return out


class TestBatches:
    def test_train_batch_format(self, fashion_mnist_betons: Path):
        """float32 (B,3,res,res) channels_last, sidecar-normalised; int64 labels; 10 batches of 64."""
        loader = make_train_loader(str(fashion_mnist_betons / "train.beton"), batch_size=64, res=28,
                                   subset=640, scale=(1, 1), ratio=(1, 1), flip=False, translate=4,
                                   order="sequential")
        x, y = next(iter(loader))
        assert x.shape == (64, 3, 28, 28) and x.dtype == torch.float32 and x.device.type == "cpu"
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert y.shape == (64,) and y.dtype == torch.int64
        assert len(loader) == 10
        sub = subset_indices(60000, 640, seed=0)[:64]
        np.testing.assert_array_equal(y.numpy(), read_idx(Path(FASHION_MNIST_DIR) / "train-labels-idx1-ubyte.gz")[sub])
        # translate=4: each image is its source shifted by at most 4 px, zero-filled
        meta = read_sidecar(fashion_mnist_betons / "train.beton")
        pixels = (x[:, 0] * meta["std"][0] + meta["mean"][0]).round().numpy()
        src = np.pad(read_idx(Path(FASHION_MNIST_DIR) / "train-images-idx3-ubyte.gz")[sub].astype(float), ((0, 0), (4, 4), (4, 4)))
        shifts = []
        for img, padded in zip(pixels, src):
            shifts += [(dy, dx) for dy in range(9) for dx in range(9)
                       if np.array_equal(padded[dy:dy + 28, dx:dx + 28], img)][:1]
        assert len(shifts) == 64 and len(set(shifts)) > 10

    def test_val_pixels_match_source(self, fashion_mnist_betons: Path):
        """A full-image centre crop at 28 px undoes to the IDX pixels, in file order, labels included."""
        sub = subset_indices(10000, 300, seed=0)
        loader = make_val_loader(str(fashion_mnist_betons / "val.beton"), batch_size=128, res=28,
                                 crop_ratio=1.0, subset=300, mean=[10, 20, 30], std=[2, 4, 8])
        xs, ys = zip(*[(x.clone(), y.clone()) for x, y in loader])   # copy: buffers are reused
        x, y = torch.cat(xs), torch.cat(ys)
        ref_x = read_idx(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")[sub]
        ref_y = read_idx(Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz")[sub]
        assert len(x) == 300   # the last, partial batch is kept
        np.testing.assert_array_equal(y.numpy(), ref_y)
        for c, (m, s) in enumerate(zip([10, 20, 30], [2, 4, 8])):
            np.testing.assert_allclose((x[:, c] * s + m).numpy(), ref_x, atol=1e-3)

    def test_mixed_sizes_and_jpeg(self, mixed_beton: Path):
        """Variable-size raw and JPEG samples all come out at the requested size, every label once."""
        loader = make_val_loader(str(mixed_beton), batch_size=8, res=40)
        shapes = {tuple(x.shape[1:]) for x, _ in loader}
        ys = torch.cat([y.clone() for _, y in loader])
        assert shapes == {(3, 40, 40)}
        assert sorted(ys.tolist()) == [0] * 8 + [1] * 7 + [2] * 7

    def test_mean_std_from_sidecar_else_imagenet(self, fashion_mnist_betons: Path, mixed_beton: Path,
                                                 tmp_path: Path):
        """Statistics come from the argument, else the sidecar, else ImageNet's."""
        bare = tmp_path / "bare.beton"
        os.symlink(mixed_beton, bare)
        mean, std = dataset_stats(str(bare))
        np.testing.assert_allclose(mean, IMAGENET_MEAN) and np.testing.assert_allclose(std, IMAGENET_STD)
        meta = read_sidecar(fashion_mnist_betons / "val.beton")
        np.testing.assert_allclose(dataset_stats(str(fashion_mnist_betons / "val.beton"))[0], meta["mean"])
        np.testing.assert_allclose(dataset_stats(str(bare), [1, 2, 3], [4, 5, 6])[1], [4, 5, 6])
        with pytest.raises(ValueError, match="std > 0"):
            dataset_stats(str(bare), None, [1, 0, 1])

    def test_bad_arguments(self, mixed_beton: Path, tmp_path: Path):
        """Wrong paths and values fail with a message that names them."""
        with pytest.raises(FileNotFoundError, match="nope.beton"):
            make_train_loader(str(tmp_path / "nope.beton"), batch_size=4, res=8)
        with pytest.raises(ValueError, match="order='shuffled'"):
            make_train_loader(str(mixed_beton), batch_size=4, res=8, order="shuffled")
        with pytest.raises(ValueError, match="validation loader"):
            set_train_resolution(make_val_loader(str(mixed_beton), batch_size=4, res=8), 16)


def test_resolution_changes_between_epochs(mixed_beton: Path):
    """set_train_resolution takes effect at the next epoch on the same loader object."""
    loader = make_train_loader(str(mixed_beton), batch_size=4, res=24, num_workers=1)
    shapes = []
    for res in (24, 40, 16):
        set_train_resolution(loader, res)
        shapes.append({tuple(x.shape) for x, _ in loader})
    assert shapes == [{(4, 3, 24, 24)}, {(4, 3, 40, 40)}, {(4, 3, 16, 16)}]


class TestIndices:
    def test_subset_fixed_and_seeded(self):
        """The quick-run subset is a sorted, repeatable random choice without repeats."""
        a = subset_indices(1000, 100, seed=3)
        assert len(set(a.tolist())) == 100 and (np.diff(a) > 0).all()
        np.testing.assert_array_equal(a, subset_indices(1000, 100, seed=3))
        assert not np.array_equal(a, subset_indices(1000, 100, seed=4))
        np.testing.assert_array_equal(subset_indices(50, None), np.arange(50))
        with pytest.raises(ValueError, match="subset=0"):
            subset_indices(50, 0)

    @pytest.mark.parametrize("world", [2, 3, 8])
    def test_train_shards_disjoint_equal_and_reshuffled(self, world: int):
        """Train shards: disjoint, equal length, nearly covering the subset, new order each epoch."""
        base = subset_indices(1003, 501, seed=0)
        for epoch in (0, 1):
            shards = [shard_indices(base, rank=r, world_size=world, epoch=epoch, seed=0, shuffle=True)
                      for r in range(world)]
            allx = np.concatenate(shards)
            assert len(set(allx.tolist())) == len(allx) == (501 // world) * world
            assert set(allx.tolist()) <= set(base.tolist())
        e0 = shard_indices(base, rank=0, world_size=world, epoch=0, seed=0, shuffle=True)
        e1 = shard_indices(base, rank=0, world_size=world, epoch=1, seed=0, shuffle=True)
        assert not np.array_equal(e0, e1)

    def test_val_shards_cover_everything(self):
        """Validation shards are disjoint and together hold every index exactly once."""
        base = np.arange(10)
        shards = [shard_indices(base, rank=r, world_size=3, epoch=0, seed=0, shuffle=False) for r in range(3)]
        assert sorted(np.concatenate(shards).tolist()) == list(range(10))


def _rank_main(rank: int, path: str, port: int, out: str) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=2, init_method=f"tcp://127.0.0.1:{port}")
    try:
        loader = make_val_loader(path, batch_size=16, res=28, crop_ratio=1.0, subset=100, distributed=True,
                                 num_workers=1, mean=[0, 0, 0], std=[1, 1, 1])
        images = torch.cat([x[:, 0].clone().flatten(1) for x, _ in loader])
        torch.save({"val": images}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_ranks_read_disjoint_shards(fashion_mnist_betons: Path, tmp_path: Path):
    """Two gloo ranks over a 100-image subset read disjoint halves that together cover it."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(str(fashion_mnist_betons / "val.beton"), port, str(tmp_path)), nprocs=2)
    r0, r1 = (torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in (0, 1))
    ref = read_idx(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")[subset_indices(10000, 100, 0)]
    got = sorted(map(bytes, torch.cat([r0["val"], r1["val"]]).round().to(torch.uint8).numpy()))
    assert len(r0["val"]) == len(r1["val"]) == 50
    assert got == sorted(map(bytes, ref.reshape(100, -1)))


@pytest.mark.skipif(FFCV_ERROR is not None, reason=f"FFCV's own workarounds; FFCV is not importable ({FFCV_ERROR})")
def test_ffcv_import_workarounds(fashion_mnist_betons: Path):
    """Importing the loaders and reading a batch with num_workers=1 leave torch at 2 threads (FFCV sets 1);
    FFCV's image modes are a plain dict with FFCV's values, and numba's typed Dict is left in place."""
    code = (f"import torch; torch.set_num_threads(2); from sdpnet.data import make_train_loader; "
            f"print(torch.get_num_threads()); "
            f"loader = make_train_loader({str(fashion_mnist_betons / 'train.beton')!r}, batch_size=32, res=28, "
            f"num_workers=1, subset=64); print(torch.get_num_threads()); "
            f"x, y = next(iter(loader)); print(torch.get_num_threads(), tuple(x.shape), x.std() > 0); "
            f"import numba.typed, numba.typed.typeddict as td, ffcv.fields.rgb_image as r; "
            f"print(type(r.IMAGE_MODES).__name__, sorted(r.IMAGE_MODES.items()), numba.typed.Dict is td.Dict)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.splitlines() == ["2", "2", "2 (32, 3, 28, 28) tensor(True)",
                                       "dict [('jpg', 0), ('raw', 1)] True"]


class TestReplay:
    """Crop, flip and translate are a function of (seed, epoch) with num_workers=1."""

    @staticmethod
    def _epoch(loader, epoch: int) -> list[torch.Tensor]:
        loader.next_epoch = epoch
        return [x.clone() for x, _ in loader]   # copy: buffers are reused

    def _loader(self, path: Path):
        return make_train_loader(str(path / "train.beton"), batch_size=64, res=24, num_workers=1,
                                 subset=256, scale=(0.35, 1), flip=True, translate=2)

    def test_epoch_replays(self, fashion_mnist_betons: Path):
        """The same epoch twice, or in a fresh loader (a resume), gives identical batches."""
        loader = self._loader(fashion_mnist_betons)
        first, again = self._epoch(loader, 1), self._epoch(loader, 1)
        fresh = self._epoch(self._loader(fashion_mnist_betons), 1)
        assert len(first) == 4
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert all(torch.equal(a, b) for a, b in zip(first, fresh))

    def test_new_draws_each_epoch(self, fashion_mnist_betons: Path):
        """Seeding does not freeze the augmentation: a sample's image differs between two epochs."""
        loader = self._loader(fashion_mnist_betons)
        images, orders = [], []
        for epoch in (0, 1):
            orders.append(shard_indices(subset_indices(60000, 256, 0), rank=0, world_size=1, epoch=epoch,
                                        seed=0, shuffle=True).tolist())
            images.append(torch.cat(self._epoch(loader, epoch)))
        assert sorted(orders[0]) == sorted(orders[1])
        same = [torch.equal(images[0][orders[0].index(i)], images[1][orders[1].index(i)]) for i in orders[0]]
        assert sum(same) < 0.1 * len(same)
