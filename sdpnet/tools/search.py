"""``python -m sdpnet search``: an Optuna study over spec templates, each trial a ``train_ffcv.py`` run folder.

    python -m sdpnet search 'P4(d={32..128:log})+CLS1-[DWC{3,7}+MLP,ENC(r={1.0..4.0})]x{1,2}-LIN' \\
        -C configs/fashion_mnist.yaml --trials 24 --budget.minutes=1.5 --pruner median --out runs/search

The space: templates with ``{a,b}`` alternatives and numeric ranges (``{32..128:log}``, ``{1.0..4.0}``,
``{1..4}``, ``{0.1..0.5:0.1}``: docs/spec.md), spec strings, ``.json`` spec files and folders of them
(several sources: the first parameter chooses one), and ``--space KEY=TEMPLATE`` over a training option or a
spec hyperparameter (``--space lr.lr={0.0003..0.003:log}``, ``--space dim={32,64}``). Every brace is one
parameter of the study, named by its text and column (``{3,7}@24``). ``--sampler tpe`` (default; ``nsga2``
with several objectives), ``random``, ``grid`` (a finite space: every point once) or ``nsga2``.

Every trial is an ordinary ``train_ffcv.py`` run, with the recipe, budget and checks of ``sweep``, in
``OUT/NAME-HASH`` (the same design always lands in the same folder). The search reads the run's
``metrics.jsonl`` as its epochs land and reports the objective (``--objectives``, default ``top1``) to Optuna
after every epoch, the step being the epoch (``--budget.epochs``) or the percent of the time budget spent
(``--budget.minutes``). ``--pruner median|sha|hyperband`` stops a trial that Optuna finds behind (SIGTERM to
the run, ``pruned.json`` in its folder, the trial PRUNED; ``compare`` shows it as pruned). Several objectives
(``--objectives top1,gflops`` or ``top1,img_per_s``: any of top1, ema_top1, best_top1, gflops, params,
img_per_s, train_s, peak_mem_mib) make a multi-objective study (NSGA-II by default; no pruning), whose
Pareto front the final ``compare`` draws from the run folders.

The study lives in ``OUT/study.journal`` (Optuna's journal storage) unless ``--storage URL`` names a
database (``postgresql://user@host/db``): then any number of machines run the same command against one
study, each training in its own ``--out``. A worker that dies mid-trial leaves its trial RUNNING: with a
database the other workers mark it failed once its heartbeat is ``2 x --heartbeat`` seconds old, and
retry its design (Optuna's ``RetryHeartbeatStaleTrialCallback``); with the journal file, a worker on the same
machine finds the dead process at once. Rerunning the same command continues the study to ``--trials``
finished trials (complete, pruned or failed on their own): no finished trial runs again, a trial that
draws a design already trained takes its result, an interrupted one resumes from its checkpoint. A study
made with another space (templates, ``--space``, ``--set``, objectives or the training options that
change a run) is refused in one line naming the difference. The search ends with ``compare``'s
leaderboard and plots over its runs and ``OUT/trials.csv`` (Optuna's table of every trial).
"""
from __future__ import annotations

import argparse
import fcntl
import json
import math
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, Trial, TrialState

from sdpnet.files import read_jsonl, write_json
from sdpnet.spec import SpecError, load_spec, parse_override, spec_sources
from sdpnet.spec.space import Param, Space
from sdpnet.spec.template import Expansion, load_expansion
from sdpnet.tools.cli import command_main, run_command
from sdpnet.tools.compare import read_run
from sdpnet.tools.study import (ALIASES, HOST, OBJECTIVES, PRUNERS, SAMPLERS, WORKER, Heartbeat, SearchError, alive,
                                counted, heartbeat_of, make_pruner, make_sampler, open_storage, redact, retry,
                                signature, space_difference)
from sdpnet.tools.sweep import (OWNED, RunPlan, Slot, SweepError, add_common_arguments, budget_args, check_options,
                                finish_run, parse_args as sweep_parse_args, plan_run, point_options, run_state, slug,
                                start_run, stop_run, visible_gpus, write_spec_file)

