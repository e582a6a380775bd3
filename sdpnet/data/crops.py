"""FFCV's crop arithmetic and resize, in numpy and OpenCV: what the torch engine's decoders do to each image.

:func:`random_crop` and :func:`center_crop` are ``get_random_crop`` and ``get_center_crop`` of
``ffcv/fields/rgb_image.py`` (FFCV 1.0.2) line for line, drawing from a ``np.random.RandomState``: numba's
``np.random`` inside FFCV's compiled decoder is the same Mersenne Twister with the same seeding and the same
``uniform``/``rand``/``randint`` algorithms, so a RandomState seeded like FFCV's thread (:func:`sdpnet.data.
pipeline.batch_seed`) draws the same crops, flips and shifts. :func:`downscale` is the writers' ``resizer`` (what
a ``max_resolution`` does to an image before it is stored). :func:`resize` is libffcv's ``resize``:
``cv::resize(..., INTER_AREA)`` of the crop to the output size (measured bit-identical between the OpenCV 4.6
FFCV links and opencv-python 5.1). Without OpenCV, :func:`area_weights` rebuilds INTER_AREA's weights in numpy
(OpenCV's own arithmetic for where each output pixel samples) and the image is resized by two matrix products in
float64: within 1 level of OpenCV's pixels (its fixed-point rounding is not reproduced), 0.05 on average over
random sizes.
"""
from __future__ import annotations

import math

import numpy as np

try:   # libffcv's resize is OpenCV's; numpy stands in without it (area_weights)
    import cv2
except ImportError:
    cv2 = None

__all__ = ["random_crop", "center_crop", "resize", "downscale", "area_weights", "flip", "translate"]


def random_crop(rng: np.random.RandomState, height: int, width: int, scale: np.ndarray,
                ratio: np.ndarray) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box ``(top, left, h, w)``: 10 tries of a random area and aspect ratio, else the centre."""
    area = height * width
    log_ratio = np.log(ratio)
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = np.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(np.sqrt(target_area * aspect_ratio)))
        h = int(round(np.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = int(rng.uniform(0, height - h + 1))
            j = int(rng.uniform(0, width - w + 1))
            return i, j, h, w
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop(height: int, width: int, ratio: float) -> tuple[int, int, int, int]:
    """The centred square of side ``int(ratio x short side)``: ``(top, left, side, side)``."""
    c = int(ratio * min(height, width))
    return (height - c) // 2, (width - c) // 2, c, c


def resize(image: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """The ``box`` ``(top, left, h, w)`` of an HxWx3 uint8 image, area-resized to ``size`` x ``size``."""
    i, j, h, w = box
    return _area_resize(np.ascontiguousarray(image[i:i + h, j:j + w]), size, size)


def downscale(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """The writers' downscale (FFCV's ``resizer``): an HxWx3 uint8 image whose long side exceeds ``max_side`` is
    area-resized to ``max_side`` on that side (both sides scaled by one ratio, truncated to int); any other image,
    or ``max_side`` None, is returned as it is."""
    if max_side is None:
        return image
    size = np.array([image.shape[1], image.shape[0]])   # (w, h), as FFCV computes it
    ratio = max_side / size.max()
    if ratio >= 1:
        return image
    w, h = (ratio * size).astype(int)
    return _area_resize(np.ascontiguousarray(image), int(h), int(w))


def _area_resize(image: np.ndarray, h: int, w: int) -> np.ndarray:
    """An HxWx3 uint8 image resized to ``h`` x ``w`` with OpenCV's INTER_AREA (numpy's rebuild without OpenCV)."""
    if image.shape[:2] == (h, w):
        return image.copy()   # what cv::resize does for an unchanged size: a copy
    if cv2 is not None:
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    shrink = image.shape[0] >= h and image.shape[1] >= w   # OpenCV averages areas only when no side grows
    out = np.einsum("ij,jkc,lk->ilc", area_weights(image.shape[0], h, shrink), image.astype(np.float64),
                    area_weights(image.shape[1], w, shrink))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def area_weights(n_in: int, n_out: int, shrink: bool) -> np.ndarray:
    """(n_out, n_in): how OpenCV's INTER_AREA weighs the input pixels of one axis (``resize.cpp``, OpenCV 4).

    ``shrink`` (no side of the image grows): each output pixel averages the input cells it covers
    (``computeResizeAreaTab``). Otherwise OpenCV emulates area interpolation with a bilinear variant: output pixel
    d reads input pixels s and s+1, s = floor(d x scale), with weight f = frac((d+1) - (s+1) / scale) on s+1.
    """
    inv = n_out / n_in
    scale = 1.0 / inv   # as OpenCV computes it: the rounding decides which input pixel a boundary falls in
    w = np.zeros((n_out, n_in))
    for d in range(n_out):
        if shrink:
            f1 = d * scale
            f2, cell = f1 + scale, min(scale, n_in - f1)
            s2 = min(math.floor(f2), n_in - 1)
            s1 = min(math.ceil(f1), s2)
            if s1 - f1 > 1e-3:
                w[d, s1 - 1] += (s1 - f1) / cell
            w[d, s1:s2] += 1.0 / cell
            if f2 - s2 > 1e-3:
                w[d, s2] += min(f2 - s2, 1.0, cell) / cell
            continue
        s = math.floor(d * scale)
        f = float(np.float32((d + 1) - (s + 1) * inv))
        f = 0.0 if f <= 0 else f - math.floor(f)
        if s >= n_in - 1:
            s, f = n_in - 1, 0.0
        w[d, s] += 1 - f
        w[d, min(s + 1, n_in - 1)] += f
    return w


def flip(images: np.ndarray, rng: np.random.RandomState, prob: float = 0.5) -> np.ndarray:
    """FFCV's RandomHorizontalFlip of a (B, H, W, 3) batch, in place: one ``rand`` per image, all drawn first."""
    should = rng.rand(images.shape[0]) < prob
    images[should] = images[should][:, :, ::-1]
    return images


def translate(images: np.ndarray, rng: np.random.RandomState, pad: int) -> np.ndarray:
    """FFCV's RandomTranslate of a (B, H, W, 3) batch, in place: each image shifted by up to ``pad`` px in both
    directions, zero-filled; two ``randint(0, 2 pad + 1)`` per image (row, then column)."""
    n, h, w, _ = images.shape
    padded = np.zeros((n, h + 2 * pad, w + 2 * pad, 3), np.uint8)
    padded[:, pad:pad + h, pad:pad + w] = images
    for k in range(n):
        y, x = rng.randint(0, 2 * pad + 1), rng.randint(0, 2 * pad + 1)
        images[k] = padded[k, y:y + h, x:x + w]
    return images
