"""``python -m sdpnet sweep``: train a set of specs with one recipe, one ``train_ffcv.py`` run folder each.

    python -m sdpnet sweep specs/gallery specs/fashion_mnist.json 'P4(d=64)-[DWC7+MLP,ENC]x{2,4}-LIN' \\
        -C configs/fashion_mnist.yaml --set dim=64 --grid lr.lr=0.001,0.003 --budget.minutes=3 --out runs/sweep

The set: spec strings, templates with ``{a,b}`` alternatives (:mod:`sdpnet.spec.template`), ``.json``
spec files, preset names and folders of spec files (a gallery), each crossed with every point of the
``--grid`` options (``--grid lr.lr=0.001,0.003`` over a training option, ``--grid dim=64,128`` over a
spec hyperparameter). ``--set key=value`` sets a spec hyperparameter of every spec. Training options
(``-C FILE``, ``--section.key=value``) are those of ``train_ffcv.py``; ``--budget.epochs=N`` trains every
run N epochs, ``--budget.minutes=M`` M minutes of training time with the lr schedule laid over them.

Each run is an ordinary ``train_ffcv.py`` process with ``--logging.folder=OUT/NAME``, where NAME is a
short readable name and 8 hex digits of the hash of the canonical spec and the options that change
what the run computes, so the same run always lands in the same folder. Before anything runs every
spec is parsed and resolved and every grid point's options are checked; any problem is printed (with
the caret under the spec text) and the sweep exits with status 2. A run whose folder holds
``results.json`` is skipped; one with a checkpoint is resumed from it (``--training.resume=1``), so
the same command continues a sweep that was interrupted (Ctrl-C, a killed job, a reboot). With N GPUs
N runs go at once, one per GPU (``CUDA_VISIBLE_DEVICES``); on a CPU, one after another. Each run's
output goes to ``NAME/train.log`` and, prefixed with its name, to the terminal. The sweep ends with
``python -m sdpnet compare OUT``'s table, CSV, Markdown and plots.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from sdpnet.data.sidecar import read_sidecar
from sdpnet.files import read_jsonl, write_json
from sdpnet.spec import ModelSpec, SpecError, load_spec, parse_override, resolve, spec_sources
from sdpnet.spec.template import expand, is_template, load_expansion
from sdpnet.train.config import ConfigError, altering_keys, options_dict
from sdpnet.train.options import read_options
from sdpnet.tools.cli import UsageError, command_main, run_command

__all__ = ["RunPlan", "SweepError", "Slot", "collect_specs", "grid_points", "point_options", "plan_run", "plan_runs",
           "run_state", "run_sweep", "start_run", "finish_run", "stop_run", "write_spec_file", "add_arguments",
           "add_common_arguments", "parse_args", "budget_args", "slug", "main"]

REPO = Path(__file__).resolve().parents[2]   # the source checkout: train_ffcv.py
PROG = "python -m sdpnet sweep"
# Options the sweep sets for every run itself.
OWNED = ("logging.folder", "training.resume", "model.spec", "training.epochs")
SLUG = re.compile(r"[^A-Za-z0-9.+-]+")


class SweepError(UsageError):
    """A bad sweep command line: printed, exit 2, nothing run. ``problems``: one message per problem."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class RunPlan:
    """One run of the sweep.

    Attributes:
        name: the run folder's name (readable label + ``-`` + 8 hex digits of ``key``).
        model: the spec with its hyperparameters (``--set`` and grid values applied).
        source: where the spec came from (a file, a template, a string).
        grid: this run's grid values (``{key: text}``).
        args: the training options of this run (before the ones the sweep owns).
        key: the hash of the canonical spec and the options that change the run.
    """

    name: str
    model: ModelSpec
    source: str
    grid: dict[str, str]
    args: tuple[str, ...]
    key: str

    @property
    def canonical(self) -> str:
        return str(self.model.arch)


@dataclass
class Slot:
    """A place a run can go: one GPU (its id) or the CPU (None)."""

    gpu: str | None
    proc: subprocess.Popen | None = None
    plan: RunPlan | None = None
    pump: threading.Thread | None = None
    started: float = 0.0
    resumed: bool = False
    log: Any = field(default=None, repr=False)


