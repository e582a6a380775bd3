"""ImageFolder -> .beton through the real CLI, read back from the file; bad input; atomic output."""
from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from ffcv.fields.rgb_image import resizer
from ffcv.reader import Reader
from PIL import Image

from conftest import REPO, make_image_folder, run_script, smooth_image
from sdpnet.data import read_sidecar
from sdpnet.data.sources import IMG_EXTENSIONS


def load_rgb(path: str) -> np.ndarray:
    """PIL's RGB conversion, as torchvision's ImageFolder does it."""
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def beton_samples(path: Path) -> list[tuple[str, np.ndarray, int]]:
    """Every sample of an image/label .beton as (mode, HxWx3 pixels, label), read from the file."""
    reader = Reader(str(path))
    sizes = {int(p): int(s) for p, s in zip(reader.alloc_table["ptr"], reader.alloc_table["size"])}
    blob = np.fromfile(path, np.uint8)
    out = []
    for meta in reader.metadata:
        img, label = meta["f0"], int(meta["f1"])
        ptr, h, w = int(img["data_ptr"]), int(img["height"]), int(img["width"])
        data = blob[ptr:ptr + sizes[ptr]]
        if img["mode"] == 1:
            out.append(("raw", data[:h * w * 3].reshape(h, w, 3), label))
        else:
            out.append(("jpg", cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), label))
    return out


def source_files(root: Path, skipped: set[str] = frozenset()) -> list[tuple[str, int]]:
    """The (path, label) list in ImageFolder order, minus ``skipped``."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    return [(str(f), i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir(), key=str)
            if f.name.lower().endswith(IMG_EXTENSIONS) and str(f) not in skipped]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("imgs") / "train", corrupt=True)


@pytest.fixture(scope="module")
def written(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The corrupt-containing folder written in raw and jpg mode (max side 256)."""
    out = {}
    for mode in ("raw", "jpg"):
        path = tmp_path_factory.mktemp(mode) / "train.beton"
        res = run_script("write_imagenet.py", f"--cfg.data_dir={folder}", f"--cfg.write_path={path}",
                         f"--cfg.write_mode={mode}", "--cfg.max_resolution=256", "--cfg.num_workers=2")
        assert res.returncode == 0, res.stderr[-3000:]
        out[mode] = path
    return out


