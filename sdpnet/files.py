"""The files of a run folder: config.json, spec.json, metrics.jsonl, results.json (all written atomically),
and the one atomic writer every JSON, PNG and other output of the package goes through.

Every file is written to ``.<name>.<pid>.tmp`` beside its target, flushed to disk and renamed
over the target, so a reader never sees half a file. A process killed mid-write (SIGKILL) leaves
its temporary file behind; :func:`remove_stale_temps` deletes those of processes that no longer
run (train_ffcv.py calls it when it opens a run folder). JSON never holds bare ``NaN`` or
``Infinity``: writing a non-finite number is an error.
"""
from __future__ import annotations

import errno
import io
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

__all__ = ["write_json", "write_jsonl", "read_jsonl", "save_figure", "git_revision", "temp_path",
           "atomic_file", "replace_atomically", "remove_stale_temps", "os_error_text"]


def temp_path(path: str | Path) -> Path:
    """The temporary name this process writes ``path`` under before renaming it."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Open :func:`temp_path` of ``path`` for binary writing; on leaving without an error the file is flushed,
    fsynced and renamed over ``path``. No temporary file is left either way."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_atomically(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_file`: flushed, fsynced, renamed; no temporary left."""
    with atomic_file(path) as f:
        f.write(data)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's live process
        return True
    return True


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete ``.<name>.<pid>.tmp`` files in ``folder`` whose process is gone; returns what was removed."""
    removed = []
    for p in Path(folder).glob(".*.tmp"):
        pid = p.name.rsplit(".", 2)[-2]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def _dumps(obj: Any, **kw: Any) -> str:
    try:
        return json.dumps(obj, allow_nan=False, **kw)
    except ValueError as e:   # a NaN or infinity: never written as bare NaN/Infinity
        raise ValueError(f"refusing to write a non-finite number to JSON ({e})") from None


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (NaN and infinity are refused)."""
    replace_atomically(path, (_dumps(obj, indent=2) + "\n").encode())


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> None:
    """Rewrite a JSON-lines file atomically, one record per line (NaN and infinity are refused)."""
    replace_atomically(path, "".join(_dumps(r) + "\n" for r in records).encode())


def save_figure(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    """Render a matplotlib figure to ``path`` atomically, in the format its suffix names (PNG without one),
    and close the figure (it is closed even when rendering fails)."""
    import matplotlib.pyplot as plt   # matplotlib: optional; only a caller that drew a figure gets here

    path = Path(path)
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    replace_atomically(path, buf.getvalue())
    return path


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSON-lines file; a line that is not a JSON object raises ValueError naming it."""
    out = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {i} is not valid JSON ({e.msg}); the file is damaged") from None
        if not isinstance(rec, dict):
            raise ValueError(f"{path} line {i} holds a {type(rec).__name__}, expected a JSON object")
        out.append(rec)
    return out


def os_error_text(e: OSError) -> str:
    """A short, plain reason for a failed write: disk full, permission denied, read-only, ..."""
    reasons = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
               errno.EFBIG: "the file is larger than the file-size limit allows",
               errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the file system is read-only"}
    reason = reasons.get(e.errno, e.strerror or type(e).__name__)
    return f"{reason} ({e.strerror})" if e.strerror and reason.lower() != e.strerror.lower() else reason


def git_revision(repo: str | Path) -> str | None:
    """``git describe --always --dirty`` of ``repo``, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
