"""pytest plugin: run timm's own ``tests/test_models.py``, unchanged, over the ``sdpnet_*`` models only.

Loaded with ``-p timm_suite_plugin`` by ``run_timm_suite.py`` (which puts this folder on ``PYTHONPATH``).
It changes no test: it only decides which models timm's model lists hold, the way timm's
``list_models(...)`` calls at the top of ``test_models.py`` would for models that lived in timm.

- ``timm.list_models`` / ``timm.list_pretrained``, as ``test_models.py`` imports them, list only the models
  matching ``SDPNET_TIMM_MODELS`` (comma-separated fnmatch patterns, default ``sdpnet_*``), filtered by the
  same include/exclude patterns.
- ``pretrained=True`` lists nothing: sdpnet publishes no weights (the pretrained tests do not apply).
- ``module=[...]`` (timm's list of model families that implement ``forward_intermediates``) includes every
  sdpnet model, since every ``SpecNet`` implements it.
- timm's ``NON_STD_FILTERS`` names the "transformer / hybrid models" whose ``forward_features`` is a token
  sequence rather than a feature map. sdpnet names do not follow timm's family names, so for sdpnet models
  that list means what it describes: a model with prefix (class/register) tokens, ``num_prefix_tokens > 0``,
  is non-standard; one without has a (B, C, H, W) feature map and takes the standard tests (so
  ``sdpnet_convmixer_*`` is standard although ``*mixer_*`` is in the list). This applies where a model list
  is built with the whole of NON_STD_FILTERS; patterns other lists share with it (``gemma4_vit*``) match by
  name. The list is read from ``test_models.py`` itself (``ast.literal_eval`` of the assignment), not copied.
- Tests not parametrized over a listed sdpnet model (timm's tests of its own named models) are deselected.
- Tests that do not apply to sdpnet models (:data:`NOT_APPLICABLE`: TorchScript, which sdpnet does not
  support, README "timm") are deselected and reported as ``not applicable`` with the reason. timm's
  pretrained-weight tests are parametrized over ``list_pretrained`` / ``list_models(pretrained=True)``, which
  list nothing, so they hold no sdpnet test; they are reported as not applicable too, by function.

Every result is appended to ``SDPNET_TIMM_REPORT`` (JSON lines: nodeid, outcome, first line of the reason).
"""
from __future__ import annotations

import ast
import fnmatch
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import pytest
import timm
import torch

import sdpnet

sdpnet.register_timm()

_PATTERNS = os.environ.get("SDPNET_TIMM_MODELS", "sdpnet_*").split(",")
_REPORT = os.environ.get("SDPNET_TIMM_REPORT")
_TEST_FILE = Path(os.environ["SDPNET_TIMM_TEST_FILE"])
_original_list_models = timm.list_models


def _constant(path: Path, name: str) -> list[str]:
    """The literal list assigned to ``name`` at the top level of ``path``."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return list(ast.literal_eval(node.value))
    raise RuntimeError(f"{path} has no top-level {name} = [...]; this plugin needs timm's NON_STD_FILTERS")


_NON_STD = set(_constant(_TEST_FILE, "NON_STD_FILTERS"))
_SDPNET = _original_list_models(_PATTERNS)
if not _SDPNET:
    raise RuntimeError(f"no registered timm model matches {_PATTERNS}")
_TOKENS: dict[str, bool] = {}


def _has_prefix_tokens(name: str) -> bool:
    if name not in _TOKENS:
        model = timm.create_model(name, pretrained=False, device="meta")
        _TOKENS[name] = model.num_prefix_tokens > 0
    return _TOKENS[name]


def _strs(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _matches(name: str, patterns: list[str]) -> bool:
    """Whether ``name`` matches ``patterns``; when they hold the whole NON_STD_FILTERS list, its patterns mean
    "has prefix tokens" for sdpnet models (other lists may share a pattern or two with it, by name)."""
    non_std = _NON_STD <= set(patterns)
    by_name = [p for p in patterns if not (non_std and p in _NON_STD)]
    return any(fnmatch.fnmatch(name, p) for p in by_name) or (non_std and _has_prefix_tokens(name))


def list_models(filter: str | Iterable[str] = "", module: str | Iterable[str] = "", pretrained: bool = False,
                exclude_filters: str | Iterable[str] = "", name_matches_cfg: bool = False,
                include_tags: bool | None = None) -> list[str]:
    """timm's ``list_models`` restricted to the sdpnet models (see the module docstring)."""
    if pretrained:
        return []
    names = _original_list_models(_PATTERNS, name_matches_cfg=name_matches_cfg)
    include = [p for p in _strs(filter) if p]
    exclude = [p for p in _strs(exclude_filters) if p]
    if include:
        names = [n for n in names if _matches(n, include)]
    return [n for n in names if not (exclude and _matches(n, exclude))]


def list_pretrained(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """No sdpnet model has pretrained weights."""
    return []


timm.list_models = list_models
timm.list_pretrained = list_pretrained


# timm's tests that do not apply to sdpnet models: test function -> why (README, "timm").
NOT_APPLICABLE = {
    "test_model_forward_torchscript": "torch.jit.script of the model: sdpnet does not support TorchScript",
    "test_model_forward_fx_torchscript": "torch.jit.script of the torch.fx-traced model: sdpnet does not support "
                                         "TorchScript (the traced graph calls sdpnet helpers written for fx, "
                                         "torch.compile and torch.export, not for TorchScript)",
}
_NO_WEIGHTS = "parametrized over timm's pretrained-weight lists: sdpnet publishes no weights"


def _record(nodeid: str, outcome: str, reason: str) -> None:
    if _REPORT:
        with open(_REPORT, "a") as f:
            f.write(json.dumps({"nodeid": nodeid, "outcome": outcome, "reason": reason}) + "\n")


def _over_pretrained(item: pytest.Item) -> bool:
    """Whether the test's parametrize decorators list models by their pretrained weights."""
    decorators = re.split(r"\n\s*def ", inspect.getsource(item.function))[0]
    return "list_pretrained(" in decorators or "pretrained=True" in decorators


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep only the tests parametrized over a listed sdpnet model, less the not-applicable ones (recorded)."""
    keep, drop = [], []
    for item in items:
        params: dict[str, Any] = getattr(getattr(item, "callspec", None), "params", {})
        name = getattr(item, "originalname", item.name)
        if params.get("model_name") in _SDPNET and name not in NOT_APPLICABLE:
            keep.append(item)
            continue
        drop.append(item)
        if params.get("model_name") in _SDPNET:
            _record(item.nodeid, "not applicable", NOT_APPLICABLE[name])
        elif "model_name" in params and not isinstance(params["model_name"], str) and _over_pretrained(item):
            _record(item.nodeid, "not applicable", _NO_WEIGHTS)  # an empty model list (pytest's NOTSET)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Append each test's outcome (call phase, or the setup phase when it failed or skipped) to the report."""
    if not (report.when == "call" or (report.when == "setup" and report.outcome != "passed")):
        return
    reason = ""
    if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
        reason = str(report.longrepr[2])
    elif report.outcome == "failed":
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)
    _record(report.nodeid, report.outcome, reason.strip().splitlines()[0][:300] if reason.strip() else "")


torch.set_num_threads(int(os.environ.get("SDPNET_TIMM_THREADS", "2")))
