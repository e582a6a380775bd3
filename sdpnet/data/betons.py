"""Check a .beton and its sidecar before anything maps it: fields, types, sizes, labels, classes.

FFCV memory-maps a .beton and trusts its header: a file truncated in place kills the process
with SIGBUS at the first read past its end, a label stored as a float makes the loader thread
fail (and the training loop wait for it forever), and random bytes give a traceback deep in
numpy. :func:`check_beton` reads the header, field table, per-sample metadata and allocation
table with plain file reads (no mapping) and compares every size with the file's, so each of
those is one clear :class:`DataFileError` instead. It reads about 40 bytes per sample (0.2 s
for ImageNet's 1.28M) and never the images. It needs no FFCV: the format's types are
:mod:`sdpnet.data.beton_reader`'s.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .beton_reader import ALLOC_TABLE, FIELD_DESC, FORMAT_VERSION, HEADER, field_name, metadata_type
from .sidecar import read_sidecar

__all__ = ["BetonInfo", "DataFileError", "check_beton", "check_same_classes"]

# The two fields our writers (and ffcv-imagenet's) store, by FFCV type id (ffcv.types.TYPE_ID_HANDLER).
FIELDS = {"image": (2, "RGBImageField"), "label": (1, "IntField")}
_TYPE_NAMES = {0: "FloatField", 1: "IntField", 2: "RGBImageField", 3: "BytesField", 4: "NDArrayField",
               5: "JSONField", 6: "TorchTensorField", 255: "a custom field"}
_REWRITE = "write it again with data_prep/write_*.py"


class DataFileError(ValueError):
    """A .beton or sidecar that cannot be used; the message names the file, the problem and the fix."""


@dataclass(frozen=True)
class BetonInfo:
    """What :func:`check_beton` found: sample count, label range and (with a sidecar) the classes."""

    path: str
    num_samples: int
    label_min: int
    label_max: int
    num_classes: int | None = None
    classes: tuple[str, ...] | None = None
    sidecar: dict | None = None


def _fail(name: str, problem: str, fix: str = _REWRITE) -> DataFileError:
    return DataFileError(f"{name} {problem}; {fix}")


def check_beton(path: str | Path, *, sidecar: bool = True, name: str | None = None) -> BetonInfo:
    """Check ``path`` (and, with ``sidecar``, its sidecar) and describe it; raises DataFileError.

    ``name`` is how messages refer to the file (e.g. ``--data.val_path=val.beton``); a missing
    file raises FileNotFoundError. Labels must lie in ``[0, num_classes)`` of the sidecar.
    """
    path = str(path)
    name = name or f"'{path}'"
    if not path.endswith(".beton"):
        raise _fail(name, "is not a .beton file", "write one with data_prep/write_*.py")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{name}: data file not found; write it with data_prep/write_*.py (e.g. "
                                f"python data_prep/write_fashion_mnist.py --cfg.write_dir=data/fashion_mnist)")
    size = os.path.getsize(path)
    if size < HEADER.itemsize:
        raise _fail(name, f"is {size} bytes, too short for an FFCV header (truncated, or not a .beton)")
    header = np.fromfile(path, dtype=HEADER, count=1)[0]
    if header["version"] != FORMAT_VERSION:
        raise _fail(name, f"is not an FFCV .beton (format version {header['version']}, expected "
                          f"{FORMAT_VERSION}: random bytes or another format)")
    n, n_fields, table_at = int(header["num_samples"]), int(header["num_fields"]), int(header["alloc_table_ptr"])
    fields_end = HEADER.itemsize + n_fields * FIELD_DESC.itemsize
    if not 1 <= n_fields <= 64 or fields_end > size:
        raise _fail(name, f"has a damaged header ({n_fields} fields in {size} bytes)")
    desc = np.fromfile(path, dtype=FIELD_DESC, count=n_fields, offset=HEADER.itemsize)
    found = {field_name(d): int(d["type_id"]) for d in desc}
    if n_fields != len(FIELDS) or found != {k: t for k, (t, _) in FIELDS.items()}:
        have = ", ".join(f"'{k}' ({_TYPE_NAMES.get(t, f'type {t}')})" for k, t in found.items())
        want = " and ".join(f"'{k}' ({t})" for k, (_, t) in FIELDS.items())
        raise _fail(name, f"has the fields {have}; expected exactly {want}")
    names = list(found)
    meta_type = metadata_type([int(d["type_id"]) for d in desc])
    meta_end = fields_end + n * meta_type.itemsize
    if table_at > size:
        raise _fail(name, f"is truncated: it has {size:,} bytes but its header says the data runs to byte "
                          f"{table_at:,} (cut short while being copied or written?)")
    if meta_end > table_at or (size - table_at) % ALLOC_TABLE.itemsize:
        raise _fail(name, f"is truncated or damaged: {size:,} bytes do not hold the {n:,} samples' metadata and "
                          f"allocation table its header describes")
    meta = np.fromfile(path, dtype=meta_type, count=n, offset=fields_end)
    table = np.fromfile(path, dtype=ALLOC_TABLE, offset=table_at)
    image, label = meta[f"f{names.index('image')}"], meta[f"f{names.index('label')}"].astype(np.int64)
    order = np.argsort(table["ptr"])
    ptrs, sizes = table["ptr"][order], table["size"][order]
    where = np.minimum(np.searchsorted(ptrs, image["data_ptr"]), max(len(ptrs) - 1, 0))
    missing = int((ptrs[where] != image["data_ptr"]).sum()) if len(ptrs) else n
    if missing or (len(ptrs) and int((ptrs + sizes).max()) > table_at):
        raise _fail(name, f"is truncated or damaged: {missing:,} of {n:,} images lie outside the file's "
                          f"allocation table ({size:,} bytes)")
    raw = image["mode"] == 1
    short = raw & (sizes[where] < image["width"].astype(np.uint64) * image["height"] * 3)
    if ((image["mode"] > 1) | (image["width"] == 0) | (image["height"] == 0) | short).any():
        raise _fail(name, "is damaged: some images have an unknown mode, a zero size or fewer bytes than "
                          "their size needs")
    lo, hi = (int(label.min()), int(label.max())) if n else (0, -1)
    info = BetonInfo(path, n, lo, hi)
    return _with_sidecar(info, name) if sidecar else info


def _number_list(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                        and math.isfinite(x) for x in v))


def _with_sidecar(info: BetonInfo, name: str) -> BetonInfo:
    """``info`` completed from the sidecar, which must agree with the file."""
    try:
        meta = read_sidecar(info.path)
    except (FileNotFoundError, ValueError) as e:
        raise DataFileError(f"{name}: {e}") from None
    where = f"its sidecar '{info.path}.json'"
    if not isinstance(meta, dict):
        raise _fail(name, f"has a sidecar that holds a {type(meta).__name__}, not a JSON object ({where})")
    k = meta.get("num_classes")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise _fail(name, f"has no valid num_classes in {where} (got {k!r}; expected a positive int)")
    classes = meta.get("classes")
    if classes is not None and (not isinstance(classes, list) or len(classes) != k
                                or not all(isinstance(c, str) for c in classes)):
        raise _fail(name, f"has 'classes' in {where} that is not a list of {k} names")
    if meta.get("num_samples", info.num_samples) != info.num_samples:
        raise _fail(name, f"holds {info.num_samples} samples but {where} says {meta['num_samples']}: the two "
                          f"files do not belong together")
    for key in ("mean", "std"):
        if key in meta and not _number_list(meta[key]):
            raise _fail(name, f"has a '{key}' in {where} that is not 3 finite numbers: {json.dumps(meta[key])}")
    if "std" in meta and min(meta["std"]) <= 0:
        raise _fail(name, f"has a 'std' in {where} with a value <= 0: {meta['std']}")
    if info.num_samples and (info.label_min < 0 or info.label_max >= k):
        raise _fail(name, f"has labels {info.label_min}..{info.label_max} but {where} says num_classes={k} "
                          f"(labels 0..{k - 1})")
    return BetonInfo(info.path, info.num_samples, info.label_min, info.label_max, k,
                     tuple(classes) if classes is not None else None, meta)


def check_same_classes(train: BetonInfo, val: BetonInfo, train_name: str, val_name: str) -> None:
    """Refuse a validation set whose classes differ from the training set's (count or names)."""
    def show(info: BetonInfo) -> str:
        names = list(info.classes or [])
        listed = f": {', '.join(names[:5])}{', ...' if len(names) > 5 else ''}" if names else ""
        return f"{info.num_classes} classes{listed}"
    if train.num_classes != val.num_classes or (train.classes and val.classes and train.classes != val.classes):
        raise DataFileError(f"{val_name} has {show(val)}, but {train_name} has {show(train)}; validate on "
                            f"the same classes as the training set (written from the same class folders)")
