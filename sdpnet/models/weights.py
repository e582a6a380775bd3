"""Weights people can share: safetensors files that carry their spec and class names, and loading any state dict
into a model of a related spec (another class count, another resolution).

A file written by :func:`save_weights` (``python -m sdpnet export RUN --format safetensors``) holds the tensors
of ``model.state_dict()`` and, in the safetensors metadata (string -> string, JSON values):

========================  ==========================================================================
``sdpnet.spec``           the ModelSpec as JSON (``arch`` canonical string and every hyperparameter)
``sdpnet.classes``        the class names, index -> name (null when the data had none)
``sdpnet.preprocess``     the validation pipeline: ``res``, ``crop_ratio``, ``mean``/``std`` (0-255),
                          ``max_resolution`` (the writer's downscale, or null), ``channels_last``
``sdpnet.source``         where the weights come from: run folder, epoch, ``weights`` (ema/model), top-1
========================  ==========================================================================

Loading never unpickles anything: safetensors files are read with ``safetensors``, checkpoints with
``torch.load(weights_only=True)`` (:func:`load_checkpoint`: training writes them, models and tools read them).

:func:`adapt_state_dict` maps a state dict onto a model by parameter name. A tensor whose shape differs is
either a position table (a 4-d ``(1, C, h, w)`` tensor that its module lists in ``no_weight_decay_params``),
resampled bicubically to the model's grid, as the block itself resamples it at another resolution, or a tensor
its module resamples itself (a ``fit_state(local_name, tensor)`` method: ``TFM``'s relative position tables), or
left at the model's initialisation and reported by name (a classifier for another class count, for instance).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ["WeightsError", "CheckpointError", "LoadReport", "save_weights", "read_weights", "read_metadata",
           "adapt_state_dict", "load_into", "load_pretrained", "load_checkpoint", "timm_pretrained_file",
           "classifier_prefix", "state_dict_from"]

META_KEYS = ("spec", "classes", "preprocess", "source")


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read back; the message names the file and why."""


@dataclass
class LoadReport:
    """What :func:`adapt_state_dict` did, by parameter name."""

    loaded: list[str] = field(default_factory=list)
    resampled: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)      # in the model, not in the file
    unexpected: list[str] = field(default_factory=list)   # in the file, not in the model
    classifier: str = ""                                  # name prefix of the model's final layer
    notes: list[str] = field(default_factory=list)        # why something was left out on purpose

    def not_loaded(self, outside_classifier: bool = False) -> list[str]:
        """Model tensors left at their initialisation (optionally only those outside the classifier)."""
        names = [n for n, _, _ in self.mismatched] + self.missing
        if outside_classifier and self.classifier:
            names = [n for n in names if not n.startswith(self.classifier)]
        return names

    def lines(self) -> list[str]:
        """The report as lines for a person: counts, then every tensor not loaded as it was, by name."""
        out = [f"loaded {len(self.loaded)} tensors"
               + (f" ({len(self.resampled)} position tables resampled)" if self.resampled else "")]
        out += [f"  resampled {n}: {tuple(a)} -> {tuple(b)}" for n, a, b in self.resampled]
        for n, a, b in self.mismatched:
            what = " (the classifier: new layer for the new class count)" if self.classifier and \
                n.startswith(self.classifier) else ""
            out.append(f"  not loaded {n}: file {tuple(a)}, model {tuple(b)}, kept the model's init{what}")
        out += [f"  not in the file {n}: kept the model's init" for n in self.missing]
        out += [f"  not in the model {n}: ignored" for n in self.unexpected]
        return out + [f"  {note}" for note in self.notes]


def classifier_prefix(model: nn.Module) -> str:
    """The state-dict name prefix of the model's final classifier layer (``head.0.fc.``), or ``""``."""
    get = getattr(model, "get_classifier", None)
    fc = get() if callable(get) else None
    if not isinstance(fc, nn.Module):
        return ""
    for name, m in model.named_modules():
        if m is fc and name:
            return name + "."
    return ""


def _position_tables(model: nn.Module) -> set[str]:
    """State-dict names of the tables modules declare as positions (``no_weight_decay_params``), 4-d only."""
    out = set()
    for prefix, m in model.named_modules():
        for p in getattr(m, "no_weight_decay_params", ()):
            t = getattr(m, p, None)
            if isinstance(t, torch.Tensor) and t.ndim == 4:
                out.add(f"{prefix}.{p}" if prefix else p)
    return out