__all__ = ["Design", "SearchSpace", "Search", "plan_design", "add_arguments", "parse_args", "run", "main"]

PROG = "python -m sdpnet search"
POLL_S = 0.5          # how often a worker reads its run's metrics.jsonl


# ---- the space ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Design:
    """One trial's design: the spec (an expansion of a template, or a spec file) and its ``--space`` values."""

    label: str
    source: str
    expansion: Expansion | None   # None: a spec file or preset (``source``)
    point: dict[str, str]         # --space values: training options and spec hyperparameters


class SearchSpace:
    """The sources (templates, spec strings, spec files) and the ``--space`` options as one define-by-run space.

    With several sources the parameter ``design`` chooses one, and each template's parameters carry its number
    (``[2]{3,7}@24``) and are asked only when it is chosen.
    """

    def __init__(self, sources: Sequence[str], options: dict[str, str]) -> None:
        self.sources: list[tuple[str, Space | None]] = []   # (source text, its Space; None for a spec file)
        items, errors = spec_sources(sources)
        for src, is_file in items:
            if is_file:
                self.sources.append((src, None))
            else:
                prefix = f"[{len(self.sources) + 1}]" if len(sources) > 1 else ""
                try:
                    self.sources.append((src, Space(src, prefix)))
                except SpecError as e:
                    errors.append(f"template {src!r}: {e}")
        self.options: dict[str, Space] = {}
        for key, template in options.items():
            try:
                self.options[key] = Space(template, key)
            except SpecError as e:
                errors.append(f"--space {key}={template}: {e}")
        if errors:
            raise SearchError(*errors)
        if len({s for s, _ in self.sources}) != len(self.sources):
            raise SearchError("a source is given twice; give each template or spec file once")
        self.choice = Param("design", "choice", tuple(s for s, _ in self.sources)) if len(self.sources) > 1 else None

    @property
    def params(self) -> list[Param]:
        """Every parameter: ``design`` (several sources), the templates', then the options'."""
        out = [self.choice] if self.choice else []
        for _, space in self.sources:
            out += [p if self.choice is None else replace(p, conditional=True) for p in (space.params if space else [])]
        return out + [p for s in self.options.values() for p in s.params]

    def size(self) -> int | None:
        """How many designs (None: a continuous range)."""
        sizes = [space.size() if space else 1 for _, space in self.sources]
        sizes += [s.size() for s in self.options.values()]
        if None in sizes:
            return None
        n = sum(sizes[:len(self.sources)])
        for s in sizes[len(self.sources):]:
            n *= s
        return n

    def grid(self) -> dict[str, list[Any]]:
        """Every parameter's values, for Optuna's GridSampler; SpecError naming a continuous range."""
        grid = {self.choice.name: list(self.choice.choices)} if self.choice else {}
        for _, space in self.sources:
            grid |= space.grid() if space else {}
        for s in self.options.values():
            grid |= s.grid()
        return grid

    def sample(self, suggest: Any) -> Design:
        """The design of one trial: ``suggest(param)`` gives each parameter met (Optuna's ``trial.suggest_*``)."""
        chosen = self.sources[0][0] if self.choice is None else suggest(self.choice)
        src, space = next(s for s in self.sources if s[0] == chosen)
        point = {key: s.sample(suggest).text for key, s in self.options.items()}
        if space is None:
            return Design(Path(src).stem, src, None, point)
        ex = space.sample(suggest)
        return Design(slug(ex.text), f"template {src}" if space.params else src, ex, point)

    def corners(self) -> list[Design]:
        """The designs checked before a search: each template's corners (every choice, ranges at their ends), each
        spec file, with every ``--space`` option at its ends."""
        points = [{}]
        for key, s in self.options.items():
            points = [{**p, key: ex.text} for p in points for ex in s.corners(limit=16)]
        out = []
        for src, space in self.sources:
            for point in points[:16]:
                if space is None:
                    out.append(Design(Path(src).stem, src, None, point))
                else:
                    out += [Design(slug(ex.text), f"template {src}", ex, point) for ex in space.corners()]
        return out


