"""Resuming a run: its checkpoint checked, and this command line compared with the run's config.json and spec.json."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from sdpnet.train.checkpoint import CheckpointError, load_checkpoint
from sdpnet.train.config import altering_keys, option_defaults
from sdpnet.train.errors import UsageError
from sdpnet.train.options import Options

__all__ = ["Resume", "CHECKPOINT_KEYS", "open_resume", "config_changes"]

CHECKPOINT_KEYS = ("model", "ema", "optimizer", "epoch", "step", "rng", "best_top1", "train_time_s", "metrics")


@dataclass
class Resume:
    """A checkpoint to continue from, with the epochs it holds and the option changes it is resumed with."""
    state: dict
    rows: list[dict]
    changes: dict[str, list]


def open_resume(run: Path, model: nn.Module, record: dict, spec_record: dict, *, allow_changes: bool) -> Resume:
    """Load and check ``run``'s checkpoint into ``model`` and compare the run's config.json/spec.json with
    ``record``/``spec_record`` (this command line's); raises UsageError. ``allow_changes``: --training.resume_changed.
    """
    path = run / "checkpoint.pt"
    restart = f"move it away (mv {path} {path}.bad) to restart this run from epoch 0, or use a new --logging.folder"
    try:
        state = load_checkpoint(path)
    except CheckpointError as e:
        raise UsageError(f"{e}: --training.resume=1 cannot continue from it; {restart}") from None
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise UsageError(f"{path} lacks {', '.join(missing)} (written by an older or another program); {restart}")
    rows = state["metrics"]
    if not isinstance(rows, list) or [r.get("epoch") for r in rows] != list(range(1, state["epoch"] + 1)):
        raise UsageError(f"{path} is damaged: its metrics do not cover epochs 1..{state['epoch']}; {restart}")
    changes = config_changes(run, record, spec_record)
    if changes and not allow_changes:
        listed = ", ".join(f"{k} {json.dumps(a)} -> {json.dumps(b)}" for k, (a, b) in changes.items())
        raise UsageError(f"--training.resume=1 with options that change the run in {run}/config.json: {listed}; "
                         f"resume with the run's values, pass --training.resume_changed=1 to continue with the new "
                         f"ones (recorded in config.json), or use a new --logging.folder")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        first = str(e).strip().split("\n")[0]
        raise UsageError(f"{path} does not fit the model of --model.spec ({first}); {restart}") from None
    return Resume(state, rows, changes)


def config_changes(run: Path, record: dict, spec_record: dict) -> dict[str, list]:
    """{key: [run's value, this command line's]} for every option, spec entry or data file that differs."""
    old, old_spec = {}, {}
    for name in ("config.json", "spec.json"):
        try:
            loaded = json.loads((run / name).read_text())
        except (OSError, ValueError):
            loaded = {"unreadable": name}   # nothing to compare with: every value counts as changed
        old, old_spec = (loaded, old_spec) if name == "config.json" else (old, loaded)
    absent = "(absent)"
    defaults = option_defaults(Options)   # an option the run predates counts as its default
    out = {}
    for key in sorted(altering_keys(Options)):
        sec, name = key.split(".")
        section = old.get(sec) if isinstance(old.get(sec), dict) else {}
        before = section.get(name, absent if "unreadable" in old else defaults[key])
        if before != record[sec][name]:
            out[key] = [before, record[sec][name]]
    for key in ("world_size", "data_files"):
        if old.get(key, absent) != record[key]:
            out[key] = [old.get(key, absent), record[key]]
    for key in sorted(set(old_spec) | set(spec_record)):
        if old_spec.get(key, absent) != spec_record.get(key, absent):
            out[f"spec.{key}"] = [old_spec.get(key, absent), spec_record.get(key, absent)]
    return out


