"""Fine-tuning pieces for ``train_ffcv.py``: start from trained weights, layer-wise lr decay, a frozen stem.

- :func:`init_from` (``--model.init_from=RUN_OR_FILE``) loads a run folder's checkpoint (its EMA when it kept
  one), a ``checkpoint.pt`` or a ``.safetensors`` export into a freshly built model by name: a classifier for
  another class count (or for other class names, when both are known) stays new, position tables are
  resampled to the new resolution, and every tensor not loaded as it was is reported by name
  (:class:`sdpnet.models.weights.LoadReport`).
- :func:`layer_id` / :func:`lr_scales` (``--lr.layer_decay=d``), timm's layer-wise lr decay: the stem and the
  class/register tokens are layer 0, body block ``i`` is layer ``i + 1``, the pool and head the last layer
  ``L + 1``; layer ``n`` learns at ``d ** (L + 1 - n)`` times the lr (the head at the full lr).
- :func:`freeze_stem` (``--model.freeze_stem=1``): the stem's parameters stop learning (its BatchNorm
  statistics, if any, still follow the new data in training mode).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from torch import nn

from sdpnet.data.record import DATA_FILE
from sdpnet.models.weights import LoadReport, WeightsError, adapt_state_dict, classifier_prefix, state_dict_from

__all__ = ["init_from", "layer_id", "lr_scales", "freeze_stem"]


def init_from(model: nn.Module, source: str | Path, classes: Sequence[str] | None = None) -> LoadReport:
    """Load the weights at ``source`` into ``model`` (see the module notes); WeightsError when none fits.

    ``classes``: the new data's class names. When the weights' own class names are known (a run's
    ``data.json``, an export's metadata) and differ, the classifier stays new even if the count is the same.
    """
    state, meta = state_dict_from(source)
    old = _source_classes(Path(source), meta)
    prefix = classifier_prefix(model)
    other = classes is not None and old is not None and list(old) != list(classes) and bool(prefix)
    if other:
        state = {k: v for k, v in state.items() if not k.startswith(prefix)}
    fitted, report = adapt_state_dict(model, state)
    if other:
        report.notes.append(f"classifier {prefix.rstrip('.')} left new: the weights were trained on other classes "
                            f"({_show(old)}) than this data's ({_show(classes)})")
    if not report.loaded:
        raise WeightsError(f"no tensor of '{source}' fits this model (by name and shape): it was trained with "
                           f"another spec")
    model.load_state_dict(fitted, strict=True)
    return report


def _show(names: Sequence[str]) -> str:
    return ", ".join(list(names)[:4]) + (", ..." if len(names) > 4 else "")


def _source_classes(source: Path, meta: dict) -> list[str] | None:
    """The class names the weights were trained on, when they are known."""
    if meta.get("classes"):
        return list(meta["classes"])
    run = source if source.is_dir() else source.parent
    rec = run / DATA_FILE
    if source.suffix != ".safetensors" and rec.is_file():
        try:
            return list(json.loads(rec.read_text()).get("classes") or []) or None
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
    return None


def _num_blocks(model: nn.Module) -> int:
    body = getattr(model, "body", None)
    return len(body) if body is not None else 0


def layer_id(name: str, num_blocks: int) -> int:
    """The layer of parameter ``name`` in a SpecNet with ``num_blocks`` body blocks (module notes)."""
    root = name.split(".", 1)[0]
    if root in ("stem", "cls_token", "reg_token"):
        return 0
    if root == "body":
        return int(name.split(".", 2)[1]) + 1
    return num_blocks + 1


def lr_scales(model: nn.Module, decay: float) -> Callable[[str], float]:
    """Parameter name -> lr multiplier ``decay ** (L + 1 - layer)``; all 1.0 for ``decay == 1``."""
    if not 0 < decay <= 1:
        raise ValueError(f"layer_decay={decay}: give a value in (0, 1] (1: off; timm's fine-tuning uses 0.65-0.75)")
    top = _num_blocks(model) + 1
    return lambda name: decay ** (top - layer_id(name, top - 1))


def freeze_stem(model: nn.Module) -> int:
    """Stop the stem's parameters from learning; returns how many parameters (elements) were frozen."""
    stem = getattr(model, "stem", None)
    if stem is None:
        raise ValueError("this model has no stem to freeze")
    n = 0
    for p in stem.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n
