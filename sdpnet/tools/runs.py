"""A trained model and how it sees images, opened from a run folder, its ``checkpoint.pt`` or a ``.safetensors``
export: what ``python -m sdpnet evaluate / predict / export / attention`` start from.

A run folder (``train_ffcv.py --logging.folder``) gives the spec (``spec.json``), the config (``config.json``:
validation resolution, centre-crop ratio, channels_last, batch size, data paths, subset) and the weights
(``checkpoint.pt``: the model and its EMA). The class names and the validation normalisation come from the
run's ``data.json`` when it has one, else from the sidecar of the validation ``.beton`` named in its config.
A ``.safetensors`` file written by ``export`` carries all of that in its metadata (:mod:`sdpnet.models.weights`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdpnet.data.record import DATA_FILE, data_record
from sdpnet.models.builder import build
from sdpnet.models.weights import WeightsError, read_weights, state_dict_from
from sdpnet.plugins import load_plugins
from sdpnet.spec import ModelSpec, SpecError
from sdpnet.tools.cli import UsageError

__all__ = ["Trained", "open_trained", "pick_device", "add_source_args"]


@dataclass
class Trained:
    """A model in eval mode on the CPU, with what is needed to feed it and to name its outputs.

    ``preprocess``: ``res``, ``crop_ratio``, ``mean``/``std`` (0-255, per channel), ``max_resolution`` (the
    writer's downscale of the longer side, None for none) and ``channels_last``, as the run validated.
    ``config``: the run's config.json (None for a weights file); ``val``: the validation loader's settings
    (``val_path``, ``val_subset``, ``batch_size``, ``num_workers``, ``os_cache``, ``amp``).
    """

    model: nn.Module
    spec: dict[str, Any]
    classes: list[str] | None
    preprocess: dict[str, Any]
    weights: str
    source: dict[str, Any]
    run: Path | None = None
    config: dict[str, Any] | None = None
    val: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(getattr(self.model, "num_classes", 0))

    def class_name(self, i: int) -> str:
        """The name of class ``i`` (its index as text when the data had no names)."""
        return self.classes[i] if self.classes and 0 <= i < len(self.classes) else str(i)

    def metadata(self) -> dict[str, Any]:
        """What an export stores beside the weights (:func:`sdpnet.models.weights.save_weights`)."""
        return {"spec": self.spec, "classes": self.classes, "preprocess": self.preprocess,
                "source": {**self.source, "weights": self.weights}}


def pick_device(request: str) -> torch.device:
    """``auto`` (CUDA when torch sees a GPU), ``cpu`` or ``cuda``; UsageError when CUDA is asked for but absent."""
    if request not in ("auto", "cpu", "cuda"):
        raise UsageError(f"--device={request}: use auto, cpu or cuda")
    if request == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device=cuda but torch sees no CUDA device; use --device=cpu or auto")
    return torch.device("cuda" if request == "cuda" or (request == "auto" and torch.cuda.is_available()) else "cpu")


def add_source_args(parser: Any, device: bool = True) -> None:
    """The arguments every after-training subcommand shares: RUN, --weights and (``device``) --device."""
    parser.add_argument("run", metavar="RUN", help="a run folder of train_ffcv.py, its checkpoint.pt, or a "
                                                   ".safetensors file written by `export`")
    parser.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                        help="which weights of a checkpoint: the EMA or the raw model (auto: the EMA when the "
                             "run kept one)")
    if device:
        parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                            help="auto: CUDA when available")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UsageError(f"'{path.parent}' has no {path.name} ({what}); is it a run folder of train_ffcv.py?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"'{path}' is not valid JSON ({e}); the run folder is damaged") from None


def _build(spec_record: dict[str, Any], where: str) -> nn.Module:
    obj = {k: v for k, v in spec_record.items() if k != "canonical"}
    try:
        return build(ModelSpec.from_json(obj, source=where))
    except SpecError as e:
        raise UsageError(f"{where}: its spec does not build ({e})") from None


def _data_record(run: Path, config: dict[str, Any]) -> dict[str, Any]:
    """Class names, normalisation and writer downscale of a run: data.json, else its .beton files' sidecars."""
    rec = run / DATA_FILE
    if rec.is_file():
        return _read_json(rec, "class names and normalisation")
    paths = config.get("data", {})
    try:
        return data_record(paths.get("train_path"), paths.get("val_path"))
    except (FileNotFoundError, ValueError, TypeError):
        raise UsageError(f"'{run}' has no {DATA_FILE} and its data '{paths.get('val_path')}' (or its sidecar) is "
                       f"gone: the normalisation it was validated with is unknown") from None


def _open_run(run: Path, ckpt: Path, weights: str) -> Trained:
    config = _read_json(run / "config.json", "the run's config")
    spec = _read_json(run / "spec.json", "the run's spec")
    data = _data_record(run, config)
    try:
        load_plugins(config.get("plugins", []), env=False, entry_points=False)
    except ValueError as e:
        raise UsageError(f"{e} (the run {run} was trained with it; recorded in its config.json)") from None
    model = _build(spec, str(run / "spec.json"))
    try:
        state, meta = state_dict_from(ckpt, weights)
    except (WeightsError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    model.load_state_dict(state, strict=True)
    v, t, d = config.get("validation", {}), config.get("training", {}), config.get("data", {})
    preprocess = {"res": int(v.get("res", 224)), "crop_ratio": float(v.get("crop_ratio", 224 / 256)),
                  "mean": [float(x) for x in data["mean"]], "std": [float(x) for x in data["std"]],
                  "max_resolution": data.get("max_resolution"), "channels_last": bool(t.get("channels_last", True))}
    val = {"val_path": d.get("val_path"), "val_subset": int(d.get("val_subset") or 0),
           "batch_size": int(v.get("batch_size", 256)), "num_workers": int(d.get("num_workers", 2)),
           "os_cache": bool(d.get("os_cache", True)), "amp": t.get("amp", "auto"),
           "flip": bool(v.get("flip", False))}
    source = {**meta["source"], "run": str(run), "spec": spec.get("canonical", spec.get("arch"))}
    return Trained(model.eval(), spec, data.get("classes"), preprocess, meta["source"]["weights"], source, run,
                   config, val)


def _open_file(path: Path) -> Trained:
    try:
        state, meta = read_weights(path)
    except WeightsError as e:
        raise UsageError(str(e)) from None
    if not meta.get("spec"):
        raise UsageError(f"'{path}' has no 'sdpnet.spec' metadata: it was not written by `python -m sdpnet export`; "
                       f"load it with sdpnet.build(SPEC, pretrained='{path}')")
    model = _build(meta["spec"], f"'{path}' (metadata sdpnet.spec)")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise UsageError(f"'{path}': the weights do not fit the spec in its metadata ({str(e)[:300]})") from None
    pre = meta.get("preprocess") or {}
    need = [k for k in ("res", "crop_ratio", "mean", "std") if k not in pre]
    if need:
        raise UsageError(f"'{path}': metadata 'sdpnet.preprocess' lacks {', '.join(need)}; export the run again")
    src = meta.get("source") or {}
    return Trained(model.eval(), meta["spec"], meta.get("classes"), {"channels_last": True, "max_resolution": None,
                                                                   **pre},
                   src.get("weights", "model"), {**src, "file": str(path)})


def open_trained(path: str | Path, weights: str = "auto") -> Trained:
    """The trained model at ``path`` (a run folder, a checkpoint.pt inside one, or a .safetensors export)."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"'{path}' does not exist; give a run folder of train_ffcv.py, its checkpoint.pt or a "
                       f".safetensors file written by `python -m sdpnet export`")
    if p.is_dir():
        if not (p / "checkpoint.pt").is_file():
            raise UsageError(f"'{path}' has no checkpoint.pt; is it a run folder of train_ffcv.py (its "
                           f"--logging.folder)?")
        return _open_run(p, p / "checkpoint.pt", weights)
    if p.suffix == ".safetensors":
        trained = _open_file(p)
        if weights not in ("auto", trained.weights):
            raise UsageError(f"--weights={weights}: '{path}' holds the {trained.weights} weights only; leave --weights "
                           f"out")
        return trained
    if p.suffix == ".pt":
        return _open_run(p.parent, p, weights)
    raise UsageError(f"'{path}' is neither a run folder, a .pt checkpoint nor a .safetensors file")
