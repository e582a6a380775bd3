"""The .beton file format, read with numpy: no FFCV needed (it does not build on macOS, Windows, newer Pythons).

A .beton (FFCV 1.0's format, version 2) is, in order: a header (:data:`HEADER`), one field descriptor per field
(:data:`FIELD_DESC`), one metadata record per sample (the fields' metadata side by side, C-aligned), the data pages,
and at ``alloc_table_ptr`` the allocation table (:data:`ALLOC_TABLE`): one ``(sample_id, ptr, size)`` row per
block of data. Our writers (:mod:`sdpnet.data.writer`) store two fields: ``image`` (FFCV's RGBImageField: ``mode``
0 for a JPEG, 1 for raw HxWx3 uint8 pixels, ``width``, ``height``, ``data_ptr``, the file offset of its bytes) and
``label`` (IntField: an int64 in the metadata itself). All integers are little-endian, as FFCV writes them.

The dtypes are FFCV's, copied from ``ffcv/types.py`` and ``ffcv/fields/{rgb_image,basics}.py`` (FFCV 1.0.2);
``tests/test_torch_reader.py`` checks them against FFCV's own where FFCV imports. :func:`sdpnet.data.betons.
check_beton` reads a file's sizes with them before anything maps it; :class:`BetonReader` then maps the data
(``np.memmap``, read-only) and decodes one image at a time: raw pixels are a view of the file, JPEGs are decoded by
OpenCV when it imports, else by Pillow (both libjpeg-turbo with its accurate integer IDCT; FFCV asks for the fast
one, ``TJFLAG_FASTDCT``: the decoded pixels differ by about 1 level on average, at most 5 on quality-95 images).
"""
from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
from PIL import Image

try:   # OpenCV decodes JPEGs in one call; Pillow (the same libjpeg-turbo pixels) stands in without it
    import cv2
except ImportError:
    cv2 = None

__all__ = ["HEADER", "FIELD_DESC", "ALLOC_TABLE", "FORMAT_VERSION", "FIELD_METADATA", "IMAGE_METADATA",
           "JPEG", "RAW", "metadata_type", "field_name", "decode_jpeg", "BetonReader"]

FORMAT_VERSION = 2   # ffcv.types.CURRENT_VERSION
HEADER = np.dtype([("version", "<u2"), ("num_fields", "<u2"), ("page_size", "<u4"), ("num_samples", "<u8"),
                   ("alloc_table_ptr", "<u8")], align=True)
FIELD_DESC = np.dtype([("type_id", "<u1"), ("name", ("<u1", 16)), ("arguments", ("<u1", (1024,)))], align=True)
ALLOC_TABLE = np.dtype([("sample_id", "<u8"), ("ptr", "<u8"), ("size", "<u8")])
IMAGE_METADATA = np.dtype([("mode", "<u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")])
JPEG, RAW = 0, 1   # RGBImageField's modes (ffcv.fields.rgb_image.IMAGE_MODES)
# Per-sample metadata of FFCV's fixed-size fields, by type id (ffcv.types.TYPE_ID_HANDLER): Float, Int, RGBImage.
FIELD_METADATA = {0: np.dtype("<f8"), 1: np.dtype("<i8"), 2: IMAGE_METADATA}


def metadata_type(type_ids: list[int]) -> np.dtype:
    """One sample's metadata record for fields of these type ids, in file order (ffcv.types.get_metadata_type)."""
    return np.dtype([("", FIELD_METADATA[t]) for t in type_ids], align=True)