def _fit_by_owner(model: nn.Module, name: str, src: torch.Tensor) -> torch.Tensor | None:
    """``src`` resampled by the module holding ``name`` (its ``fit_state(local_name, tensor)``: a relative position
    table of another grid), or None."""
    owner, _, local = name.rpartition(".")
    fit = getattr(model.get_submodule(owner), "fit_state", None)
    return fit(local, src) if fit is not None else None


def adapt_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                                                   LoadReport]:
    """``state`` fitted to ``model``: a full state dict for ``model.load_state_dict`` and what was done.

    Same name and shape: taken. A position table with another grid: resampled (bicubic). Anything else that
    differs, or is missing from ``state``: the model's own tensor, reported. Names only in ``state``: reported.
    """
    own = model.state_dict()
    tables = _position_tables(model)
    report = LoadReport(classifier=classifier_prefix(model))
    out: dict[str, torch.Tensor] = {}
    for name, target in own.items():
        src = state.get(name)
        if src is None:
            report.missing.append(name)
            out[name] = target
        elif tuple(src.shape) == tuple(target.shape):
            out[name] = src.to(dtype=target.dtype)
            report.loaded.append(name)
        elif name in tables and src.ndim == 4 and src.shape[:2] == target.shape[:2]:
            out[name] = F.interpolate(src.float(), size=tuple(target.shape[-2:]), mode="bicubic",
                                      align_corners=False).to(target.dtype)
            report.loaded.append(name)
            report.resampled.append((name, tuple(src.shape), tuple(target.shape)))
        elif (fitted := _fit_by_owner(model, name, src)) is not None:
            out[name] = fitted
            report.loaded.append(name)
            report.resampled.append((name, tuple(src.shape), tuple(target.shape)))
        else:
            report.mismatched.append((name, tuple(src.shape), tuple(target.shape)))
            out[name] = target
    report.unexpected = [n for n in state if n not in own]
    return out, report


def load_into(model: nn.Module, state: Mapping[str, torch.Tensor]) -> LoadReport:
    """Load ``state`` into ``model`` through :func:`adapt_state_dict`; returns the report."""
    fitted, report = adapt_state_dict(model, state)
    model.load_state_dict(fitted, strict=True)
    return report


def _contiguous(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies that share no memory (what safetensors requires)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def save_weights(path: str | Path, state: Mapping[str, torch.Tensor], *, spec: Mapping[str, Any],
                 classes: list[str] | None = None, preprocess: Mapping[str, Any] | None = None,
                 source: Mapping[str, Any] | None = None) -> Path:
    """Write ``state`` to ``path`` (safetensors) with the spec, class names, preprocessing and source in its
    metadata; atomically (a temporary file beside it, then a rename)."""
    path = Path(path)
    meta = {"format": "pt", "sdpnet.spec": json.dumps(dict(spec)), "sdpnet.classes": json.dumps(classes),
            "sdpnet.preprocess": json.dumps(dict(preprocess or {})), "sdpnet.source": json.dumps(dict(source or {}))}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(_contiguous(state), str(tmp), metadata=meta)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)   # safetensors creates its file private (0600); a file to share follows umask
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The sdpnet metadata of a safetensors file: ``spec``, ``classes``, ``preprocess``, ``source`` (decoded
    JSON; a key the file lacks is None). Raises WeightsError for a file that is not safetensors."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as e:  # safetensors raises SafetensorError / OSError / ValueError for foreign bytes
        raise WeightsError(f"'{path}' is not a safetensors file ({type(e).__name__}: {str(e)[:200]})") from None
    out: dict[str, Any] = {}
    for key in META_KEYS:
        text = raw.get(f"sdpnet.{key}")
        try:
            out[key] = json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            raise WeightsError(f"'{path}': metadata 'sdpnet.{key}' is not valid JSON; export the run again") from None
    return out


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and sdpnet metadata (:func:`read_metadata`) of a safetensors file, on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weights file '{path}'")
    meta = read_metadata(path)
    try:
        return load_file(str(path), device="cpu"), meta
    except Exception as e:
        raise WeightsError(f"'{path}' cannot be read as safetensors ({type(e).__name__}: {str(e)[:200]})") from None