def plan_design(design: Design, base_args: Sequence[str], hparams: dict[str, Any]) -> RunPlan:
    """The run of a design, checked as ``sweep`` checks its runs (options, data, spec, stride): SpecError (with the
    caret in the template) or SweepError."""
    argv, spec_hp, options, altering, facts = point_options(design.point, base_args)
    hp = {**hparams, **spec_hp, **facts}
    if design.expansion is not None:
        model = load_expansion(design.expansion, True, **hp)
    else:
        model = load_spec(design.source, **hp)
    return plan_run(design.label, model, design.source, design.point, argv, options, altering)


def suggest_with(trial: Trial):
    """``suggest(param)`` through ``trial.suggest_*``."""
    def suggest(p: Param) -> Any:
        if p.kind == "choice":
            return trial.suggest_categorical(p.name, list(p.choices))
        if p.kind == "int":
            return trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        return trial.suggest_float(p.name, p.low, p.high, step=p.step, log=p.log)
    return suggest


# ---- trials -------------------------------------------------------------------------------------------------

class Search:
    """The workers of one ``search`` command (one per GPU, or one on the CPU) and what they share."""

    def __init__(self, args: argparse.Namespace, space: SearchSpace, study: optuna.Study, objectives: list[str],
                 base_args: list[str], hparams: dict[str, Any], steps: int, minutes: float | None) -> None:
        self.args, self.space, self.study, self.objectives = args, space, study, objectives
        self.base_args, self.hparams, self.steps, self.minutes = base_args, hparams, steps, minutes
        self.out = Path(args.out)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.heartbeat = heartbeat_of(study._storage) is not None
        self.grid = space.grid() if args.sampler == "grid" else None
        self.trained: list[int] = []
        self.errors: list[str] = []   # tracebacks of workers that failed
        self.deadline = time.monotonic() + 60 * args.timeout if args.timeout is not None else None

    def say(self, line: str) -> None:
        with self.lock:
            print(line, flush=True)

    # ---- the loop of one worker ----

    def worker(self, slot: Slot, seed: int | None) -> None:
        study = optuna.load_study(study_name=self.study.study_name, storage=self.study._storage,
                                  sampler=make_sampler(self.args.sampler, self.args.trials, seed, self.grid),
                                  pruner=make_pruner(self.args.pruner, self.steps))
        while not self.stop.is_set():
            self.fail_stale(study)
            trials = study.get_trials(deepcopy=False)
            done = counted(trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if done >= self.args.trials:
                return
            if self.deadline is not None and time.monotonic() > self.deadline:
                self.say(f"search: --timeout {self.args.timeout:g} min is up; {done} of {self.args.trials} trials "
                         f"finished (the same command continues)")
                return
            if done + running >= self.args.trials:   # the last trials are running elsewhere: wait for them
                self.stop.wait(max(POLL_S, self.args.heartbeat / 2))
                continue
            trial = study.ask()
            trial.set_user_attr("worker", WORKER)
            with Heartbeat(study._storage, trial._trial_id):
                try:
                    self.run_trial(study, trial, slot)
                except Exception as e:   # a bug or a lost storage: fail the trial, stop this command, say why
                    self.crash(study, trial, slot, e)
                    return

    def crash(self, study: optuna.Study, trial: Trial, slot: Slot, error: Exception) -> None:
        """The search itself failed in a trial: end its run, fail the trial (counted: not retried), stop every worker."""
        if slot.proc is not None:
            stop_run(slot.proc)
            finish_run(slot, self.out)
        self.errors.append("".join(traceback.format_exception(error)))
        self.stop.set()
        try:
            trial.set_user_attr("error", f"the search failed: {error!r}")
            study.tell(trial, state=TrialState.FAIL)
        except Exception:   # the storage itself is gone: the trial goes stale and is retried elsewhere
            pass

    def fail_stale(self, study: optuna.Study) -> None:
        """Fail and retry the running trials of dead workers: by heartbeat (a database), or on this machine by their
        process (a journal file, which has no heartbeat)."""
        if self.heartbeat:
            running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
            optuna.storages.fail_stale_trials(study)
            for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
                if t.number in running and not {"error", "interrupted"} & set(t.user_attrs):
                    self.say(f"[trial {t.number}] no heartbeat for {2 * self.args.heartbeat} s: failed, and its "
                             f"design retried")
            return
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            w = t.user_attrs.get("worker")
            if w and w.get("host") == HOST and not alive(w):
                try:
                    if not study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL):
                        continue
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue
                self.say(f"[trial {t.number}] its worker (pid {w['pid']}) is gone: failed, and its design retried")
                retry(study, study._storage.get_trial(t._trial_id))

    def run_trial(self, study: optuna.Study, trial: Trial, slot: Slot) -> None:
        n = trial.number
        try:
            design = self.space.sample(suggest_with(trial))
            plan = plan_design(design, self.base_args, self.hparams)
        except (SpecError, SweepError) as e:   # a design the template allows but that does not build
            message = " ".join(getattr(e, "problems", None) or [str(e).splitlines()[0]])
            first = str(e).split("\n")
            trial.set_user_attr("error", message)
            study.tell(trial, state=TrialState.FAIL)
            self.say(f"[trial {n}] FAILED before training: {first[0]}" + (
                "\n" + "\n".join(first[1:3]) if len(first) > 1 else ""))
            return
        folder = self.out / plan.name
        for key, value in (("run", plan.name), ("spec", plan.canonical), ("folder", str(folder.resolve())),
                           ("point", design.point)):
            trial.set_user_attr(key, value)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".trial.lock", "a+") as lock:
            while True:   # two workers of this machine that draw one design: the second waits for the first
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if self.stop.wait(POLL_S):
                        self.interrupted(study, trial, "interrupted while waiting for another worker's run")
                        return
            self.run_design(study, trial, plan, slot)

    def run_design(self, study: optuna.Study, trial: Trial, plan: RunPlan, slot: Slot) -> None:
        n, folder = trial.number, self.out / plan.name
        state, epochs = run_state(folder)
        pruned = _read_json(folder / "pruned.json")
        single = len(self.objectives) == 1
        if state == "done" or pruned:   # the design was trained (or pruned) before: its result, no training
            rows = _rows(folder)
            if single:
                self.report(trial, rows, set())
            trial.set_user_attr("reused", True)
            if pruned:
                study.tell(trial, state=TrialState.PRUNED)
                self.say(f"[trial {n}] {plan.name}: pruned before (trial {pruned.get('trial')}), not trained again")
                return
            values = self.values(folder)
            study.tell(trial, values if not single else values[0])
            self.say(f"[trial {n}] {plan.name}: trained before, {self.describe(values)}")
            return
        how = f"resume after epoch {epochs}" if state == "partial" else "start"
        retried = study._storage.get_trial(trial._trial_id).system_attrs.get("failed_trial")
        if retried is not None:
            how += f" (retrying trial {retried})"
        params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
        where = f" on GPU {slot.gpu}" if slot.gpu is not None else ""
        self.say(f"[trial {n}] {how} {plan.name}{where}: {plan.canonical}" + (f"  ({params})" if params else ""))
        write_spec_file(self.out, plan)
        start_run(slot, plan, self.out, Path(self.args.script), state == "partial", not self.args.quiet)
        reported, steps, mtime = 0, set(), None
        while True:
            finished = slot.proc.poll() is not None
            stat = (folder / "metrics.jsonl").stat().st_mtime_ns if (folder / "metrics.jsonl").exists() else None
            if stat != mtime or finished:
                mtime = stat
                rows = _rows(folder)
                if single and len(rows) > reported:
                    self.report(trial, rows, steps)
                    reported = len(rows)
                    if not finished and trial.should_prune():
                        self.prune(study, trial, plan, slot, rows)
                        return
            if finished:
                break
            if self.stop.wait(POLL_S):
                stop_run(slot.proc)   # as after Ctrl-C: the run keeps its last saved epoch
                finish_run(slot, self.out)
                self.interrupted(study, trial, "interrupted (Ctrl-C)")
                return
        _, rc, line = finish_run(slot, self.out)
        if rc != 0:
            trial.set_user_attr("error", line)
            study.tell(trial, state=TrialState.FAIL)
            self.say(f"[trial {n}] {line}")
            return
        values = self.values(folder)
        self.trained.append(n)
        if any(math.isnan(v) for v in values):   # Optuna takes no NaN: say which objective the run lacks
            missing = [o for o, v in zip(self.objectives, values) if math.isnan(v)]
            trial.set_user_attr("error", f"the run records no {', '.join(missing)}")
            study.tell(trial, state=TrialState.FAIL)
            self.say(f"[trial {n}] {line}; FAILED: the run records no {', '.join(missing)}")
            return
        study.tell(trial, values if not single else values[0])
        self.say(f"[trial {n}] {line}; {self.describe(values)}")

    def step(self, row: dict[str, Any]) -> int:
        """The step of a metrics row: its epoch, or on a time budget the percent of the budget spent (rounded down)."""
        if self.minutes is not None and row.get("progress") is not None:
            return min(100, int(math.floor(100 * row["progress"] + 1e-9)))
        return int(row["epoch"])

    def report(self, trial: Trial, rows: list[dict[str, Any]], steps: set[int]) -> None:
        """Report each row's objective at its step (``steps``: those reported); on a time budget the steps between
        two rows carry the earlier row's value (what the run had reached by then). A step keeps the first value
        reported at it (Optuna takes one value a step)."""
        metric = self.objectives[0]
        prev: tuple[int, float] | None = None
        for i, row in enumerate(rows):
            step, value = self.step(row), _metric(row, metric, rows[:i + 1])
            if prev is not None and self.minutes is not None:
                for s in range(prev[0] + 1, step):
                    if s not in steps:
                        trial.report(prev[1], s)
                        steps.add(s)
            if step not in steps:
                trial.report(value, step)
                steps.add(step)
            prev = (step, value)

    def prune(self, study: optuna.Study, trial: Trial, plan: RunPlan, slot: Slot, rows: list[dict[str, Any]]) -> None:
        """Stop the run (SIGTERM, then wait), mark its folder pruned and the trial PRUNED."""
        stop_for_prune(slot)
        finish_run(slot, self.out)
        last = rows[-1]
        value = _metric(last, self.objectives[0], rows)
        write_json(self.out / plan.name / "pruned.json", {
            "trial": trial.number, "study": study.study_name, "epoch": last["epoch"], "step": self.step(last),
            self.objectives[0]: value, "pruner": self.args.pruner, "time": time.strftime("%Y-%m-%d %H:%M:%S")})
        study.tell(trial, state=TrialState.PRUNED)
        self.say(f"[trial {trial.number}] pruned {plan.name} after epoch {last['epoch']} (step {self.step(last)}): "
                 f"{self.objectives[0]} {_fmt(self.objectives[0], value)}")

    def interrupted(self, study: optuna.Study, trial: Trial, why: str) -> None:
        """An interrupted trial: FAIL (not counted), its design queued again, so the same command resumes it."""
        trial.set_user_attr("interrupted", why)
        study.tell(trial, state=TrialState.FAIL)
        retry(study, study._storage.get_trial(trial._trial_id), max_retry=None)

    def values(self, folder: Path) -> list[float]:
        row = read_run(folder, count_flops=True)
        out = []
        for o in self.objectives:
            v = row.get(o)
            out.append(float(v) if v is not None and not (isinstance(v, float) and math.isnan(v)) else math.nan)
        return out

    def describe(self, values: Sequence[float]) -> str:
        return ", ".join(f"{o} {_fmt(o, v)}" for o, v in zip(self.objectives, values))


