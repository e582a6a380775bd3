"""The Optuna side of ``python -m sdpnet search``: samplers, pruners, the study's storage and its record of the space,
which trials count, and the liveness of workers (heartbeats for a database, processes for a journal file).

Nothing here knows specs or runs; :mod:`sdpnet.tools.search` binds these to templates and run folders.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from sdpnet.tools.sweep import SweepError

__all__ = ["OBJECTIVES", "ALIASES", "SAMPLERS", "PRUNERS", "HOST", "WORKER", "SearchError", "make_sampler",
           "make_pruner", "open_storage", "redact", "signature", "space_difference", "counted", "alive",
           "heartbeat_of", "Heartbeat", "retry"]

# objective -> direction (the names of compare's leaderboard columns)
OBJECTIVES = {"top1": "maximize", "ema_top1": "maximize", "best_top1": "maximize", "gflops": "minimize",
              "params": "minimize", "img_per_s": "maximize", "train_s": "minimize", "peak_mem_mib": "minimize"}
ALIASES = {"img/s": "img_per_s", "flops": "gflops"}
SAMPLERS = ("tpe", "random", "grid", "nsga2")
PRUNERS = ("none", "median", "sha", "hyperband")
HOST = socket.gethostname()

optuna.logging.set_verbosity(optuna.logging.WARNING)   # the search prints its own line per trial
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
# the workers beat themselves (Heartbeat below), as Study.optimize would
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


class SearchError(SweepError):
    """A bad search command line or a study that does not fit it: printed, exit 2, nothing run."""


def make_sampler(name: str, trials: int, seed: int | None, grid: dict[str, list[Any]] | None = None
                 ) -> optuna.samplers.BaseSampler:
    """Optuna's sampler ``name``: TPE starts with a third of the trials at random (2 to 10), NSGA-II's generation
    is half the trials (2 to 50), grid walks ``grid`` (every parameter's values)."""
    if name == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=max(2, min(10, trials // 3)), seed=seed,
                                          constant_liar=True)   # workers in parallel do not all draw one design
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return _Grid(grid, seed=seed)
    return optuna.samplers.NSGAIISampler(population_size=max(2, min(50, trials // 2)), seed=seed)


class _Grid(optuna.samplers.GridSampler):
    """Optuna's grid sampler for an ask-and-tell loop: its ``after_trial`` stops ``Study.optimize`` when the grid is
    done, which raises outside ``optimize``; the search stops on its count of trials instead."""

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        pass


def make_pruner(name: str, steps: int) -> optuna.pruners.BasePruner:
    """Optuna's pruner ``name`` over a run of ``steps`` steps (epochs, or 100 percent of a time budget): median
    after 2 finished trials; successive halving and Hyperband with rungs at a ninth, a third and all of it."""
    first = max(1, round(steps / 9))
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=steps, reduction_factor=3)
    return optuna.pruners.NopPruner()


def open_storage(url: str | None, out: Path, heartbeat: int) -> optuna.storages.BaseStorage:
    """The study's storage: ``OUT/study.journal`` (or a journal file ``url``), or a database ``url`` with
    heartbeats every ``heartbeat`` s, a trial stale after twice that, and a stale trial retried (twice at most)."""
    if url is None or "://" not in url:
        path = Path(url) if url else out / "study.journal"
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(path)))
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                                          heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=2),
                                          engine_kwargs={"pool_pre_ping": True})
    except Exception as e:   # sqlalchemy's errors: no driver, no server, bad URL
        raise SearchError(f"--storage {redact(url)}: {type(e).__name__}: {str(e).splitlines()[0]}") from None


def redact(url: str) -> str:
    """A storage URL without its password."""
    head, sep, tail = url.partition("://")
    if sep and "@" in tail:
        cred, _, host = tail.rpartition("@")
        return f"{head}://{cred.split(':')[0]}:***@{host}" if ":" in cred else url
    return url


def signature(args: argparse.Namespace, objectives: list[str], options: dict[str, dict[str, Any]],
              altering: set[str]) -> dict[str, Any]:
    """What the study searches: sources, --space, --set, objectives and the training options that change a run
    (file paths left out: each machine has its own)."""
    opts = {k: options[k.split(".")[0]][k.split(".")[1]] for k in sorted(altering)
            if k not in ("model.spec", "logging.folder")}
    return {"sources": list(args.specs), "space": dict(args.space_opts), "set": list(args.set),
            "objectives": objectives, "options": json.loads(json.dumps(opts, default=str))}


def space_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first difference between two signatures, in words; None when they are the same."""
    if old == new:
        return None
    names = {"sources": "the templates", "space": "--space", "set": "--set", "objectives": "--objectives"}
    for key in ("sources", "space", "set", "objectives"):
        if old.get(key) != new.get(key):
            return f"{names[key]}: {_show(old.get(key))} in the study, {_show(new.get(key))} here"
    o, n = old.get("options", {}), new.get("options", {})
    for key in sorted(set(o) | set(n)):
        if o.get(key) != n.get(key):
            return f"--{key}: {o.get(key, '(unset)')!r} in the study, {n.get(key, '(unset)')!r} here"
    return "the study's record differs"


def _show(v: Any) -> str:
    if isinstance(v, list):
        return " ".join(repr(x) for x in v) or "none"
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items()) or "none"
    return repr(v)


def counted(trials: Sequence[FrozenTrial]) -> int:
    """Finished trials toward ``--trials``: complete, pruned, and failed on their own (a design that does not build,
    a run that failed); not those of a worker that died or was interrupted (they are retried)."""
    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED)
               or (t.state == TrialState.FAIL and "error" in t.user_attrs) for t in trials)


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


WORKER = {"host": HOST, "pid": os.getpid(), "start": _start_time(os.getpid())}


def alive(worker: dict[str, Any]) -> bool:
    """Whether a worker of this machine still runs (the same pid, started at the same time)."""
    return _start_time(int(worker["pid"])) == worker.get("start")


def heartbeat_of(storage: Any) -> int | None:
    """The storage's heartbeat interval in seconds (a database), or None (a journal file has no heartbeat)."""
    get = getattr(storage, "get_heartbeat_interval", None)
    return get() if get is not None else None


class Heartbeat:
    """Record a trial's heartbeat every ``interval`` s in a thread (a database storage), as Optuna's optimize does."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        interval = heartbeat_of(storage)
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True) if interval else None

    def _beat(self) -> None:
        while not self.stop.is_set():
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:   # a dropped connection: the next beat tries again
                pass
            self.stop.wait(self.interval)

    def __enter__(self) -> "Heartbeat":
        if self.thread:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        if self.thread:
            self.thread.join()


def retry(study: optuna.Study, trial: FrozenTrial, max_retry: int | None = 2) -> None:
    """Queue ``trial``'s design again (its parameters fixed): Optuna's callback for a stale trial."""
    RetryHeartbeatStaleTrialCallback(max_retry=max_retry)(study, trial)