class TestImageFolderRoundTrip:
    def test_counts_labels_and_class_mapping(self, folder: Path, written: dict[str, Path]):
        """Every readable image is written once, in ImageFolder order, with its class index."""
        meta = read_sidecar(written["raw"])
        skipped = {s["path"] for s in meta["skipped"]}
        expected = source_files(folder, skipped)
        samples = beton_samples(written["raw"])
        assert meta["classes"] == ["cat", "dog", "zebra"]
        assert meta["class_to_idx"] == {"cat": 0, "dog": 1, "zebra": 2}
        assert meta["num_samples"] == len(samples) == len(expected) == 22
        assert [s[2] for s in samples] == [l for _, l in expected]
        assert meta["counts"] == {"cat": 8, "dog": 7, "zebra": 7}

    def test_corrupt_files_skipped_and_listed(self, folder: Path, written: dict[str, Path]):
        """Garbage and truncated JPEG/PNG files are skipped, listed with reasons, and counted."""
        meta = read_sidecar(written["raw"])
        names = sorted(Path(s["path"]).name for s in meta["skipped"])
        assert names == ["x_garbage.jpg", "y_truncated.jpg", "z_truncated.png"]
        assert all(s["error"] for s in meta["skipped"])

    def test_raw_pixels_exact(self, folder: Path, written: dict[str, Path]):
        """Raw mode stores PIL's RGB conversion (grey, RGBA, palette too), resized as FFCV does."""
        skipped = {s["path"] for s in read_sidecar(written["raw"])["skipped"]}
        for (path, _), (mode, pixels, _) in zip(source_files(folder, skipped), beton_samples(written["raw"])):
            assert mode == "raw"
            np.testing.assert_array_equal(pixels, resizer(load_rgb(path), 256), err_msg=path)

    def test_big_image_resized_to_max_resolution(self, written: dict[str, Path]):
        """The 700x500 image is stored with its longest side 256."""
        assert max(max(p.shape[:2]) for _, p, _ in beton_samples(written["raw"])) == 256

    def test_jpg_pixels_within_jpeg_tolerance(self, folder: Path, written: dict[str, Path]):
        """JPEG mode (quality 90) differs from the source no more than a PIL JPEG round trip does."""
        skipped = {s["path"] for s in read_sidecar(written["jpg"])["skipped"]}
        for (path, _), (mode, pixels, _) in zip(source_files(folder, skipped), beton_samples(written["jpg"])):
            ref = resizer(load_rgb(path), 256)
            buf = io.BytesIO()
            Image.fromarray(ref).save(buf, "JPEG", quality=90)
            tolerance = np.abs(np.asarray(Image.open(buf), float) - ref).mean()
            assert mode == "jpg" and pixels.shape == ref.shape
            assert np.abs(pixels - ref.astype(float)).mean() <= max(3.0, 1.5 * tolerance), path

    def test_sidecar_records_source_settings_and_stats(self, folder: Path, written: dict[str, Path]):
        """The sidecar carries the source path, the resolved settings and plausible channel stats."""
        meta = read_sidecar(written["jpg"])
        assert meta["source"]["path"] == str(folder) and meta["source"]["kind"] == "imagefolder"
        assert meta["settings"]["write_mode"] == "jpg" and meta["settings"]["max_resolution"] == 256
        assert meta["settings"]["strict"] is False and meta["settings"]["jpeg_quality"] == 90
        assert len(meta["mean"]) == 3 and all(60 < m < 200 for m in meta["mean"])
        assert all(10 < s < 128 for s in meta["std"])

    def test_defaults_are_ffcv_imagenet(self, tmp_path: Path):
        """Proportion mode, 500 px, 50% compression, quality 90; subset takes N random images."""
        root = make_image_folder(tmp_path / "t", classes=("a", "b"))
        out = tmp_path / "o.beton"
        res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={out}",
                         "--cfg.subset=5", "--cfg.num_workers=1")
        assert res.returncode == 0, res.stderr[-3000:]
        s = read_sidecar(out)["settings"]
        assert (s["write_mode"], s["max_resolution"], s["compress_probability"], s["jpeg_quality"]) == \
            ("proportion", 500, 0.5, 90)
        assert len(beton_samples(out)) == read_sidecar(out)["num_samples"] == 5