def field_name(desc: np.void) -> str:
    """A field descriptor's name: its 16 bytes up to the first NUL (ffcv.utils.decode_null_terminated_string)."""
    return desc["name"].tobytes().decode("ascii", "replace").split("\x00")[0]


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """JPEG bytes -> HxWx3 uint8 RGB (OpenCV if it imports, else Pillow; the same libjpeg-turbo pixels)."""
    if cv2 is not None:
        bgr = cv2.imdecode(np.asarray(data), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("OpenCV cannot decode the JPEG bytes")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    with Image.open(io.BytesIO(np.asarray(data).tobytes())) as im:
        return np.asarray(im.convert("RGB"))


class BetonReader:
    """A .beton of our writers' fields (``image``, ``label``), its data mapped read-only on first use.

    Attributes:
        num_samples: sample count.
        labels: int64 (N,).
        images: the image metadata (N,) of :data:`IMAGE_METADATA` (``mode``, ``width``, ``height``, ``data_ptr``).
        sizes: uint64 (N,), the bytes stored for each image (its allocation).

    The mapping is not pickled: a DataLoader worker (fork or spawn) maps the file again on its first read.
    Call :func:`sdpnet.data.betons.check_beton` first: it turns a truncated or foreign file into one clear error,
    where this class trusts the header.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = str(path)
        header = np.fromfile(self.path, dtype=HEADER, count=1)[0]
        if int(header["version"]) != FORMAT_VERSION:
            raise ValueError(f"'{self.path}' is not an FFCV .beton of format version {FORMAT_VERSION} "
                             f"(version {int(header['version'])})")
        n, n_fields = int(header["num_samples"]), int(header["num_fields"])
        desc = np.fromfile(self.path, dtype=FIELD_DESC, count=n_fields, offset=HEADER.itemsize)
        names = [field_name(d) for d in desc]
        types = [int(d["type_id"]) for d in desc]
        if sorted(zip(names, types)) != [("image", 2), ("label", 1)]:
            raise ValueError(f"'{self.path}' has the fields {list(zip(names, types))}; expected 'image' "
                             f"(RGBImageField, type 2) and 'label' (IntField, type 1)")
        meta = np.fromfile(self.path, dtype=metadata_type(types), count=n,
                           offset=HEADER.itemsize + n_fields * FIELD_DESC.itemsize)
        table = np.fromfile(self.path, dtype=ALLOC_TABLE, offset=int(header["alloc_table_ptr"]))
        self.num_samples = n
        self.images = np.ascontiguousarray(meta[f"f{names.index('image')}"])
        self.labels = meta[f"f{names.index('label')}"].astype(np.int64)
        order = np.argsort(table["ptr"])
        ptrs = table["ptr"][order]
        where = np.minimum(np.searchsorted(ptrs, self.images["data_ptr"]), max(len(ptrs) - 1, 0))
        self.sizes = table["size"][order][where] if len(ptrs) else np.zeros(n, np.uint64)
        self._data: np.memmap | None = None

    def __len__(self) -> int:
        return self.num_samples

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_data": None}   # each process maps the file itself

    @property
    def data(self) -> np.memmap:
        """The whole file as read-only uint8, mapped on first use in each process."""
        if self._data is None:
            self._data = np.memmap(self.path, dtype=np.uint8, mode="r")
        return self._data

    def stored(self, i: int) -> np.ndarray:
        """The bytes stored for image ``i`` (raw pixels or a JPEG), a view of the mapped file."""
        ptr = int(self.images["data_ptr"][i])
        return self.data[ptr:ptr + int(self.sizes[i])]

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as HxWx3 uint8 RGB: raw pixels as a read-only view of the file, a JPEG decoded."""
        m = self.images[i]
        h, w = int(m["height"]), int(m["width"])
        data = self.stored(i)
        if m["mode"] == RAW:
            return data[:h * w * 3].reshape(h, w, 3)
        if m["mode"] != JPEG:
            raise ValueError(f"'{self.path}': sample {i} has image mode {int(m['mode'])} (0: JPEG, 1: raw)")
        rgb = decode_jpeg(data)
        if rgb.shape != (h, w, 3):
            raise ValueError(f"'{self.path}': sample {i} decodes to {rgb.shape[1]}x{rgb.shape[0]} px, its "
                             f"metadata says {w}x{h}")
        return rgb
