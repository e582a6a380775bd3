"""The torch engine (.beton read with numpy, decoded in a torch DataLoader, no FFCV) against the source data and
against the FFCV engine, on files written by our writers; and train_ffcv.py + evaluate with FFCV unimportable.

``SDPNET_BLOCK_FFCV=1 pytest tests/test_torch_reader.py tests/test_data_loaders.py`` runs these and the loader tests
with ``import ffcv`` failing (tests/conftest.py): the comparisons with FFCV skip, the rest run on the torch engine.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import BLOCK_FFCV, FASHION_MNIST_DIR, REPO, make_image_folder, run_script
from sdpnet.data import beton_reader, crops, torch_loader
from sdpnet.data.beton_reader import ALLOC_TABLE, FIELD_DESC, HEADER, JPEG, RAW, BetonReader, metadata_type
from sdpnet.data.loaders import (FFCV_ERROR, make_train_loader, make_val_loader, resolve_engine,
                                 set_train_resolution)
from sdpnet.data.pipeline import LoaderError, shard_indices, subset_indices
from sdpnet.data.sources import read_idx
from sdpnet.train.validate import evaluate

needs_ffcv = pytest.mark.skipif(FFCV_ERROR is not None, reason=f"FFCV is not importable ({FFCV_ERROR})")
UNIT = dict(mean=[0, 0, 0], std=[1, 1, 1])   # batches in pixel levels: differences read as 0-255 levels
# Train augmentation of the comparisons: random crops (upscaled at 28 px, both ways on the 128-px images), flips
TRAIN = dict(scale=(0.35, 1), ratio=(3 / 4, 4 / 3), flip=True)


# FFCV loaders stay referenced: dropping one frees numba-compiled functions that a later loader shares, and numba's
# finalizer then prints a KeyError traceback (as in sdpnet/tools/evaluate.py)
_KEEP: list = []


def epoch(loader, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One epoch (its first n batches) concatenated; FFCV reuses its buffers, so each batch is copied."""
    if not isinstance(loader, torch_loader.TorchLoader):
        _KEEP.append(loader)
    xs, ys = [], []
    for i, (x, y) in enumerate(loader):
        if n is not None and i == n:
            break
        xs.append(x.clone())
        ys.append(y.clone())
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One ImageFolder tree written twice by data_prep/write_imagenet.py (max side 128): raw pixels, and FFCV's
    proportion mode (each image raw or JPEG at random)."""
    root = make_image_folder(tmp_path_factory.mktemp("torch_reader") / "train")
    out = {}
    for mode in ("raw", "proportion"):
        out[mode] = root.parent / f"{mode}.beton"
        res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={out[mode]}",
                         f"--cfg.write_mode={mode}", "--cfg.max_resolution=128", "--cfg.num_workers=1")
        assert res.returncode == 0, res.stderr[-2000:]
    modes = BetonReader(out["proportion"]).images["mode"]
    assert {JPEG, RAW} <= set(modes.tolist()), "the proportion file should hold both kinds"
    return out


class TestFormat:
    @needs_ffcv
    def test_dtypes_are_ffcvs(self):
        """The on-disk types are FFCV's own, field for field and byte for byte."""
        from sdpnet.data.ffcv_import import import_ffcv
        import_ffcv()
        from ffcv.fields import IntField, RGBImageField
        from ffcv.types import ALLOC_TABLE_TYPE, FieldDescType, HeaderType, get_metadata_type
        assert (HEADER, FIELD_DESC, ALLOC_TABLE) == (HeaderType, FieldDescType, ALLOC_TABLE_TYPE)
        assert metadata_type([2, 1]) == get_metadata_type([RGBImageField(), IntField()])
        assert metadata_type([1, 2]) == get_metadata_type([IntField(), RGBImageField()])

    def test_reads_what_the_writer_wrote(self, fashion_mnist_betons: Path):
        """Fashion-MNIST's val.beton holds the IDX pixels (grey in 3 channels) and labels, in file order."""
        reader = BetonReader(fashion_mnist_betons / "val.beton")
        ref_x = read_idx(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")
        ref_y = read_idx(Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz")
        assert reader.num_samples == len(ref_x) == 10000
        np.testing.assert_array_equal(reader.labels, ref_y)
        for i in (0, 1, 4999, 9999):
            np.testing.assert_array_equal(reader.image(i), np.repeat(ref_x[i][:, :, None], 3, 2))

    def test_jpeg_samples_are_the_writers_jpegs(self, images: dict[str, Path]):
        """Each JPEG sample's bytes are exactly the writer's encoding (OpenCV, quality 90) of its raw-written twin,
        and decode to the twin's size and, within JPEG's loss, pixels."""
        cv2 = pytest.importorskip("cv2")
        raw, mixed = BetonReader(images["raw"]), BetonReader(images["proportion"])
        np.testing.assert_array_equal(raw.labels, mixed.labels)
        for i in np.flatnonzero(mixed.images["mode"] == JPEG).tolist():
            twin = raw.image(i)
            ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(twin, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok and np.array_equal(mixed.stored(i), encoded.reshape(-1)), i
            pixels = mixed.image(i).astype(int)
            assert pixels.shape == twin.shape and np.abs(pixels - twin).mean() < 10, i

    def test_pickles_without_the_mapping(self, fashion_mnist_betons: Path):
        """A worker gets the metadata, not a copy of the mapped file, and maps the file itself."""
        import pickle
        reader = BetonReader(fashion_mnist_betons / "val.beton")
        reader.image(0)
        copy = pickle.loads(pickle.dumps(reader))
        assert copy._data is None and len(pickle.dumps(reader)) < 1_000_000
        np.testing.assert_array_equal(copy.image(7), reader.image(7))


class TestTorchEngine:
    """The torch engine on its own: pixels, order, replay, resolution, errors (also runs with FFCV blocked)."""

    def test_val_pixels_match_source(self, fashion_mnist_betons: Path):
        """A full-image centre crop at 28 px gives the IDX pixels in file order, the last partial batch kept."""
        sub = subset_indices(10000, 300, seed=0)
        x, y = epoch(make_val_loader(str(fashion_mnist_betons / "val.beton"), batch_size=128, res=28,
                                     crop_ratio=1.0, subset=300, engine="torch", **UNIT))
        assert x.shape == (300, 3, 28, 28) and x.is_contiguous(memory_format=torch.channels_last)
        np.testing.assert_array_equal(y.numpy(), read_idx(Path(FASHION_MNIST_DIR) / "t10k-labels-idx1-ubyte.gz")[sub])
        ref = read_idx(Path(FASHION_MNIST_DIR) / "t10k-images-idx3-ubyte.gz")[sub]
        for c in range(3):
            np.testing.assert_array_equal(x[:, c].numpy(), ref)

    def test_order_is_the_sharded_order(self, fashion_mnist_betons: Path):
        """Each epoch reads shard_indices(seed, epoch) in batches; len drops the remainder; rank 1 of 3 its slice."""
        path = str(fashion_mnist_betons / "train.beton")
        labels = read_idx(Path(FASHION_MNIST_DIR) / "train-labels-idx1-ubyte.gz")
        base = subset_indices(60000, 500, seed=5)
        loader = make_train_loader(path, batch_size=64, res=28, subset=500, seed=5, num_workers=1, engine="torch")
        assert len(loader) == 7
        for e in (0, 1):
            order = shard_indices(base, rank=0, world_size=1, epoch=e, seed=5, shuffle=True)[:7 * 64]
            np.testing.assert_array_equal(loader.next_traversal_order()[:7 * 64], order)
            np.testing.assert_array_equal(epoch(loader)[1].numpy(), labels[order])
        shard = torch_loader.train_loader(path, batch_size=32, res=28, num_workers=0, device=torch.device("cpu"),
                                          rank=1, world=3, seed=5, indices=base, scale=(1, 1), ratio=(1, 1),
                                          flip=False, translate=0, mean=np.zeros(3), std=np.ones(3),
                                          channels_last=True, drop_last=True, shuffle=True)
        order = shard_indices(base, rank=1, world_size=3, epoch=0, seed=5, shuffle=True)
        assert len(shard) == len(order) // 32
        np.testing.assert_array_equal(epoch(shard)[1].numpy(), labels[order[:len(shard) * 32]])

    def test_epochs_replay_with_any_worker_count(self, fashion_mnist_betons: Path):
        """The same epoch in a fresh loader with 0 or 2 workers (a resume) gives the same batches; the next epoch
        draws anew (most images differ)."""
        def run(workers: int, e: int) -> torch.Tensor:
            loader = make_train_loader(str(fashion_mnist_betons / "train.beton"), batch_size=64, res=24,
                                       subset=256, translate=2, num_workers=workers, engine="torch", **TRAIN)
            loader.next_epoch = e
            return epoch(loader)[0]
        a, b, c = run(0, 1), run(2, 1), run(0, 2)
        assert torch.equal(a, b)
        orders = [shard_indices(subset_indices(60000, 256, 0), rank=0, world_size=1, epoch=e, seed=0, shuffle=True)
                  for e in (1, 2)]
        where = {int(i): k for k, i in enumerate(orders[1])}
        same = [torch.equal(a[k], c[where[int(i)]]) for k, i in enumerate(orders[0])]
        assert sum(same) < 0.1 * len(same)

    def test_resolution_changes_between_epochs(self, images: dict[str, Path]):
        """set_train_resolution takes effect at the next epoch (persistent workers); a val loader refuses it."""
        loader = make_train_loader(str(images["proportion"]), batch_size=4, res=24, num_workers=1, engine="torch")
        shapes = []
        for res in (24, 40, 16):
            set_train_resolution(loader, res)
            shapes.append({tuple(x.shape) for x, _ in loader})
        assert shapes == [{(4, 3, 24, 24)}, {(4, 3, 40, 40)}, {(4, 3, 16, 16)}]
        with pytest.raises(ValueError, match="validation loader"):
            set_train_resolution(make_val_loader(str(images["raw"]), batch_size=4, res=8, engine="torch"), 16)

    def test_a_bad_sample_is_one_loader_error(self, images: dict[str, Path], tmp_path: Path):
        """A JPEG whose bytes are garbage ends the epoch with a LoaderError naming the file and the sample."""
        bad = tmp_path / "bad.beton"
        shutil.copy(images["proportion"], bad)
        shutil.copy(str(images["proportion"]) + ".json", str(bad) + ".json")
        reader = BetonReader(bad)
        i = int(np.flatnonzero(reader.images["mode"] == JPEG)[0])
        with open(bad, "r+b") as f:
            f.seek(int(reader.images["data_ptr"][i]))
            f.write(b"\x00" * int(reader.sizes[i]))
        loader = make_val_loader(str(bad), batch_size=4, res=16, num_workers=1, engine="torch")
        with pytest.raises(LoaderError, match=re.escape(f"'{bad}' (sample {i}: ")) as e:
            epoch(loader)
        assert "\n" not in str(e.value)

    def test_without_opencv_within_one_level(self, images: dict[str, Path], fashion_mnist_betons: Path,
                                             monkeypatch: pytest.MonkeyPatch):
        """Without OpenCV the numpy INTER_AREA is within 1 level of OpenCV's (JPEGs: Pillow, the same pixels)."""
        def run(path: Path, train: bool) -> torch.Tensor:   # in this process (0 workers): the patch applies
            make = make_train_loader if train else make_val_loader
            kw = TRAIN if train else dict(crop_ratio=0.875)
            return epoch(make(str(path), batch_size=8, res=40, num_workers=0, engine="torch", subset=200, **UNIT,
                              **kw))[0]
        cases = [(images["proportion"], True), (images["proportion"], False),
                 (fashion_mnist_betons / "val.beton", False)]   # 128-px images shrunk and enlarged; 28 px enlarged
        ref = [run(p, t) for p, t in cases]
        monkeypatch.setattr(crops, "cv2", None)
        monkeypatch.setattr(beton_reader, "cv2", None)
        for (p, t), r in zip(cases, ref):
            d = (run(p, t) - r).abs()
            assert d.max() <= 1 and d.mean() < 0.1, (p, t, float(d.max()), float(d.mean()))


class TestEngines:
    def test_resolve(self):
        """auto is FFCV where it imports, else torch with the one-line note; ffcv without FFCV is refused."""
        assert resolve_engine("torch") == ("torch", None)
        with pytest.raises(ValueError, match="engine='fast'"):
            resolve_engine("fast")
        if FFCV_ERROR is None:
            assert resolve_engine("auto") == ("ffcv", None) and resolve_engine("ffcv") == ("ffcv", None)
        else:
            engine, note = resolve_engine("auto")
            assert engine == "torch" and note == (f"FFCV is not importable ({FFCV_ERROR}); reading .beton files "
                                                  f"with the torch engine") and "\n" not in note
            with pytest.raises(ValueError, match="FFCV is not importable"):
                resolve_engine("ffcv")

    def test_blocked_means_torch(self):
        """With SDPNET_BLOCK_FFCV=1 FFCV does not import and auto reads with the torch engine."""
        if not BLOCK_FFCV:
            pytest.skip("FFCV is not blocked in this run")
        assert FFCV_ERROR is not None and "blocked" in FFCV_ERROR and resolve_engine("auto")[0] == "torch"
        with pytest.raises(ImportError):
            import ffcv  # noqa: F401


@needs_ffcv
class TestSameAsFFCV:
    """The two engines on the same files and settings (FFCV with one thread: the setting where its draws replay)."""

    def test_val_bit_identical_and_same_top1(self, fashion_mnist_betons: Path):
        """Raw Fashion-MNIST validation: identical float batches and labels, so the same evaluate() numbers on the
        same weights."""
        kw = dict(batch_size=500, res=28, crop_ratio=1.0, subset=2000, num_workers=1)
        path = str(fashion_mnist_betons / "val.beton")
        (xf, yf), (xt, yt) = (epoch(make_val_loader(path, engine=e, **kw)) for e in ("ffcv", "torch"))
        assert torch.equal(xf, xt) and torch.equal(yf, yt)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.GELU(),
                                    torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 10))
        ref, got = (evaluate({"model": model}, make_val_loader(path, engine=e, **kw), amp=False, flip=True)
                    for e in ("ffcv", "torch"))
        assert got == ref and 0 < ref["top1"] < 1

    def test_train_bit_identical(self, fashion_mnist_betons: Path):
        """Raw Fashion-MNIST training with crops, flips and shifts: identical batches in epochs 0 and 3 (torch with
        2 worker processes, FFCV with 1 thread)."""
        path = str(fashion_mnist_betons / "train.beton")
        kw = dict(batch_size=64, res=24, subset=1024, translate=2, seed=3, **TRAIN)
        ffcv, torch_ = (make_train_loader(path, engine="ffcv", num_workers=1, **kw),
                        make_train_loader(path, engine="torch", num_workers=2, **kw))
        assert len(ffcv) == len(torch_) == 16
        for e in (0, 3):
            ffcv.next_epoch = torch_.next_epoch = e
            (xf, yf), (xt, yt) = epoch(ffcv), epoch(torch_)
            assert torch.equal(yf, yt) and torch.equal(xf, xt), e

    def test_mixed_file_raw_identical_jpeg_within_tolerance(self, images: dict[str, Path]):
        """Images of many sizes, raw and JPEG: raw ones identical after crops that shrink and enlarge; JPEG ones
        within the decoders' difference (FFCV's fast IDCT against the accurate one): under 1.5 levels on average,
        at most 8."""
        path = str(images["proportion"])
        raw = BetonReader(path).images["mode"] == RAW
        for train in (False, True):
            if train:
                kw = dict(batch_size=4, res=48, **TRAIN, **UNIT)
                f = make_train_loader(path, engine="ffcv", num_workers=1, **kw)
                t = make_train_loader(path, engine="torch", num_workers=1, **kw)
                f.next_epoch = t.next_epoch = 2
                order = t.next_traversal_order()[:len(t) * 4]
            else:
                kw = dict(batch_size=5, res=40, crop_ratio=0.875, **UNIT)
                f = make_val_loader(path, engine="ffcv", num_workers=1, **kw)
                t = make_val_loader(path, engine="torch", num_workers=1, **kw)
                order = np.arange(len(raw))
            (xf, yf), (xt, yt) = epoch(f), epoch(t)
            assert torch.equal(yf, yt)
            is_raw = torch.from_numpy(raw[order])
            assert torch.equal(xf[is_raw], xt[is_raw]), train
            d = (xf[~is_raw] - xt[~is_raw]).abs()
            assert d.mean() < 1.5 and d.max() <= 8, (train, float(d.mean()), float(d.max()))

    def test_image_files_prepared_as_ffcv(self):
        """predict/attention/export's preprocessing (sdpnet.tools.images, no FFCV) equals FFCV's own functions on
        random sizes: the writer's downscale, the centre crop and area resize, the normalisation table."""
        from ffcv.fields.rgb_image import get_center_crop, resizer
        from ffcv.libffcv import resize_crop
        from ffcv.transforms import NormalizeImage

        from sdpnet.tools.images import crop, normalise

        rng = np.random.default_rng(0)
        for k in range(60):
            h, w = (int(v) for v in rng.integers(30, 300, 2))
            rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pre = dict(res=int(rng.integers(4, 64)), crop_ratio=float(rng.uniform(0.5, 1)),
                       max_resolution=None if k % 2 else int(rng.integers(16, 200)), mean=[120.5, 110, 99],
                       std=[50, 61.25, 70])
            img = np.ascontiguousarray(resizer(rgb, pre["max_resolution"]))
            assert np.array_equal(crops.downscale(rgb, pre["max_resolution"]), img)
            i, j, ch, cw = get_center_crop(img.shape[0], img.shape[1], None, pre["crop_ratio"])
            want = np.empty((pre["res"], pre["res"], 3), np.uint8)
            resize_crop(img, i, i + ch, j, j + cw, want)
            got = crop(rgb, pre)
            assert np.array_equal(got, want), (h, w, pre)
        table = NormalizeImage(np.array(pre["mean"]), np.array(pre["std"]), np.float32).lookup_table
        assert torch.equal(normalise(got, pre), torch.from_numpy(table[got, np.arange(3)]).permute(2, 0, 1))

    def test_sequential_order(self, fashion_mnist_betons: Path):
        """The sequential order (no crop, no flip: nothing random) gives the same batches."""
        kw = dict(batch_size=100, res=28, subset=300, scale=(1, 1), ratio=(1, 1), flip=False, order="sequential",
                  num_workers=1)
        path = str(fashion_mnist_betons / "train.beton")
        (xf, yf), (xt, yt) = (epoch(make_train_loader(path, engine=e, **kw)) for e in ("ffcv", "torch"))
        assert torch.equal(xf, xt) and torch.equal(yf, yt)

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
    def test_cuda_batches_as_on_cpu(self, fashion_mnist_betons: Path):
        """On CUDA the torch engine normalises on the device with the same table: the CPU's floats, on the GPU."""
        kw = dict(batch_size=256, res=28, crop_ratio=1.0, subset=512, engine="torch")
        path = str(fashion_mnist_betons / "val.beton")
        (xc, yc), (xg, yg) = (epoch(make_val_loader(path, device=d, **kw)) for d in ("cpu", "cuda"))
        assert xg.device.type == "cuda" and xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(xc, xg.cpu()) and torch.equal(yc, yg.cpu())


# ---- FFCV unimportable: the trainer and evaluate in subprocesses -----------------------------------------------

def _run(args: list[str], block: Path | None, timeout: float = 600) -> subprocess.CompletedProcess:
    path = [str(block)] if block else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [str(REPO)])}
    env.pop("SDPNET_BLOCK_FFCV", None)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(BLOCK_FFCV, reason="runs its own subprocesses (with FFCV blocked there)")