def _err(res: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in res.stderr, res.stderr
    return res.stderr


class TestBadInput:
    def test_missing_folder(self, tmp_path: Path):
        """A missing data folder is named, exit status 2, nothing written."""
        res = run_script("write_imagenet.py", f"--cfg.data_dir={tmp_path}/nope", f"--cfg.write_path={tmp_path}/o.beton")
        assert res.returncode == 2 and "does not exist" in _err(res) and "nope" in res.stderr
        assert not (tmp_path / "o.beton").exists()

    def test_empty_folder(self, tmp_path: Path):
        """A folder without class sub-folders is rejected with what was expected."""
        (tmp_path / "empty").mkdir()
        res = run_script("write_imagenet.py", f"--cfg.data_dir={tmp_path}/empty", f"--cfg.write_path={tmp_path}/o.beton")
        assert res.returncode == 2 and "no class sub-folders" in _err(res)

    def test_class_folder_without_images(self, tmp_path: Path):
        """A class folder holding no image is named."""
        root = make_image_folder(tmp_path / "d", classes=("a",), big=False)
        (root / "hollow").mkdir()
        (root / "hollow" / "readme.txt").write_text("x")
        res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={tmp_path}/o.beton")
        assert res.returncode == 2 and "'hollow'" in _err(res) and "hold no images" in res.stderr

    @pytest.mark.parametrize("bad", ["x_garbage.jpg", "y_truncated.jpg"])
    def test_strict_names_the_corrupt_file(self, tmp_path: Path, bad: str):
        """--cfg.strict=1 fails on a garbage (header) or truncated (decode) file and names it."""
        root = make_image_folder(tmp_path / "d", classes=("a", "dog"), corrupt=True, big=False)
        for other in {"x_garbage.jpg", "y_truncated.jpg", "z_truncated.png"} - {bad}:
            (root / "dog" / other).unlink()
        res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={tmp_path}/o.beton",
                         "--cfg.strict=1", "--cfg.num_workers=1")
        assert res.returncode == 2 and bad in _err(res)
        assert os.listdir(tmp_path) == ["d"]   # no output, no leftover temporary file

    def test_existing_target_needs_overwrite(self, tmp_path: Path):
        """An existing .beton is kept unless --cfg.overwrite=1."""
        root = make_image_folder(tmp_path / "d", classes=("a",), big=False)
        out = tmp_path / "o.beton"
        out.write_bytes(b"precious")
        args = [f"--cfg.data_dir={root}", f"--cfg.write_path={out}", "--cfg.num_workers=1"]
        res = run_script("write_imagenet.py", *args)
        assert res.returncode == 2 and "already exists" in _err(res) and out.read_bytes() == b"precious"
        res = run_script("write_imagenet.py", *args, "--cfg.overwrite=yes")
        assert res.returncode == 0, res.stderr[-2000:]
        assert len(beton_samples(out)) == 7

    def test_bad_option_exits_2(self, tmp_path: Path):
        """Unknown keys and bad types fail before any work with exit status 2."""
        res = run_script("write_imagenet.py", "--cfg.data_dri=x", f"--cfg.write_path={tmp_path}/o.beton")
        assert res.returncode == 2 and "did you mean 'cfg.data_dir'" in _err(res)
        res = run_script("write_imagenet.py", "--cfg.data_dir=x", f"--cfg.write_path={tmp_path}/o.beton",
                         "--cfg.write_mode=png")
        assert res.returncode == 2 and "write_mode" in _err(res)


def test_sigkill_leaves_no_target(tmp_path: Path):
    """A writer killed with SIGKILL mid-way leaves nothing at the target path; the next writer removes its
    temporary .beton, its scratch folder and FFCV's shared-memory block of metadata."""
    root = tmp_path / "big"
    rng = np.random.default_rng(1)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(150):
            Image.fromarray(smooth_image(rng, 320, 240)).save(root / c / f"{i}.jpg", quality=90)
    out = tmp_path / "out" / "train.beton"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPO)]))}
    proc = subprocess.Popen([sys.executable, str(REPO / "data_prep" / "write_imagenet.py"),
                             f"--cfg.data_dir={root}", f"--cfg.write_path={out}", "--cfg.write_mode=jpg",
                             "--cfg.num_workers=1"], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not list(out.parent.glob(".train.beton.*.partial")) and time.time() < deadline:
            assert proc.poll() is None, "writer finished before it could be killed"
            time.sleep(0.01)
        time.sleep(0.3)
        assert proc.poll() is None, "writer finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the writer and its FFCV worker processes
        proc.wait()
    assert not out.exists() and not Path(str(out) + ".json").exists()
    shm = [Path("/dev/shm", (w / "shm").read_text()) for w in out.parent.glob(".train.beton.*.work")]
    assert len(shm) == 1 and shm[0].exists()   # what SIGKILL leaves behind, found by name
    # the next run completes and clears the dead writer's temporary file, scratch folder and shared memory
    res = run_script("write_imagenet.py", f"--cfg.data_dir={root}", f"--cfg.write_path={out}",
                     "--cfg.subset=8", "--cfg.num_workers=1")
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(os.listdir(out.parent)) == ["train.beton", "train.beton.json"] and not shm[0].exists()