def _metric(row: dict[str, Any], metric: str, rows: list[dict[str, Any]]) -> float:
    """A metrics row's value of an accuracy objective (best_top1: the best of model and EMA so far)."""
    if metric == "best_top1":
        return max(max(r.get("top1") or 0.0, r.get("ema_top1") or 0.0) for r in rows)
    return float(row.get(metric) or 0.0)


def _fmt(objective: str, value: float) -> str:
    if objective in ("top1", "ema_top1", "best_top1"):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}"


def _rows(folder: Path) -> list[dict[str, Any]]:
    try:
        return read_jsonl(folder / "metrics.jsonl")
    except (OSError, ValueError):
        return []


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def stop_for_prune(slot: Slot) -> None:
    """SIGTERM the run (its last saved epoch stays), SIGKILL if it has not ended in 30 s."""
    slot.proc.terminate()
    try:
        slot.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        slot.proc.kill()
        slot.proc.wait()


# ---- the command --------------------------------------------------------------------------------------------

def add_arguments(ap: argparse.ArgumentParser) -> None:
    add_common_arguments(ap, "runs/search", "the search folder: the runs, and the study's journal")
    ap.add_argument("--space", action="append", default=[], metavar="KEY=TEMPLATE",
                    help="search a training option or spec hyperparameter too: lr.lr={0.0003..0.003:log}, dim={32,64}")
    ap.add_argument("--trials", type=int, default=None, metavar="N",
                    help="finished trials the study should have (a grid: default every point)")
    ap.add_argument("--sampler", choices=SAMPLERS, default=None,
                    help="Optuna's sampler (default: tpe; nsga2 with several objectives)")
    ap.add_argument("--pruner", choices=PRUNERS, default="none", help="stop trials that fall behind (default: none)")
    ap.add_argument("--objectives", default="top1", metavar="A,B",
                    help=f"what to optimise, from compare's columns: {', '.join(OBJECTIVES)} (default: top1)")
    ap.add_argument("--timeout", type=float, default=None, metavar="M",
                    help="start no trial after M minutes of this command (the running ones finish)")
    ap.add_argument("--storage", default=None, metavar="URL",
                    help="the study's storage: a database URL (postgresql://user@host/db) shared by machines, or a "
                         "journal file (default: OUT/study.journal)")
    ap.add_argument("--study", default=None, help="the study's name (default: the --out folder's name)")
    ap.add_argument("--seed", type=int, default=None, help="the sampler's seed (a worker per GPU adds its index)")
    ap.add_argument("--heartbeat", type=int, default=30, metavar="S",
                    help="database storage: a worker's heartbeat every S s; a trial silent for 2S is retried")
    ap.add_argument("--dry-run", action="store_true", help="check the space and list its parameters, run nothing")