# ---- the set of specs -------------------------------------------------------------------------------

def collect_specs(sources: Sequence[str], hparams: dict[str, Any], check: bool = True
                  ) -> tuple[list[tuple[str, ModelSpec, str]], list[str]]:
    """(label, ModelSpec with ``hparams``, source) for every spec of ``sources``, and the error messages.

    A folder stands for its ``*.json`` files (sorted), a ``.json`` path for its spec, anything else for
    a template (a plain spec string is a template without alternatives) or a preset name. With
    ``check``, every spec is also resolved (the checks that need the hyperparameters).
    """
    def checked(model: ModelSpec) -> ModelSpec:
        if check:
            resolve(model)
        return model

    out: list[tuple[str, ModelSpec, str]] = []

    def add_file(path: Path) -> None:
        try:
            model = checked(load_spec(str(path), **hparams))
        except SpecError as e:
            errors.append(f"{path}: {e}")
            return
        out.append((model.name or path.stem, model, str(path)))

    items, errors = spec_sources(sources)
    for src, is_file in items:
        if is_file:
            add_file(Path(src))
        elif is_template(src):
            try:
                expansions = expand(src)
            except SpecError as e:
                errors.append(f"template {src!r}: {e}")
                continue
            seen = set()
            for ex in expansions:
                try:
                    model = load_expansion(ex, check, **hparams)
                    out.append((slug(ex.text), model, f"template {src}"))
                except SpecError as e:   # the same place in the template once, not once per expansion
                    if (e.message.split(" in the expansion ")[0], e.col) not in seen:
                        seen.add((e.message.split(" in the expansion ")[0], e.col))
                        errors.append(f"template {src!r}: {e}")
        else:
            try:
                model = checked(load_spec(src, **hparams))
            except SpecError as e:
                errors.append(f"spec {src!r}: {e}")
                continue
            out.append((model.name or slug(str(model.arch)), model, src))
    return out, errors


def slug(text: str, width: int = 40) -> str:
    """A file-name-safe short form of a spec string or a grid value."""
    s = SLUG.sub("_", re.sub(r"[()\[\]=]", "", text)).strip("_")
    return s if len(s) <= width else s[:width].rstrip("_.+-")


def grid_points(grid: Sequence[str]) -> list[dict[str, str]]:
    """Every combination of the ``--grid key=v1,v2`` options, in order (the last key varies fastest)."""
    keys, values = [], []
    for g in grid:
        key, sep, raw = g.partition("=")
        key = key.strip().removeprefix("--")
        vals = [v.strip() for v in raw.split(",")]
        if not sep or not key or not raw.strip() or any(not v for v in vals):
            raise SweepError(f"--grid {g!r}: expected key=v1,v2,... with no empty value, as in --grid lr.lr=0.001,0.003")
        if key in keys:
            raise SweepError(f"--grid {key} is given twice; give all its values in one --grid {key}=v1,v2")
        if key in OWNED and key != "training.epochs":
            raise SweepError(f"--grid {key}: the sweep sets {key} itself; grid over training options or spec "
                             f"hyperparameters")
        keys.append(key)
        values.append(list(dict.fromkeys(vals)))
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


# ---- options of train_ffcv.py -----------------------------------------------------------------------

def check_options(argv: list[str]) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """The run's options as ``{section: {key: value}}`` and the keys that alter a run; raises SweepError."""
    try:
        opts = read_options(argv)
    except ConfigError as e:
        raise SweepError(str(e).rstrip(".")) from None
    return options_dict(opts), altering_keys(type(opts))


