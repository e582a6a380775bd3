"""Readers for the raw datasets we convert: ImageFolder trees, CIFAR pickles, IDX files.

Each reader validates its input up front and raises :class:`DataPrepError` with a
message that says what is wrong and what was expected. Each returns an indexable
dataset whose items are ``(HxWx3 uint8 array, int label)``, the form FFCV's
``DatasetWriter`` takes; grayscale is replicated to 3 channels (FFCV has no
grayscale field).
"""
from __future__ import annotations

import gzip
import os
import pickle
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile
from tqdm import tqdm

# torchvision's ImageFolder extensions, so the same trees work for both.
IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file must fail, not decode as grey


class DataPrepError(Exception):
    """Bad input for a writer: the message names the file or value and what was expected."""


def to_rgb(im: Image.Image) -> np.ndarray:
    """An HxWx3 uint8 array of a decoded PIL image, its grey levels scaled to 8 bits.

    8-bit modes go through PIL's ``convert('RGB')``, as torchvision's ImageFolder does: alpha is
    dropped (not composited), grey and palette images are expanded to RGB, 16-bit RGB PNGs keep
    their high byte. PIL would clip 16-bit grey (``I;16``, and ``I`` within 0..65535) to 255 and
    turn a float image (``F``) of values in [0, 1] black; those are scaled here instead
    (x * 255 / 65535, x * 255, rounded). Other integer or float ranges raise ValueError.
    """
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        a = np.asarray(im)
        a = a.astype(np.float64 if im.mode == "F" else np.int64)
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if im.mode == "F":
            if not (np.isfinite(a).all() and 0 <= lo and hi <= 1):
                raise ValueError(f"float image with values in [{lo:g}, {hi:g}]: only [0, 1] converts to 8 bits; "
                                 f"rescale it or save it as 8-bit")
            grey = np.rint(a * 255)
        else:
            if lo < 0 or hi > 65535:
                raise ValueError(f"32-bit integer image with values {lo:.0f}..{hi:.0f}: only 16-bit values "
                                 f"(0..65535) convert to 8 bits; save it as 8- or 16-bit")
            grey = (a * 255 + 32767) // 65535
        return np.repeat(grey.astype(np.uint8)[:, :, None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def load_rgb(path: str) -> np.ndarray:
    """Decode an image file to an HxWx3 uint8 array (:func:`to_rgb`)."""
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


@dataclass
class ImageFolderSource:
    """An ImageFolder tree: ``root/<class>/<image>``; classes sorted by name as torchvision does."""

    root: str
    classes: list[str]
    samples: list[tuple[str, int]]
    sizes: list[tuple[int, int]]                 # (width, height) from each header
    bad: list[tuple[str, str]] = field(default_factory=list)   # (path, reason) not readable

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        path, label = self.samples[i]
        return load_rgb(path), label

    def subset(self, keep: list[int]) -> "ImageFolderSource":
        return ImageFolderSource(self.root, self.classes, [self.samples[i] for i in keep],
                                 [self.sizes[i] for i in keep], list(self.bad))


def _header(path: str) -> tuple[int, int] | str:
    """(width, height) from the image header, or the reason it cannot be read."""
    try:
        with Image.open(path) as im:
            w, h = im.size
        if w < 1 or h < 1:
            return f"empty image ({w}x{h})"
        return w, h
    except Exception as e:  # PIL raises many types for garbage input
        return f"{type(e).__name__}: {e}"


def _class_files(folder: Path) -> list[str]:
    """Every image file under ``folder``, sub-folders included, in torchvision ImageFolder's order.

    As ``torchvision.datasets.folder.make_dataset``: ``sorted(os.walk(folder, followlinks=True))``,
    then each folder's file names sorted, kept by extension. Unlike it, hidden files and folders
    (a leading '.', e.g. macOS ``._x.jpg`` resource forks) are left out.
    """
    out = []
    for top, dirs, names in sorted(os.walk(folder, followlinks=True)):
        if any(part.startswith(".") for part in Path(top).relative_to(folder).parts):
            continue
        out += [os.path.join(top, n) for n in sorted(names)
                if not n.startswith(".") and n.lower().endswith(IMG_EXTENSIONS)]
    return out


def scan_image_folder(root: str, num_threads: int = 8) -> ImageFolderSource:
    """List and header-check every image under ``root/<class>/`` (at any depth); unreadable files go to ``bad``."""
    rootp = Path(root)
    if not rootp.exists():
        raise DataPrepError(f"data folder '{root}' does not exist; expected an ImageFolder tree "
                            f"(one sub-folder per class, e.g. ImageNet's train/ or val/)")
    if not rootp.is_dir():
        raise DataPrepError(f"data folder '{root}' is a file, not a folder; expected an ImageFolder "
                            f"tree (one sub-folder per class)")
    classes = sorted(e.name for e in os.scandir(rootp) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        loose = [e.name for e in os.scandir(rootp) if e.name.lower().endswith(IMG_EXTENSIONS)]
        hint = (f" It holds {len(loose)} image files directly; move them into one sub-folder per class."
                if loose else "")
        raise DataPrepError(f"data folder '{root}' has no class sub-folders; expected one sub-folder "
                            f"per class holding that class's images.{hint}")
    samples: list[tuple[str, int]] = []
    empty = []
    for label, name in enumerate(classes):
        files = _class_files(rootp / name)
        if not files:
            empty.append(name)
        samples += [(f, label) for f in files]
    if empty:
        shown = ", ".join(f"'{c}'" for c in empty[:10]) + (" ..." if len(empty) > 10 else "")
        raise DataPrepError(f"{len(empty)} class folder(s) under '{root}' hold no images ({shown}); "
                            f"every class folder needs at least one file with an image extension "
                            f"({' '.join(IMG_EXTENSIONS)}). Remove the empty folders or fill them.")
    with ThreadPoolExecutor(num_threads) as pool:
        headers = list(tqdm(pool.map(_header, [p for p, _ in samples], chunksize=64), total=len(samples),
                            desc="checking image headers", unit="img", leave=False))
    good = [(s, h) for s, h in zip(samples, headers) if not isinstance(h, str)]
    bad = [(s[0], h) for s, h in zip(samples, headers) if isinstance(h, str)]
    return ImageFolderSource(str(rootp), classes, [s for s, _ in good], [h for _, h in good], bad)


def image_stats(paths: list[str], max_images: int = 1000, seed: int = 0,
                num_threads: int = 8) -> tuple[list[float], list[float], int]:
    """Per-channel mean and std (0-255 scale) over a seeded random sample of up to ``max_images`` files.

    JPEGs are decoded at reduced size (PIL draft, about 64 px), which leaves the
    statistics within a fraction of a grey level and costs a few ms per file.
    Returns (mean, std, number of images used); unreadable files are left out.
    """
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(paths), min(max_images, len(paths)), replace=False)

    def moments(path: str) -> np.ndarray | None:
        try:
            with Image.open(path) as im:
                im.draft("RGB", (64, 64))
                x = to_rgb(im).astype(np.float64).reshape(-1, 3)
        except Exception:
            return None
        return np.concatenate([x.mean(0), (x * x).mean(0)])

    with ThreadPoolExecutor(num_threads) as pool:
        rows = [r for r in pool.map(moments, [paths[i] for i in pick]) if r is not None]
    if not rows:
        raise DataPrepError("no image could be decoded for the channel statistics")
    m = np.mean(rows, 0)   # each image weighs the same, as in the usual per-image averaging
    mean, sq = m[:3], m[3:]
    std = np.sqrt(np.maximum(sq - mean ** 2, 0.0))
    return [float(v) for v in mean], [float(v) for v in std], len(rows)


class ArraySource:
    """In-memory images (N,H,W) or (N,H,W,3) uint8 with int labels; grayscale served as 3 channels."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        assert images.dtype == np.uint8 and images.ndim in (3, 4) and len(images) == len(labels)
        self.images = images
        self.labels = labels.astype(np.int64)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        im = self.images[i]
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        return np.ascontiguousarray(im), int(self.labels[i])

    def channel_stats(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of all pixels, on the 0-255 scale."""
        x = self.images.reshape(len(self.images), -1, 1 if self.images.ndim == 3 else 3)
        s = np.zeros(x.shape[-1]); ss = np.zeros(x.shape[-1]); n = 0
        for chunk in range(0, len(x), 4096):   # chunked float64 sums: exact enough, bounded memory
            c = x[chunk:chunk + 4096].reshape(-1, x.shape[-1]).astype(np.float64)
            s += c.sum(0); ss += (c * c).sum(0); n += len(c)
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean ** 2, 0.0))
        if len(mean) == 1:
            mean, std = np.repeat(mean, 3), np.repeat(std, 3)
        return [float(v) for v in mean], [float(v) for v in std]


