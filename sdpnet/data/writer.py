"""Write an indexable (image, label) dataset to an FFCV .beton, atomically, with a JSON sidecar.

The .beton is written to a hidden temporary name beside the target
(``.<name>.<pid>.partial``) and renamed only when complete, after its sidecar
(``<name>.json`` — see :mod:`sdpnet.data.sidecar`); a writer killed at any point
leaves nothing at the target path. Its scratch files live beside the target too, in
``.<name>.<pid>.work/`` (the names of failed samples, and the name of FFCV's shared-memory
block of sample metadata). A writer killed by SIGKILL cannot remove them, so every writer
first removes those of writers that no longer run (the pid in the name), in the target's
folder and in ``/dev/shm``: nothing stays behind after the next start.

A sample that fails to decode while FFCV's worker processes write it would make
FFCV's writer wait forever, so each item is fetched through a guard that records the
failure and writes a 1x1 placeholder instead. If anything failed, the file is
discarded and, unless ``strict``, written again without the failed samples.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sdpnet.files import os_error_text

from .ffcv_import import import_ffcv
from .sidecar import sidecar_path
from .sources import DataPrepError

__all__ = ["write_beton", "write_raw_splits", "check_target", "run_cli", "remove_stale_partials"]

_SCRATCH = re.compile(r"^\..+\.(\d+)\.(partial|work)$")


class _Guarded:
    """Dataset wrapper that turns a failing item into a placeholder and a note in ``fail_dir``."""

    def __init__(self, dataset: Any, fail_dir: str):
        self.dataset = dataset
        self.fail_dir = fail_dir

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        try:
            return self.dataset[i]
        except Exception as e:
            Path(self.fail_dir, str(int(i))).write_text(f"{type(e).__name__}: {e}")
            return np.zeros((1, 1, 3), np.uint8), 0


def check_target(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing target unless ``overwrite``, or a target under a file; creates nothing."""
    target = Path(path)
    if target.suffix != ".beton":
        raise DataPrepError(f"output '{path}' should end in .beton")
    if target.is_dir():
        raise DataPrepError(f"'{target}' is a folder; give a file path ending in .beton")
    if target.exists() and not overwrite:
        raise DataPrepError(f"'{target}' already exists; pass --cfg.overwrite=1 to replace it")
    base = target.parent
    while not base.exists():
        base = base.parent
    if not base.is_dir():
        raise DataPrepError(f"cannot write '{target}': '{base}' is a file, not a folder")
    return target


def _page_size(max_image_bytes: int) -> int:
    need = max(8 << 20, 2 * max_image_bytes)   # FFCV's default page, or room for two images
    return 1 << (need - 1).bit_length()


def _unlink_shm(work: Path) -> None:
    """Remove the shared-memory block named in ``work/shm`` (FFCV's metadata), if it still exists."""
    name_file = work / "shm"
    name = name_file.read_text().strip() if name_file.is_file() else ""
    if name and Path("/dev/shm", name).exists():
        try:
            block = shared_memory.SharedMemory(name=name)
        except FileNotFoundError:
            return
        block.close()
        block.unlink()


def remove_stale_partials(folder: str | Path) -> list[Path]:
    """Delete the temporary .beton files and scratch folders of writers (by pid) that no longer run."""
    removed = []
    for p in Path(folder).glob(".*"):
        m = _SCRATCH.match(p.name)
        if not m or int(m.group(1)) == os.getpid():
            continue
        try:
            os.kill(int(m.group(1)), 0)
            continue   # still running
        except ProcessLookupError:
            pass
        except PermissionError:
            continue   # another user's live process
        if p.is_dir():
            _unlink_shm(p)
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _write_once(dataset: Any, tmp: Path, work: Path, fields: dict, indices: Sequence[int], num_workers: int,
                page_size: int) -> dict[int, str]:
    from ffcv.writer import DatasetWriter   # here, not at the top: see write_beton

    class Writer(DatasetWriter):
        def prepare(self) -> None:
            super().prepare()
            (work / "shm").write_text(self.metadata_sm.name)   # so that a killed writer's block can be found

    fail_dir = work / "failed"
    shutil.rmtree(fail_dir, ignore_errors=True)
    fail_dir.mkdir(parents=True)
    try:
        writer = Writer(str(tmp), fields, page_size=page_size, num_workers=num_workers)
        writer.from_indexed_dataset(_Guarded(dataset, str(fail_dir)), indices=np.asarray(indices), chunksize=100)
        return {int(f): (fail_dir / f).read_text() for f in os.listdir(fail_dir)}
    finally:
        _unlink_shm(work)


