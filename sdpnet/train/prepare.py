"""Phase two of a run: every check that needs the data files, the model, the machine or the run folder.

:func:`prepare` reads the .beton headers, builds the model (on the CPU), resolves ``auto`` speed options,
checks the run folder and, when resuming, the checkpoint; it writes nothing and raises UsageError (one
line, exit 2) on any problem. The :class:`Job` it returns is what :func:`sdpnet.train.loop.train` carries out.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sdpnet.data.betons import BetonInfo, DataFileError, check_beton, check_same_classes
from sdpnet.data.loaders import resolve_engine
from sdpnet.files import git_revision, os_error_text
from sdpnet.models.builder import build
from sdpnet.models.weights import WeightsError
from sdpnet.plugins import load_plugins
from sdpnet.spec import SpecError, load_spec
from sdpnet.train.config import options_dict
from sdpnet.train.dist import DistInfo, init_distributed
from sdpnet.train.errors import UsageError
from sdpnet.train.tracking import tensorboard_missing
from sdpnet.train.finetune import freeze_stem, init_from
from sdpnet.train.options import Options, Training
from sdpnet.train.precision import autocast_on
from sdpnet.train.resume import Resume, open_resume
from sdpnet.train.schedule import scaled_lr

__all__ = ["Job", "prepare", "resolve_speed", "make_model", "check_run_folder", "started_by"]

# The source checkout that holds the package and train_ffcv.py: config.json records its git revision.
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Job:
    """What :func:`prepare` checked and decided, for :func:`train` to carry out."""
    opts: Options
    info: DistInfo
    model: torch.nn.Module
    spec_record: dict
    num_classes: int
    amp: bool
    compile: bool
    peak_lr: float
    run: Path
    record: dict               # config.json of this run (for a resumed one: as it will be after the resume)
    resume: Resume | None = None
    notes: list[str] = field(default_factory=list)
    engine: str = "ffcv"       # what reads the .beton files (--data.engine resolved): ffcv or torch
    elastic_resume: bool = False   # resumed without --training.resume=1, by the torchrun job that started the run


def prepare(o: Options) -> Job:
    """Check the data files, the model, the machine and the run folder; raise UsageError on any problem."""
    d, t = o.data, o.training
    try:
        train_data = check_beton(d.train_path, name=f"--data.train_path={d.train_path}")
        val_data = check_beton(d.val_path, name=f"--data.val_path={d.val_path}")
        check_same_classes(train_data, val_data, f"--data.train_path={d.train_path}", f"--data.val_path={d.val_path}")
    except (DataFileError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    try:
        engine, engine_note = resolve_engine(d.engine)
    except ValueError as e:
        raise UsageError(f"--data.engine={d.engine}: {e}") from None
    for key, subset, data in (("train_subset", d.train_subset, train_data), ("val_subset", d.val_subset, val_data)):
        if subset > data.num_samples:
            raise UsageError(f"--data.{key}={subset} is more than the {data.num_samples} samples of {data.path}; "
                             f"use at most {data.num_samples} (0: all)")
    if o.logging.tensorboard and tensorboard_missing():
        raise UsageError(tensorboard_missing())
    device, amp, compile_ = resolve_speed(t)
    info = init_distributed(device)
    samples = (d.train_subset or train_data.num_samples) // info.world_size
    if t.batch_size > samples:
        where = f"--data.train_subset={d.train_subset}" if d.train_subset else f"all of {d.train_path}"
        per = f" per process ({info.world_size} processes)" if info.distributed else ""
        raise UsageError(f"--training.batch_size={t.batch_size} is larger than the {samples} training samples{per} "
                         f"({where}): not one batch per epoch; use a batch size of at most {samples}")
    torch.manual_seed(t.seed)  # identical initial weights on every rank (DDP also broadcasts rank 0's)
    model, spec_record = make_model(o, train_data.num_classes)
    global_batch = info.world_size * t.batch_size
    peak = o.lr.lr if o.lr.lr is not None else scaled_lr(o.lr.base_lr, global_batch)
    if o.lr.eta_min > peak:
        how = "--lr.lr" if o.lr.lr is not None else f"--lr.base_lr={o.lr.base_lr:g} x {global_batch} / 512"
        raise UsageError(f"--lr.eta_min={o.lr.eta_min:g} is above the peak lr {peak:g} ({how}); make eta_min "
                         f"at most {peak:g}")
    # torchrun's job id, if it can tell this job from others: --standalone and --rdzv_id give one, torchrun's
    # default "none" is shared by every job, so with it only a restart on this node counts as this job's
    job_id = info.run_id if info.run_id != "none" or info.restart else None
    run = check_run_folder(o, job_id=job_id)
    elastic = job_id is not None and not t.resume and started_by(run, job_id)   # continue the run this job started
    record = {**options_dict(o), "git": git_revision(REPO), "world_size": info.world_size,
              "global_batch": global_batch, "peak_lr": peak, "torch": torch.__version__,
              "data_files": {"train": _fingerprint(train_data), "val": _fingerprint(val_data)}, "data_engine": engine,
              "changes": [], "elastic": {"run_id": info.run_id, "restarts": []} if info.run_id is not None else None}
    job = Job(o, info, model, spec_record, train_data.num_classes, amp, compile_, peak, run, record, engine=engine)
    job.notes += [engine_note] if engine_note else []
    if (t.resume or elastic) and (run / "checkpoint.pt").exists():
        job.resume = open_resume(run, model, record, spec_record, allow_changes=t.resume_changed)
        job.elastic_resume = elastic
    if elastic or info.restart:   # recorded in config.json's elastic.restarts (run_folder.py)
        how = " automatically" if elastic else ""
        done = (f"resumed{how} from checkpoint.pt after epoch {job.resume.state['epoch']}" if job.resume
                else "no epoch was saved: the run starts from epoch 1")
        job.notes.append(f"torchrun job {info.run_id}, restart {info.restart} on this node "
                         f"(TORCHELASTIC_RESTART_COUNT): {done}")
    if o.model.init_from and job.resume is None:   # a resumed run has its own weights
        try:
            report = init_from(model, o.model.init_from, classes=train_data.classes)
        except (WeightsError, FileNotFoundError) as e:
            raise UsageError(f"--model.init_from={o.model.init_from}: {e}") from None
        lines = report.lines()
        job.notes += [f"--model.init_from={o.model.init_from}: {lines[0]}", *lines[1:]]
    if o.model.freeze_stem:
        job.notes.append(f"stem frozen: {freeze_stem(model):,} parameters not trained")
    return job


def started_by(run: Path, run_id: str) -> bool:
    """Whether the torchrun job ``run_id`` (``TORCHELASTIC_RUN_ID``) started or last resumed the run in ``run``
    (its config.json's ``elastic.run_id``)."""
    try:
        elastic = json.loads((run / "config.json").read_text()).get("elastic")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(elastic, dict) and elastic.get("run_id") == run_id


def _fingerprint(data: BetonInfo) -> dict:
    return {"num_samples": data.num_samples, "num_classes": data.num_classes}


def resolve_speed(t: Training) -> tuple[str, bool, bool]:
    """(device request, bf16 autocast on?, torch.compile on?) with 'auto' resolved for this machine."""
    if t.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--training.device=cuda but torch sees no CUDA device; use cpu or auto")
    cuda = torch.cuda.is_available() if t.device == "auto" else t.device == "cuda"
    compile_ = t.compile == "on" or (t.compile == "auto" and cuda)
    if compile_ and not cuda and not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        raise UsageError(f"--training.compile={t.compile} on the CPU needs a C++ compiler and none is on PATH "
                         f"(g++, c++, clang++); install one or use --training.compile=off")
    return t.device, autocast_on(t.amp, "cuda" if cuda else "cpu"), compile_


def make_model(o: Options, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """Build the spec (on CPU) with the data's class count; returns the model and its spec.json record."""
    res = o.validation.res
    overrides = {"num_classes": num_classes, "img_size": res}
    overrides |= {k: v for k, v in (("drop_path", o.model.drop_path), ("dropout", o.model.dropout)) if v is not None}
    try:
        model_spec = load_spec(o.model.spec, **overrides)
        model = build(model_spec)
    except SpecError as e:
        raise UsageError(f"bad --model.spec: {e}") from None
    if res % model.stride:
        raise UsageError(f"--validation.res={res} is not a multiple of the model's stride {model.stride}; "
                         f"use {max(model.stride, res // model.stride * model.stride)}")
    return model, {**model_spec.to_json(), "canonical": str(model_spec.arch)}


def run_path(o: Options) -> Path:
    """The run folder the options name (``--logging.folder``, else runs/ and the spec file's name)."""
    return Path(o.logging.folder or Path("runs") / (Path(o.model.spec).stem if o.model.spec.endswith(".json")
                                                      else "spec"))


def load_recorded_plugins(o: Options) -> list[str]:
    """With ``--training.resume=1``: load the plugins recorded in the run folder's config.json (the run's spec
    may name their blocks, norms...) and return them; none when there is no run to resume. Raises UsageError
    naming a plugin that cannot be loaded."""
    config = run_path(o) / "config.json"
    if not o.training.resume or not config.is_file():
        return []
    try:
        recorded = json.loads(config.read_text()).get("plugins", [])
    except (OSError, ValueError, AttributeError):
        return []   # an unreadable record: check_run_folder/open_resume report the run folder's problems
    try:
        return load_plugins(recorded, env=False, entry_points=False)
    except ValueError as e:
        raise UsageError(f"{e} (the run in {run_path(o)} was trained with it; recorded in its config.json)") from None


def check_run_folder(o: Options, job_id: str | None = None) -> Path:
    """The run folder, refused (nothing created) if it holds a run and resume is off, or cannot be written.

    ``job_id``: the torchrun job (``TORCHELASTIC_RUN_ID``) this process belongs to. A run folder that job
    started (:func:`started_by`), in an attempt before a restart, is resumed without --training.resume=1; any
    other run is refused as usual, so a first attempt's refusal stays a refusal in every restart.
    """
    run = run_path(o)
    if run.exists() and not run.is_dir():
        raise UsageError(f"--logging.folder={run} is a file, not a folder; choose another path")
    holds_run = (run / "checkpoint.pt").exists() or (run / "metrics.jsonl").exists()
    if holds_run and not o.training.resume and not (job_id is not None and started_by(run, job_id)):
        why = "" if job_id is None else (f" (not started by this torchrun job, {job_id}, so it is not resumed "
                                         f"automatically)")
        raise UsageError(f"--logging.folder={run} already holds a run{why}; pass --training.resume=1 to continue "
                         f"it or choose another folder")
    base = run
    while not base.exists():   # the nearest folder that exists: the run folder is created inside it
        base = base.parent
    try:
        if not base.is_dir():
            raise NotADirectoryError(f"{base} is a file")
        fd, probe = tempfile.mkstemp(dir=base, prefix=".sdpnet-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        why = os_error_text(e) if e.errno else str(e)
        raise UsageError(f"--logging.folder={run} cannot be written: no file can be created in {base} ({why}); "
                         f"choose a folder you can write to") from None
    return run