def data_facts(options: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The hyperparameters the run will impose on the spec: the data's class count, the validation size."""
    facts: dict[str, Any] = {"img_size": options["validation"]["res"]}
    try:
        facts["num_classes"] = int(read_sidecar(options["data"]["train_path"])["num_classes"])
    except (FileNotFoundError, ValueError, KeyError) as e:
        raise SweepError(f"--data.train_path={options['data']['train_path']}: {e}") from None
    return facts


def run_key(model: ModelSpec, options: dict[str, dict[str, Any]], altering: set[str]) -> str:
    """8 hex digits of the hash of the canonical spec (with its hyperparameters) and the altering options."""
    spec = {k: v for k, v in model.to_json().items() if k not in ("name", "description")}
    opts = {key: options[key.split(".")[0]][key.split(".")[1]] for key in sorted(altering)
            if key not in ("model.spec", "logging.folder")}
    opts |= {"data.train_path": options["data"]["train_path"], "data.val_path": options["data"]["val_path"]}
    text = json.dumps({"spec": spec, "options": opts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def point_options(point: dict[str, str], base_args: Sequence[str]
                  ) -> tuple[list[str], dict[str, Any], dict[str, dict[str, Any]], set[str], dict[str, Any]]:
    """One grid point's (or trial's) training arguments, spec hyperparameters, checked options, altering keys and
    data facts; raises SweepError naming every problem."""
    train_args = [f"--{k}={v}" for k, v in point.items() if "." in k]
    try:
        spec_hp = dict(parse_override(f"{k}={v}") for k, v in point.items() if "." not in k)
    except SpecError as e:
        raise SweepError(f"--grid: {e}") from None
    argv = [*base_args, *train_args]
    try:
        options, altering = check_options(["--model.spec=sweep", *argv])
        facts = data_facts(options)
    except SweepError as e:
        where = " with " + " ".join(f"{k}={v}" for k, v in point.items()) if point else ""
        raise SweepError(*[f"training options{where}: {p}" for p in e.problems]) from None
    return argv, spec_hp, options, altering, facts


def plan_run(label: str, model: ModelSpec, source: str, point: dict[str, str], argv: Sequence[str],
             options: dict[str, dict[str, Any]], altering: set[str]) -> RunPlan:
    """The run of one spec at one grid point: its folder name and key; SweepError if the validation resolution
    does not fit the model's stride."""
    plan = resolve(model)
    res = options["validation"]["res"]
    if res % plan.stride:
        raise SweepError(f"{source}: --validation.res={res} is not a multiple of the model's stride {plan.stride} "
                         f"({model.arch})")
    key = run_key(model, options, altering)
    suffix = "".join(f"-{slug(k.rsplit('.', 1)[-1] + v, 16)}" for k, v in point.items())
    return RunPlan(f"{slug(label)}{suffix}-{key}", model, source, dict(point), tuple(argv), key)


def plan_runs(sources: Sequence[str], hparams: dict[str, Any], grid: Sequence[dict[str, str]],
              base_args: Sequence[str]) -> list[RunPlan]:
    """Every run of the sweep, checked: specs parse and resolve with the data, every option is valid.

    Raises SweepError with every problem found (one per line) before anything has run.
    """
    errors: list[str] = []
    plans: dict[str, RunPlan] = {}
    for point in grid:
        try:
            argv, spec_hp, options, altering, facts = point_options(point, base_args)
        except SweepError as e:
            errors += e.problems
            continue
        specs, spec_errors = collect_specs(sources, {**hparams, **spec_hp, **facts})
        errors += [e for e in spec_errors if e not in errors]
        for label, model, source in specs:
            try:
                plan = plan_run(label, model, source, point, argv, options, altering)
            except SweepError as e:
                errors += e.problems
                continue
            plans.setdefault(plan.name, plan)   # the same spec from two sources: one run
    if errors:
        raise SweepError(*errors)
    if not plans:
        raise SweepError("no specs to run; give spec strings, templates, .json files or folders of them")
    return list(plans.values())


# ---- running ----------------------------------------------------------------------------------------

def run_state(folder: Path) -> tuple[str, int]:
    """``("done", epochs)``, ``("partial", epochs saved)`` or ``("new", 0)`` for a run folder."""
    if (folder / "results.json").is_file():
        try:
            return "done", len(read_jsonl(folder / "metrics.jsonl"))
        except (OSError, ValueError):
            return "done", 0
    if (folder / "checkpoint.pt").is_file():
        try:
            return "partial", len(read_jsonl(folder / "metrics.jsonl"))
        except (OSError, ValueError):
            return "partial", 0
    return "new", 0


def visible_gpus(request: str) -> list[str | None]:
    """The slots to run in: ``auto`` (every GPU torch sees, else the CPU), ``cpu``, or GPU ids ``0,1``."""
    if request == "cpu":
        return [None]
    if request != "auto":
        ids = [g.strip() for g in request.split(",")]
        if not all(re.fullmatch(r"\d+", g) for g in ids) or len(set(ids)) != len(ids):
            raise SweepError(f"--gpus {request!r}: expected auto, cpu or distinct GPU ids such as 0,1")
        return list(ids)
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
        return list(ids) or [None]
    import torch   # torch: only to count the GPUs when neither --gpus nor CUDA_VISIBLE_DEVICES names them

    return [str(i) for i in range(torch.cuda.device_count())] or [None]


def die_with_parent() -> None:
    """In the child: get SIGTERM when the sweep dies (even by SIGKILL), so no run trains on unsupervised."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pump(proc: subprocess.Popen, log: Any, name: str, echo: bool) -> None:
    for line in iter(proc.stdout.readline, b""):
        log.write(line)
        log.flush()
        if echo:
            text = line.decode(errors="replace").rstrip()
            if text:
                print(f"[{name}] {text}", flush=True)


def start_run(slot: Slot, plan: RunPlan, out: Path, script: Path, resumed: bool, echo: bool) -> None:
    folder = out / plan.name
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = out / "specs" / f"{plan.name}.json"
    cmd = [sys.executable, str(script), *plan.args, f"--model.spec={spec_file}",
           f"--logging.folder={folder}", "--training.resume=1", "--logging.progress=0"]
    env = dict(os.environ)
    if slot.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu
    slot.log = open(folder / "train.log", "ab")
    slot.log.write(f"\n$ {' '.join(cmd)}\n".encode())
    slot.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                 preexec_fn=die_with_parent)
    slot.plan, slot.started, slot.resumed = plan, time.perf_counter(), resumed
    slot.pump = threading.Thread(target=_pump, args=(slot.proc, slot.log, plan.name, echo), daemon=True)
    slot.pump.start()


def finish_run(slot: Slot, out: Path) -> tuple[RunPlan, int, str]:
    slot.pump.join()
    slot.log.close()
    plan, rc = slot.plan, slot.proc.returncode
    wall = time.perf_counter() - slot.started
    slot.proc = slot.plan = slot.pump = slot.log = None
    results = out / plan.name / "results.json"
    if rc == 0 and results.is_file():
        r = json.loads(results.read_text())
        ema = f", EMA {100 * r['ema_top1']:.2f}%" if r.get("ema_top1") is not None else ""
        return plan, rc, (f"done {plan.name}: top-1 {100 * r['top1']:.2f}%{ema}, {r['epochs']} epochs, "
                          f"{r['train_time_s']:.0f} s training, {wall:.0f} s wall")
    log = out / plan.name / "train.log"
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-1:] if log.is_file() else []
    return plan, rc or 1, f"FAILED {plan.name} (exit {rc}): {tail[0] if tail else 'no output'} (log: {log})"


def run_sweep(plans: Sequence[RunPlan], out: Path, script: Path, slots: list[str | None],
              echo: bool = True) -> tuple[list[str], list[str]]:
    """Run every plan not yet done, ``len(slots)`` at a time; returns (finished names, failed names)."""
    todo = []
    for i, plan in enumerate(plans, 1):
        state, epochs = run_state(out / plan.name)
        if state == "done":
            print(f"[{i}/{len(plans)}] skip {plan.name}: done ({epochs} epochs)", flush=True)
        else:
            todo.append((i, plan, state, epochs))
    pool = [Slot(g) for g in slots]
    finished, failed = [], []
    try:
        while todo or any(s.proc for s in pool):
            for slot in pool:
                if slot.proc is None and todo:
                    i, plan, state, epochs = todo.pop(0)
                    how = f"resume after epoch {epochs}" if state == "partial" else "start"
                    where = f" on GPU {slot.gpu}" if slot.gpu is not None else ""
                    print(f"[{i}/{len(plans)}] {how} {plan.name}{where}: {plan.canonical}", flush=True)
                    start_run(slot, plan, out, script, state == "partial", echo)
            time.sleep(0.2)
            for slot in pool:
                if slot.proc is not None and slot.proc.poll() is not None:
                    plan, rc, line = finish_run(slot, out)
                    print(line, flush=True)
                    (finished if rc == 0 else failed).append(plan.name)
    except KeyboardInterrupt:   # a terminal's Ctrl-C reaches the runs too; a `kill -INT` of the sweep does not
        for slot in pool:
            if slot.proc is not None:
                stop_run(slot.proc)
                finish_run(slot, out)
        raise
    return finished, failed


def stop_run(proc: subprocess.Popen) -> None:
    """Let a run end as after Ctrl-C (it keeps its last saved epoch); kill it if it does not within a minute."""
    for sig, wait in ((None, 5), (signal.SIGINT, 60), (signal.SIGKILL, None)):
        if sig is not None and proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _lock(out: Path) -> Any:
    """Hold ``OUT/.lock`` for the life of this process (released even on SIGKILL); SweepError if taken."""
    handle = open(out / ".lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        raise SweepError(f"another sweep is running in {out} (pid {handle.read().strip() or '?'}); wait for it "
                         f"or use another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def write_manifest(out: Path, plans: Sequence[RunPlan], argv: Sequence[str]) -> None:
    """``OUT/sweep.json``: every run ever planned in this folder (spec, source, grid, options) and each command."""
    path = out / "sweep.json"
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        old = {}
    runs = old.get("runs", {}) if isinstance(old.get("runs"), dict) else {}
    for p in plans:
        runs[p.name] = {"spec": p.canonical, "model": p.model.to_json(), "source": p.source, "grid": p.grid,
                        "args": list(p.args)}
    commands = [*old.get("commands", []), {"argv": list(argv), "time": time.strftime("%Y-%m-%d %H:%M:%S")}]
    write_json(path, {"runs": runs, "commands": commands})
    for p in plans:
        write_spec_file(out, p)


def write_spec_file(out: Path, plan: RunPlan) -> Path:
    """``OUT/specs/NAME.json``: the spec file the run trains (``--model.spec``)."""
    (out / "specs").mkdir(exist_ok=True)
    path = out / "specs" / f"{plan.name}.json"
    write_json(path, {**plan.model.to_json(), "name": plan.name})
    return path


def add_arguments(ap: argparse.ArgumentParser) -> None:
    add_common_arguments(ap, "runs/sweep", "the sweep folder")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                    help="run every value: a training option (lr.lr=0.001,0.003) or a spec hyperparameter (dim=64,128)")
    ap.add_argument("--dry-run", action="store_true", help="check and list the runs, run nothing")


def add_common_arguments(ap: argparse.ArgumentParser, out: str, what: str) -> None:
    """The options sweep and search share: specs, training options, budget, folder, GPUs, script, output."""
    ap.allow_abbrev = False   # --budget.e is not --budget.epochs: unknown options pass through to train_ffcv.py
    ap.epilog = (f"{ap.epilog}\n\n" if ap.epilog else "") + ("Training options: -C FILE and --section.key=value, as "
                                                             "train_ffcv.py takes them (python train_ffcv.py --help).")
    ap.add_argument("specs", nargs="+", help="spec strings and templates (quote them), .json files, folders of them")
    ap.add_argument("-C", "--config-file", dest="configs", action="append", default=[], metavar="FILE",
                    help="train_ffcv.py config file (YAML), several in order")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a spec hyperparameter for every spec (e.g. --set dim=64)")
    ap.add_argument("--budget.epochs", dest="budget_epochs", type=int, default=None, metavar="N",
                    help="train every run N epochs (sets --training.epochs)")
    ap.add_argument("--budget.minutes", dest="budget_minutes", type=float, default=None, metavar="M",
                    help="train every run M minutes of training time, the lr schedule laid over them")
    ap.add_argument("--out", default=out, help=f"{what} (default: {out})")
    ap.add_argument("--gpus", default="auto", help="auto (every visible GPU, else the CPU), cpu, or ids such as 0,1")
    ap.add_argument("--script", default=str(REPO / "train_ffcv.py"), help="the training script (train_ffcv.py)")
    ap.add_argument("--quiet", action="store_true", help="no per-epoch lines from the runs (they stay in train.log)")


def parse_args(ap: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """The sweep's own options; ``passed``: the training options passed through (``-C FILE``,
    ``--section.key=value``); ``argv``: the command line, for the manifest."""
    args, rest = ap.parse_known_args(list(argv))
    passed: list[str] = []
    for c in args.configs:
        passed += ["-C", c]
    for a in rest:
        key = a[2:].partition("=")[0]
        if not (a.startswith("--") and "=" in a and "." in key):
            raise SweepError(f"unexpected argument {a!r}: training options are passed as --section.key=value "
                             f"(with '='), spec strings quoted")
        if key in OWNED and key != "training.epochs":
            raise SweepError(f"--{key}: the sweep sets it for every run itself")
        passed.append(a)
    if args.budget_epochs is not None and args.budget_minutes is not None:
        raise SweepError("give --budget.epochs or --budget.minutes, not both")
    if args.budget_epochs is not None and any(a.startswith("--training.epochs=") for a in passed):
        raise SweepError("give --budget.epochs or --training.epochs, not both (with --budget.minutes, "
                         "--training.epochs is the length of the schedule laid over the time)")
    if args.budget_epochs is not None and args.budget_epochs < 1:
        raise SweepError(f"--budget.epochs={args.budget_epochs}: expected an integer >= 1")
    if args.budget_minutes is not None and not 0 < args.budget_minutes < 1e6:
        raise SweepError(f"--budget.minutes={args.budget_minutes:g}: expected minutes > 0")
    args.passed, args.argv = passed, list(argv)
    return args


def budget_args(args: argparse.Namespace) -> list[str]:
    """The training options of ``--budget.epochs`` / ``--budget.minutes``."""
    return ([f"--training.epochs={args.budget_epochs}"] if args.budget_epochs is not None else
            [f"--budget.minutes={args.budget_minutes:g}"] if args.budget_minutes is not None else [])


def run(args: argparse.Namespace) -> int:
    """The ``sweep`` command; exit status 0 (all runs done), 1 (a run failed), 2 (refused), 130 (interrupted)."""
    hparams = dict(parse_override(s) for s in args.set)
    grid = grid_points(args.grid)
    budget = budget_args(args)
    _, errors = collect_specs(args.specs, hparams, check=False)   # parse errors at once, before importing torch
    if errors:
        raise SweepError(*errors)
    if not Path(args.script).is_file():
        raise SweepError(f"training script {args.script} not found; run from the repository or pass --script")
    plans = plan_runs(args.specs, hparams, grid, [*args.passed, *budget])
    slots = visible_gpus(args.gpus)
    out = Path(args.out)
    where = f"{len(slots)} GPU(s) at once" if slots != [None] else "one at a time on the CPU"
    print(f"sweep {out}: {len(plans)} run(s), {where}")
    if args.dry_run:
        for i, p in enumerate(plans, 1):
            state, epochs = run_state(out / p.name)
            print(f"  {i}. {p.name} [{state}{f', {epochs} epochs' if epochs else ''}]: {p.canonical}"
                  + (f"  ({', '.join(f'{k}={v}' for k, v in p.grid.items())})" if p.grid else ""))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    lock = _lock(out)
    t0 = time.perf_counter()
    try:
        write_manifest(out, plans, args.argv)
        finished, failed = run_sweep(plans, out, Path(args.script), slots, echo=not args.quiet)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command again to continue (finished runs are skipped, the "
              f"interrupted one resumes from its last epoch)", file=sys.stderr)
        return 130
    finally:
        lock.close()
    print(f"sweep {out}: {len(finished)} run(s) trained, {len(plans) - len(finished) - len(failed)} already done, "
          f"{len(failed)} failed, {time.perf_counter() - t0:.0f} s")
    names = [p.name for p in plans if (out / p.name / "metrics.jsonl").is_file()]
    if names:
        run_command("compare", [str(out / n) for n in names] + ["--out", str(out)])
    return 1 if failed else 0


main = command_main("sweep")