def parse_args(ap: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    args = sweep_parse_args(ap, argv)
    args.space_opts = {}
    for item in args.space:
        key, sep, template = item.partition("=")
        key = key.strip().removeprefix("--")
        if not sep or not key or not template.strip():
            raise SearchError(f"--space {item!r}: expected KEY=TEMPLATE, as in --space lr.lr={{0.0003..0.003:log}}")
        if key in OWNED:
            raise SearchError(f"--space {key}: the search sets {key} itself; search training options or spec "
                              f"hyperparameters")
        if key in args.space_opts:
            raise SearchError(f"--space {key} is given twice")
        args.space_opts[key] = template.strip()
    objectives = [ALIASES.get(o.strip(), o.strip()) for o in args.objectives.split(",")]
    bad = [o for o in objectives if o not in OBJECTIVES]
    if bad or not objectives or len(set(objectives)) != len(objectives):
        raise SearchError(f"--objectives {args.objectives}: expected distinct names from {', '.join(OBJECTIVES)} "
                          f"(img/s for img_per_s), as in --objectives top1,gflops")
    args.objective_list = objectives
    multi = len(objectives) > 1
    args.sampler = args.sampler or ("nsga2" if multi else "tpe")
    if multi and args.pruner != "none":
        raise SearchError(f"--pruner {args.pruner} with {len(objectives)} objectives: Optuna prunes single-objective "
                          f"studies only; drop --pruner or keep one objective")
    if args.pruner != "none" and objectives[0] not in ("top1", "ema_top1", "best_top1"):
        raise SearchError(f"--pruner {args.pruner} with --objectives {objectives[0]}: a run reports accuracy after "
                          f"every epoch; prune on top1, ema_top1 or best_top1")
    if args.trials is not None and args.trials < 1:
        raise SearchError(f"--trials {args.trials}: expected at least 1")
    if args.trials is None and args.sampler != "grid" and not args.dry_run:
        raise SearchError("--trials N is needed (how many finished trials the study should have)")
    if args.timeout is not None and not args.timeout > 0:
        raise SearchError(f"--timeout {args.timeout:g}: expected minutes > 0")
    if args.heartbeat < 1:
        raise SearchError(f"--heartbeat {args.heartbeat}: expected seconds >= 1")
    return args


def check(space: SearchSpace, base_args: list[str], hparams: dict[str, Any]) -> list[str]:
    """The problems of the corners of the space (see :meth:`SearchSpace.corners`), each once."""
    errors: list[str] = []
    for design in space.corners():
        try:
            plan_design(design, base_args, hparams)
        except SpecError as e:
            where = f"template {design.expansion.template!r}" if design.expansion else design.source
            msg = f"{where}: {e}"
            if msg.split(" in the expansion ")[0] not in {m.split(" in the expansion ")[0] for m in errors}:
                errors.append(msg)
        except SweepError as e:
            errors += [p for p in e.problems if p not in errors]
    return errors


def run(args: argparse.Namespace) -> int:
    """The ``search`` command; exit status 0 (the study has its trials), 1 (a trial failed), 2 (refused), 130."""
    hparams = dict(parse_override(s) for s in args.set)
    space = SearchSpace(args.specs, args.space_opts)   # template errors at once, before any option is read
    if not Path(args.script).is_file():
        raise SearchError(f"training script {args.script} not found; run from the repository or pass --script")
    budget = budget_args(args)
    base_args = [*args.passed, *budget]
    options, altering = check_options(["--model.spec=search", *base_args])
    if args.sampler == "grid":
        try:
            grid = space.grid()
        except SpecError as e:
            raise SearchError(f"--sampler grid: {e}") from None
        size = math.prod(len(v) for v in grid.values())
        args.trials = min(args.trials or size, size)
    errors = check(space, base_args, hparams)
    if errors:
        raise SearchError(*errors)
    out = Path(args.out)
    study_name = args.study or out.resolve().name
    minutes = args.budget_minutes
    steps = 100 if minutes is not None else (args.budget_epochs or options["training"]["epochs"])
    size = space.size()
    print(f"search {out}: study {study_name!r}, {args.trials or '?'} trial(s), sampler {args.sampler}, pruner "
          f"{args.pruner}, objectives {','.join(args.objective_list)}; {len(space.params)} parameter(s), "
          f"{f'{size:,} designs' if size is not None else 'a continuous space'}")
    if args.dry_run:
        for p in space.params:
            print(f"  {p.name}: {p.describe()}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    storage = open_storage(args.storage, out, args.heartbeat)
    directions = [OBJECTIVES[o] for o in args.objective_list]
    sig = signature(args, args.objective_list, options, altering)
    try:
        study = optuna.create_study(study_name=study_name, storage=storage, directions=directions,
                                    load_if_exists=True)
    except Exception as e:
        raise SearchError(f"cannot open study {study_name!r} in {redact(args.storage or str(out / 'study.journal'))}: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    old = study.user_attrs.get("space")
    if old is None:
        study.set_user_attr("space", sig)
    elif (diff := space_difference(old, sig)) is not None:
        where = redact(args.storage) if args.storage else out / "study.journal"
        raise SearchError(f"the study {study_name!r} ({where}) searches another space: {diff}; run its own command to "
                          f"continue it, or give a new --study or --out")
    if [d.name.lower() for d in study.directions] != directions:
        raise SearchError(f"the study {study_name!r} has directions {[d.name.lower() for d in study.directions]}, "
                          f"--objectives asks for {directions}")
    if args.sampler == "grid" and "grid" not in study.user_attrs:
        study.set_user_attr("grid", True)
    write_manifest(out, study_name, args)
    done = counted(study.get_trials(deepcopy=False))
    if done:
        print(f"continuing: {done} of {args.trials} trial(s) finished")
    search = Search(args, space, study, args.objective_list, base_args, hparams, steps, minutes)
    slots = visible_gpus(args.gpus)
    t0 = time.perf_counter()
    workers = [threading.Thread(target=search.worker, args=(Slot(g), None if args.seed is None else args.seed + i),
                                daemon=True) for i, g in enumerate(slots)]
    for w in workers:
        w.start()
    try:
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(timeout=0.2)
    except KeyboardInterrupt:
        search.stop.set()
        for w in workers:
            w.join()
        print(f"{PROG}: interrupted; run the same command again to continue (finished trials are kept, the "
              f"interrupted one resumes from its last epoch)", file=sys.stderr)
        return 130
    if search.errors:
        for e in search.errors:
            print(e, file=sys.stderr, end="")
        print(f"{PROG}: the search failed (above); its trial is marked failed, the others are kept", file=sys.stderr)
        return 1
    trials = study.get_trials(deepcopy=False)
    return finish(study, trials, out, args, len(search.trained), time.perf_counter() - t0)


def finish(study: optuna.Study, trials: list[FrozenTrial], out: Path, args: argparse.Namespace, trained: int,
           wall: float) -> int:
    """The summary: counts, the best trial (or the Pareto front), trials.csv, compare's leaderboard and plots."""
    states = {s: sum(t.state == s for t in trials) for s in TrialState}
    failed = [t for t in trials if t.state == TrialState.FAIL and "error" in t.user_attrs]
    print(f"search {out}: {states[TrialState.COMPLETE]} complete, {states[TrialState.PRUNED]} pruned, "
          f"{len(failed)} failed ({trained} trained by this command in {wall:.0f} s)")
    objectives = args.objective_list
    best = ([study.best_trial] if len(objectives) == 1 else study.best_trials) if states[TrialState.COMPLETE] else []
    for t in best:
        vals = ", ".join(f"{o} {_fmt(o, v)}" for o, v in zip(objectives, t.values))
        print(f"{'best' if len(objectives) == 1 else 'Pareto front'}: trial {t.number} {t.user_attrs.get('run')}: "
              f"{vals}: {t.user_attrs.get('spec')}")
    try:
        df = study.trials_dataframe(attrs=("number", "state", "values", "params", "user_attrs", "duration"))
        df.to_csv(out / "trials.csv", index=False)
    except (ValueError, KeyError):
        pass
    names = list(dict.fromkeys(t.user_attrs["run"] for t in trials if "run" in t.user_attrs))
    names = [n for n in names if (out / n / "metrics.jsonl").is_file()]
    if names:
        run_command("compare", [str(out / n) for n in names] + ["--out", str(out)])
    return 1 if failed else 0


def write_manifest(out: Path, study: str, args: argparse.Namespace) -> None:
    """``OUT/search.json``: the study's name and storage, and each command given in this folder."""
    path = out / "search.json"
    old = _read_json(path) or {}
    commands = [*old.get("commands", []), {"argv": list(args.argv), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                           "host": HOST}]
    write_json(path, {"study": study, "storage": redact(args.storage) if args.storage else "study.journal",
                      "commands": commands})


main = command_main("search")
