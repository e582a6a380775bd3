"""Writing the run folder: config.json, spec.json and data.json at the start, then one commit per epoch.

Every file is replaced atomically (:mod:`sdpnet.files`); the checkpoint's rename is what saves an epoch,
and metrics.jsonl is rewritten from the checkpoint after it (docs/training.md, resume rules).
"""
from __future__ import annotations

import json
from pathlib import Path

from sdpnet.data.record import DATA_FILE, data_record
from sdpnet.files import os_error_text, remove_stale_temps, write_json, write_jsonl
from sdpnet.train.checkpoint import save_checkpoint
from sdpnet.train.errors import RunError
from sdpnet.train.prepare import Job

__all__ = ["start_run_folder", "commit", "saved"]


def start_run_folder(job: Job) -> list[dict]:
    """Create or reopen the run folder (rank 0): config.json, spec.json, metrics.jsonl; returns the epochs done."""
    run, resume = job.run, job.resume
    run.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_temps(run):
        job.notes.append(f"removed {p.name}, left by a killed run")
    old = _read_config(run)
    elastic = _elastic(job, old)
    if resume is None:   # a fresh run (also --training.resume=1 with no checkpoint yet)
        write_json(run / "config.json", {**job.record, "elastic": elastic})
        write_json(run / "spec.json", job.spec_record)
        write_json(run / DATA_FILE, data_record(job.opts.data.train_path, job.opts.data.val_path))  # class names
        for stale in ("metrics.jsonl", "results.json"):   # of an attempt that saved no epoch
            (run / stale).unlink(missing_ok=True)
        return []
    if resume.changes:
        record = {**job.record, "changes": [*old.get("changes", []),
                                            {"epoch": resume.state["epoch"], "values": resume.changes}],
                  "elastic": elastic}
        write_json(run / "config.json", record)
        write_json(run / "spec.json", job.spec_record)
        job.notes.append(f"resumed with changes (recorded in config.json): {', '.join(resume.changes)}")
    elif old.get("elastic") != elastic:   # resumed by another torchrun job, or by a restart of this one
        write_json(run / "config.json", {**old, "elastic": elastic})
    text = "".join(json.dumps(r) + "\n" for r in resume.rows)
    metrics = run / "metrics.jsonl"
    if not metrics.is_file() or metrics.read_text() != text:
        write_jsonl(metrics, resume.rows)
        job.notes.append(f"metrics.jsonl rewritten from checkpoint.pt (epochs 1-{resume.state['epoch']}): it had "
                         f"a missing, damaged or extra line")
    return list(resume.rows)


def _read_config(run: Path) -> dict:
    """The run's config.json as it is ({} when absent or unreadable: a fresh run writes its own)."""
    try:
        old = json.loads((run / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return old if isinstance(old, dict) else {}


def _elastic(job: Job, old: dict) -> dict | None:
    """config.json's ``elastic``: the torchrun job that started or last resumed the run (``run_id``) and every
    restart of a worker group that continued it (``restarts``: run id, rank 0's node's restart count, epochs
    saved before it).

    Outside torchrun a resumed run keeps what its config.json says, and a fresh one has none (null).
    """
    info, resume = job.info, job.resume
    before = old.get("elastic") if isinstance(old.get("elastic"), dict) else {}
    if info.run_id is None:
        return (before or None) if resume is not None else None
    # restarts are kept across resumes, and across the attempts of one job that saved no epoch
    keep = resume is not None or before.get("run_id") == info.run_id
    restarts = list(before.get("restarts", [])) if keep else []
    if job.elastic_resume or info.restart:
        restarts.append({"run_id": info.run_id, "restart": info.restart,
                         "after_epoch": resume.state["epoch"] if resume is not None else 0})
    return {"run_id": info.run_id, "restarts": restarts}


def commit(run: Path, state: dict) -> None:
    """Save one epoch: the checkpoint (which holds every epoch's metrics), then metrics.jsonl rewritten from it.

    The checkpoint's rename is the commit: a failure before it leaves the previous epoch's
    checkpoint and metrics; a failure after it leaves a metrics.jsonl that the next resume
    rewrites from the checkpoint. No failure duplicates or loses an epoch.
    """
    epoch, path = state["epoch"], run / "checkpoint.pt"
    kept = f"the run folder holds epoch {epoch - 1}" if epoch > 1 else "no epoch is saved yet"
    try:
        save_checkpoint(path, state)
    except OSError as e:
        raise RunError(f"cannot write {path}: {os_error_text(e)}; epoch {epoch} is not saved and {kept}: make room "
                       f"(or fix the permissions) and continue with --training.resume=1") from None
    try:
        write_jsonl(run / "metrics.jsonl", state["metrics"])
    except OSError as e:
        raise RunError(f"cannot write {run / 'metrics.jsonl'}: {os_error_text(e)}; checkpoint.pt holds epoch "
                       f"{epoch} and --training.resume=1 rewrites metrics.jsonl from it") from None


def saved(epoch: int) -> str:
    """What a run that fails in (0-based) ``epoch`` has saved, and how to go on."""
    if epoch == 0:
        return "no epoch is saved: start again"
    return (f"epoch {epoch + 1} is not saved (the run folder holds epoch {epoch}): continue with "
            f"--training.resume=1 --training.resume_changed=1")