# ---- IDX (MNIST / Fashion-MNIST) -------------------------------------------------------------

def _open_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path) as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError) as e:
        raise DataPrepError(f"cannot read IDX file '{path}': {e}; the gzip stream is corrupt or "
                            f"truncated — download the file again") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file of unsigned bytes (.gz or raw), checking its header against its length."""
    data = _open_maybe_gz(path)
    if len(data) < 4:
        raise DataPrepError(f"IDX file '{path}' is {len(data)} bytes, too short for a header")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08 or ndim not in (1, 3):
        raise DataPrepError(f"'{path}' is not an unsigned-byte IDX file (magic {data[:4].hex()}, "
                            f"expected 00000801 for labels or 00000803 for images)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataPrepError(f"IDX file '{path}' is truncated inside its header")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    got = len(data) - header
    if got != expected:
        what = "truncated" if got < expected else "longer than its header says"
        raise DataPrepError(f"IDX file '{path}' is {what}: header says {'x'.join(map(str, dims))} = "
                            f"{expected} bytes of data, file has {got}; download the file again")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _find_idx(root: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (root / name).is_file():
            return root / name
    raise DataPrepError(f"'{root}' has no '{stem}' or '{stem}.gz'; expected the four Fashion-MNIST "
                        f"IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
                        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, optionally .gz)")


def read_fashion_mnist(root: str, split: str) -> ArraySource:
    """The 'train' (60,000) or 'val' (t10k, 10,000) split of an IDX folder as an ArraySource."""
    rootp = Path(root)
    if not rootp.is_dir():
        raise DataPrepError(f"Fashion-MNIST folder '{root}' does not exist; expected a folder with "
                            f"the IDX files (Debian: /usr/share/datasets/fashion-mnist)")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_idx(rootp, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find_idx(rootp, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1:
        raise DataPrepError(f"'{root}' {prefix} files have the wrong shapes: images {images.shape} "
                            f"(expected N x 28 x 28), labels {labels.shape} (expected N)")
    if len(images) != len(labels):
        raise DataPrepError(f"'{root}' {prefix} split has {len(images)} images but {len(labels)} "
                            f"labels; the two IDX files must come from the same release")
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataPrepError(f"'{root}' {prefix} labels go up to {labels.max()}, expected 0-9")
    return ArraySource(images, labels)


# ---- CIFAR python pickles --------------------------------------------------------------------

class _SafeUnpickler(pickle.Unpickler):
    """Loads only plain containers and numpy arrays: a crafted pickle cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("builtins", "set"), ("builtins", "bytearray"),
               ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict:
    if not path.is_file():
        raise DataPrepError(f"missing CIFAR file '{path}'")
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except Exception as e:
        raise DataPrepError(f"CIFAR file '{path}' cannot be read ({type(e).__name__}: {e}); "
                            f"it is corrupt or truncated — download the archive again") from None
    if not isinstance(obj, dict):
        raise DataPrepError(f"CIFAR file '{path}' holds a {type(obj).__name__}, expected a dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _load_pickle(path)
    if "data" not in d or label_key not in d:
        raise DataPrepError(f"CIFAR file '{path}' lacks 'data' or '{label_key}' (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    labels = np.asarray(d[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataPrepError(f"CIFAR file '{path}' has data {data.dtype} {data.shape}, "
                            f"expected uint8 N x 3072 (32x32x3 planes)")
    if len(data) != len(labels):
        raise DataPrepError(f"CIFAR file '{path}' has {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar(root: str, split: str, label_type: str = "fine") -> tuple[ArraySource, list[str], str]:
    """A CIFAR-10 (``cifar-10-batches-py``) or CIFAR-100 (``cifar-100-python``) split.

    Returns the source, the class names and the dataset kind ('cifar10' or 'cifar100').
    ``label_type`` picks CIFAR-100's fine (100) or coarse (20) labels.
    """
    rootp = Path(root)
    if not rootp.is_dir():
        raise DataPrepError(f"CIFAR folder '{root}' does not exist; expected the extracted "
                            f"'cifar-10-batches-py' or 'cifar-100-python' folder")
    if (rootp / "batches.meta").is_file():
        names = [n.decode() for n in _load_pickle(rootp / "batches.meta").get("label_names", [])]
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        parts = [_cifar_batch(rootp / f, "labels") for f in files]
        kind = "cifar10"
    elif (rootp / "meta").is_file():
        key = f"{label_type}_label_names"
        names = [n.decode() for n in _load_pickle(rootp / "meta").get(key, [])]
        parts = [_cifar_batch(rootp / ("train" if split == "train" else "test"), f"{label_type}_labels")]
        kind = "cifar100"
    else:
        raise DataPrepError(f"'{root}' is neither 'cifar-10-batches-py' (needs batches.meta and "
                            f"data_batch_1..5, test_batch) nor 'cifar-100-python' (needs meta, train, test)")
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if not names or labels.min() < 0 or labels.max() >= len(names):
        raise DataPrepError(f"'{root}' labels span {labels.min()}..{labels.max()} but the meta file "
                            f"names {len(names)} classes")
    return ArraySource(np.ascontiguousarray(images), labels), names, kind
