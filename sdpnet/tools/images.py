"""Image files as a run's validation saw its images: what ``predict``, ``attention`` and ``export`` feed a model.

Each file is decoded to RGB as the ``.beton`` writers decode (:func:`sdpnet.data.sources.load_rgb`: grey, palette,
RGBA, CMYK... to RGB), downscaled as the writer did (its ``max_resolution``, if any), then goes through FFCV's own
centre crop and resize (``crop_ratio`` of the short side, area interpolation, to ``res``) and its normalisation
table (the run's mean/std). A raw-written ``.beton`` image and the same pixels in a PNG file thus give the model
the same tensor. ``preprocess`` is :attr:`sdpnet.tools.runs.Trained.preprocess`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sdpnet.data.ffcv_import import import_ffcv
from sdpnet.data.sources import load_rgb

import_ffcv()
from ffcv.fields.rgb_image import get_center_crop, resizer
from ffcv.libffcv import resize_crop
from ffcv.transforms import NormalizeImage

__all__ = ["crop", "normalise", "prepare", "load_image"]


def crop(rgb: np.ndarray, preprocess: dict[str, Any]) -> np.ndarray:
    """An HxWx3 uint8 image -> the (res, res, 3) uint8 crop the run's validation loader would make of it:
    the writer's downscale (``max_resolution``), then FFCV's centre crop and area resize."""
    res = int(preprocess["res"])
    img = np.ascontiguousarray(resizer(rgb, preprocess.get("max_resolution") or None))
    h, w = img.shape[:2]
    i, j, ch, cw = get_center_crop(h, w, None, float(preprocess["crop_ratio"]))
    if ch < 1 or cw < 1:
        raise ValueError(f"image of {w}x{h} px is too small for a centre crop of ratio {preprocess['crop_ratio']}")
    out = np.empty((res, res, 3), np.uint8)
    resize_crop(img, i, i + ch, j, j + cw, out)
    return out


def normalise(pixels: np.ndarray, preprocess: dict[str, Any]) -> torch.Tensor:
    """A (res, res, 3) uint8 crop -> (3, res, res) float32 with FFCV's own normalisation table (run's mean/std)."""
    table = NormalizeImage(np.asarray(preprocess["mean"], np.float64), np.asarray(preprocess["std"], np.float64),
                           np.float32).lookup_table   # (256, 3): the exact float32 values FFCV writes
    return torch.from_numpy(np.ascontiguousarray(table[pixels, np.arange(3)])).permute(2, 0, 1)


def prepare(rgb: np.ndarray, preprocess: dict[str, Any]) -> torch.Tensor:
    """An HxWx3 uint8 image -> the (3, res, res) float32 tensor the run's validation loader would make of it."""
    return normalise(crop(rgb, preprocess), preprocess)


def load_image(path: str | Path, preprocess: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray]:
    """The model input (3, res, res) for an image file and the (res, res, 3) uint8 crop it was made of; raises
    ValueError with the reason when the file is not a readable image."""
    p = Path(path)
    if not p.is_file():
        raise ValueError("no such file" if not p.exists() else "not a file")
    try:
        rgb = load_rgb(str(p))
    except UnidentifiedImageError:
        raise ValueError("not an image PIL can read (unknown format or damaged header)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode the image ({type(e).__name__}: {e})") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"decoded to an array of shape {rgb.shape} and type {rgb.dtype}, not an RGB image")
    pixels = crop(rgb, preprocess)
    return normalise(pixels, preprocess), pixels