def state_dict_from(path: str | Path, weights: str = "auto") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A state dict and its metadata from a safetensors file, a ``checkpoint.pt`` or a run folder.

    ``weights``: ``ema``, ``model`` or ``auto`` (the EMA when a checkpoint has one); a safetensors file holds
    one set and ignores it. The metadata of a checkpoint or run is ``{"source": {...}}`` only.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if path.suffix == ".safetensors":
        return read_weights(path)
    try:
        ck = load_checkpoint(path)
    except CheckpointError as e:
        raise WeightsError(str(e)) from None
    if not isinstance(ck.get("model"), dict):
        raise WeightsError(f"'{path}' holds no 'model' state dict; give a checkpoint.pt of train_ffcv.py, a run "
                           f"folder or a .safetensors file")
    if weights not in ("auto", "ema", "model"):
        raise ValueError(f"weights={weights!r}: use ema, model or auto")
    if weights == "ema" and not ck.get("ema"):
        raise WeightsError(f"'{path}' has no EMA weights (the run had ema.enabled=0); use --weights model")
    which = "ema" if weights == "ema" or (weights == "auto" and ck.get("ema")) else "model"
    return ck[which], {"source": {"checkpoint": str(path), "epoch": ck.get("epoch"), "weights": which}}


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`sdpnet.train.checkpoint.save_checkpoint` (tensors and plain types only).

    Raises FileNotFoundError for a missing file and :class:`CheckpointError` for one that is
    truncated, damaged or not a checkpoint.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"no checkpoint '{path}'")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:   # torch raises RuntimeError, UnpicklingError, EOFError, ... for damaged files
        first = str(e).strip().split("\n")[0][:200]
        raise CheckpointError(f"'{path}' cannot be read: it is truncated or damaged ({type(e).__name__}: "
                              f"{first})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"'{path}' holds a {type(state).__name__}, not a checkpoint")
    return state


def load_pretrained(model: nn.Module, path: str | Path, *, strict: bool = True) -> LoadReport:
    """Load the weights in ``path`` (safetensors, checkpoint.pt or run folder) into ``model``.

    ``strict``: every tensor outside the classifier must load (resampled position tables count as loaded),
    else WeightsError naming them; the classifier may differ (another class count keeps the new one).
    """
    state, _ = state_dict_from(path)
    fitted, report = adapt_state_dict(model, state)
    if strict:
        bad = report.not_loaded(outside_classifier=True)
        extra = [n for n in report.unexpected if not (report.classifier and n.startswith(report.classifier))]
        if bad or extra:
            shown = ", ".join((bad + extra)[:6]) + (" ..." if len(bad + extra) > 6 else "")
            raise WeightsError(f"'{path}' does not fit this model: {len(bad)} tensor(s) missing or of another "
                               f"shape and {len(extra)} unknown ({shown}); build the spec the weights were "
                               f"trained with (it is in the file's metadata 'sdpnet.spec')")
    model.load_state_dict(fitted, strict=True)
    return report


def timm_pretrained_file(name: str, kwargs: dict[str, Any]) -> Path:
    """For a timm entry point called with ``pretrained=True``: the weights file named by
    ``pretrained_cfg_overlay=dict(file=...)`` (or a ``pretrained_cfg`` with a ``file``).

    Without a ``num_classes`` keyword, ``kwargs["num_classes"]`` becomes the class count in a safetensors file's
    metadata, so the classifier loads too. No file: ValueError (sdpnet publishes no weights to download).
    """
    cfg: dict[str, Any] = {}
    given = kwargs.get("pretrained_cfg")
    if isinstance(given, dict):
        cfg.update(given)
    elif given is not None and hasattr(given, "to_dict"):
        cfg.update(given.to_dict())
    cfg.update(kwargs.get("pretrained_cfg_overlay") or {})
    file = cfg.get("file")
    if not file:
        raise ValueError(f"{name}: sdpnet publishes no pretrained weights to download; pass your own with "
                         f"pretrained_cfg_overlay=dict(file='model.safetensors') (python -m sdpnet export RUN "
                         f"--format safetensors), or create it with pretrained=False")
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{name}: pretrained file '{file}' not found")
    if "num_classes" not in kwargs and path.suffix == ".safetensors":
        num = (read_metadata(path).get("spec") or {}).get("num_classes")
        if num is not None:
            kwargs["num_classes"] = int(num)
    return path
