"""Image files as a run's validation saw its images: what ``predict``, ``attention`` and ``export`` feed a model.

Each file is decoded to RGB as the ``.beton`` writers decode (:func:`sdpnet.data.sources.load_rgb`: grey, palette,
RGBA, CMYK... to RGB), downscaled as the writer did (its ``max_resolution``, if any), then goes through the
validation loader's centre crop and resize (``crop_ratio`` of the short side, area interpolation, to ``res``) and
its normalisation table (the run's mean/std): :mod:`sdpnet.data.crops` and :func:`sdpnet.data.pipeline.
normalisation_table`, the arithmetic both loader engines share, so no FFCV is needed. A raw-written ``.beton``
image and the same pixels in a PNG file thus give the model the same tensor. ``preprocess`` is
:attr:`sdpnet.tools.runs.Trained.preprocess`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from sdpnet.data.crops import center_crop, downscale, resize
from sdpnet.data.pipeline import normalisation_table
from sdpnet.data.sources import load_rgb

__all__ = ["crop", "normalise", "prepare", "load_image"]


def crop(rgb: np.ndarray, preprocess: dict[str, Any]) -> np.ndarray:
    """An HxWx3 uint8 image -> the (res, res, 3) uint8 crop the run's validation loader would make of it:
    the writer's downscale (``max_resolution``), then the loaders' centre crop and area resize."""
    img = downscale(rgb, preprocess.get("max_resolution") or None)
    h, w = img.shape[:2]
    box = center_crop(h, w, float(preprocess["crop_ratio"]))
    if box[2] < 1:
        raise ValueError(f"image of {w}x{h} px is too small for a centre crop of ratio {preprocess['crop_ratio']}")
    return resize(img, box, int(preprocess["res"]))


def normalise(pixels: np.ndarray, preprocess: dict[str, Any]) -> torch.Tensor:
    """A (res, res, 3) uint8 crop -> (3, res, res) float32 with the loaders' normalisation table (run's mean/std):
    the exact float32 values both engines write."""
    table = normalisation_table(preprocess["mean"], preprocess["std"])   # (256, 3)
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
