"""Importing FFCV: the one place that imports it first, undoing what its import does to the process.

FFCV 1.0.2 (unmaintained upstream) has two import-time side effects that we work around here:

- ``ffcv.fields.rgb_image`` keeps its two image-mode constants (``IMAGE_MODES``) in a numba
  typed Dict that only Python code reads; filling it compiles numba's dictionary code, about
  5 s of every process that imports FFCV (and again at the first read). It is built as a plain
  ``dict`` instead: same keys, same values.
- ``ffcv.pipeline.compiler`` runs ``torch.set_num_threads(1)``; the caller's thread count is restored.

Call :func:`import_ffcv` before any ``from ffcv... import``; later calls do nothing.
"""
from __future__ import annotations

import sys

__all__ = ["import_ffcv"]


def import_ffcv() -> None:
    """Import the ``ffcv`` package once, with the workarounds above (no-op when already imported)."""
    if "ffcv" in sys.modules:
        return
    import numba.typed
    import torch

    threads = torch.get_num_threads()
    typed_dict = numba.typed.Dict
    numba.typed.Dict = dict   # read by ``from numba.typed import Dict`` in FFCV's modules
    try:
        import ffcv  # noqa: F401  (the package import pulls in fields, loader and compiler)
    finally:
        numba.typed.Dict = typed_dict
        torch.set_num_threads(threads)