def write_beton(dataset: Any, target: str | Path, sidecar: dict[str, Any], *,
                write_mode: str = "raw", max_resolution: int | None = None, jpeg_quality: int = 90,
                compress_probability: float = 0.5, num_workers: int = 1, strict: bool = False,
                labels: Sequence[int] | None = None, max_image_bytes: int = 0,
                describe: Callable[[int], str] = str) -> dict[str, Any]:
    """Write ``dataset`` (items ``(HxWx3 uint8, int)``) to ``target`` with fields image and label.

    Args:
        sidecar: JSON-able metadata saved beside the file; ``num_samples``, ``skipped`` and, given
            ``labels`` and ``sidecar["classes"]``, per-class ``counts`` of the written samples are added.
        labels: the label of every dataset item (to count what was written).
        max_image_bytes: the largest decoded image, to size FFCV's pages (a sample must fit one page).
        describe: index -> name used when reporting a sample that failed to decode.

    Returns the sidecar as written. Raises DataPrepError (nothing written) in strict mode
    when a sample fails, or when every sample fails.
    """
    # FFCV is imported only once there is data to write: its import compiles numba code for
    # several seconds, which argument and input checks (and their error messages) should not wait for.
    import_ffcv()
    from ffcv.fields import IntField, RGBImageField

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(target.parent)
    tmp = target.parent / f".{target.name}.{os.getpid()}.partial"
    work = target.parent / f".{target.name}.{os.getpid()}.work"
    tmp_json = target.parent / f".{sidecar_path(target).name}.{os.getpid()}.partial"
    fields = {"image": RGBImageField(write_mode=write_mode, max_resolution=max_resolution or None,
                                     jpeg_quality=jpeg_quality, compress_probability=compress_probability),
              "label": IntField()}
    page_size = _page_size(max_image_bytes)
    indices = list(range(len(dataset)))
    skipped: list[dict[str, str]] = []
    try:
        for _attempt in range(2):
            failed = _write_once(dataset, tmp, work, fields, indices, num_workers, page_size)
            if not failed:
                break
            names = [(describe(i), msg) for i, msg in sorted(failed.items())]
            if strict:
                raise DataPrepError(f"'{names[0][0]}' cannot be decoded ({names[0][1]}); "
                                    f"{len(names)} file(s) failed in all. With --cfg.strict=0 they "
                                    f"are skipped and listed instead")
            skipped += [{"path": n, "error": m} for n, m in names]
            indices = [i for i in indices if i not in failed]
            print(f"{len(failed)} sample(s) failed to decode; writing again without them",
                  file=sys.stderr)
            if not indices:
                raise DataPrepError(f"none of the {len(dataset)} samples could be decoded "
                                    f"(first: '{names[0][0]}': {names[0][1]})")
        else:
            raise DataPrepError(f"samples kept failing on a second pass ({len(failed)} more); "
                                f"are the source files changing while being written?")
        meta = {**sidecar, "num_samples": len(indices)}
        meta["skipped"] = list(sidecar.get("skipped", [])) + skipped
        if labels is not None and "classes" in sidecar:
            hist = np.bincount(np.asarray(labels)[indices], minlength=len(sidecar["classes"]))
            meta["counts"] = {c: int(n) for c, n in zip(sidecar["classes"], hist)}
        tmp_json.write_text(json.dumps(meta, indent=1, allow_nan=False))
        os.replace(tmp_json, sidecar_path(target))
        os.replace(tmp, target)
        return meta
    finally:
        for p in (tmp, tmp_json):
            p.unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)


def write_raw_splits(splits: dict[str, Any], targets: dict[str, Path], *, classes: list[str], kind: str,
                     data_dir: str | Path, resolution: int, settings: dict[str, Any], num_workers: int) -> None:
    """Write small in-memory datasets (``train``, ``val``; square ``resolution`` images) raw, one .beton each.

    Each sidecar records the class names, the per-channel mean/std of the training pixels (0-255), the
    source (``kind``, ``data_dir``, split) and the writer's ``settings``.
    """
    mean, std = splits["train"].channel_stats()
    for split, src in splits.items():
        sidecar = {
            "num_classes": len(classes), "classes": classes,
            "class_to_idx": {c: i for i, c in enumerate(classes)},
            "mean": mean, "std": std, "stats_from": "all training pixels (0-255 scale)",
            "source": {"kind": kind, "path": os.path.abspath(data_dir), "split": split},
            "settings": {**settings, "write_mode": "raw", "resolution": resolution},
        }
        meta = write_beton(src, targets[split], sidecar, write_mode="raw", num_workers=num_workers, strict=True,
                           labels=src.labels, max_image_bytes=resolution * resolution * 3)
        print(f"wrote {meta['num_samples']} {split} images of {kind} to {targets[split]}")


def run_cli(main: Callable[[], None]) -> None:
    """Run a writer's main(): bad input (DataPrepError) is one line and exit 2, as the trainer's;
    a failed write (disk full, permissions) one line and exit 1."""
    prog = Path(sys.argv[0]).name
    # SIGTERM -> SystemExit, so the temporary files are removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except DataPrepError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        print(f"{prog}: error: cannot write {e.filename or 'the output'}: {os_error_text(e)}; nothing was "
              f"written", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; nothing was written", file=sys.stderr)
        sys.exit(130)