class TestWithoutFFCV:
    NOTE = "note: FFCV is not importable (ImportError: ffcv is blocked for this test); reading .beton files with " \
           "the torch engine"

    def test_train_and_evaluate(self, fashion_mnist_betons: Path, ffcv_blocker: Path, tmp_path: Path):
        """train_ffcv.py trains an epoch with the note, evaluate repeats its top-1 without FFCV, and with FFCV (where
        it imports) evaluate gives the same top-1 on the same weights; --data.engine=ffcv is refused, exit 2."""
        d, run, blocker = fashion_mnist_betons, tmp_path / "run", ffcv_blocker
        args = ["train_ffcv.py", "--spec", "P4(d=16)-[DWC3+MLP]x1-MLP", "-C", "configs/fashion_mnist.yaml",
                "--training.epochs=1", "--data.train_subset=512", "--data.val_subset=500",
                "--training.batch_size=64", f"--data.train_path={d / 'train.beton'}",
                f"--data.val_path={d / 'val.beton'}", "--logging.progress=0", "--training.amp=off"]
        res = _run([*args, f"--logging.folder={run}"], blocker)
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.splitlines().count(self.NOTE) == 1, res.stdout
        assert json.loads((run / "config.json").read_text())["data_engine"] == "torch"
        refused = _run([*args, f"--logging.folder={tmp_path / 'no'}", "--data.engine=ffcv"], blocker)
        assert refused.returncode == 2 and "--data.engine=ffcv: engine=ffcv but FFCV is not importable" in \
            refused.stderr and not (tmp_path / "no").exists()

        reports = {}
        for name, block in (("torch", blocker), ("ffcv", None)):
            if name == "ffcv" and FFCV_ERROR is not None:
                continue
            ev = _run(["-m", "sdpnet", "evaluate", str(run), "--out", str(tmp_path / name), "--device", "cpu"], block)
            assert ev.returncode == 0, ev.stderr[-3000:]
            assert (self.NOTE in ev.stderr.splitlines()) == (name == "torch"), ev.stderr
            reports[name] = json.loads((tmp_path / name / "evaluate.json").read_text())
            assert reports[name]["engine"] == name and reports[name]["recorded"]["matches"], reports[name]["recorded"]
        if "ffcv" in reports:
            assert reports["ffcv"]["sweep"][0]["top1"] == reports["torch"]["sweep"][0]["top1"]
            assert reports["ffcv"]["sweep"][0]["loss"] == reports["torch"]["sweep"][0]["loss"]

    def test_loader_tests_pass_with_ffcv_blocked(self, fashion_mnist_betons: Path):
        """This file's tests and tests/test_data_loaders.py pass with SDPNET_BLOCK_FFCV=1 (FFCV's own skip)."""
        env = {**os.environ, "SDPNET_BLOCK_FFCV": "1", "SDPNET_TEST_BETONS": str(fashion_mnist_betons),
               "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                              "tests/test_torch_reader.py", "tests/test_data_loaders.py"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout[-4000:]
        assert "FFCV is not importable" in res.stdout and " failed" not in res.stdout
