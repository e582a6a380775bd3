"""The validation pass run after every epoch (and by ``python -m sdpnet evaluate``): loss, top-1/5 and,
on request, the confusion matrix and the forward time of each model."""
from __future__ import annotations

import time
from typing import Any

import torch

from sdpnet.train.metrics import Meter, topk_correct


@torch.no_grad()
def evaluate(models: dict[str, torch.nn.Module], loader, *, amp: bool,
             confusion: int = 0, flip: bool = False) -> dict[str, Any]:
    """Loss, top-1 and top-5 (fractions) of each model on the whole validation set (all ranks).

    ``flip``: test-time augmentation, the logits are the mean of the image's and its mirror image's.

    Keys: ``val_loss``, ``top1``, ``top5`` for the model named ``model``, ``<name>_val_loss``... for the others.
    ``confusion=K`` (the class count) adds ``[<name>_]confusion``, a K x K int64 tensor (rows: true class,
    columns: predicted), and ``[<name>_]seconds``, the time spent in that model's forward passes (synchronised).
    """
    dev = next(next(iter(models.values())).parameters()).device
    meters = {name: Meter(("loss", "top1", "top5"), dev) for name in models}
    cms = {name: torch.zeros(confusion * confusion, dtype=torch.int64, device=dev) for name in models} \
        if confusion else {}
    seconds = dict.fromkeys(models, 0.0)
    for m in models.values():
        m.eval()
    for x, y in loader:
        for name, m in models.items():
            if confusion:
                _sync(dev)
                t0 = time.perf_counter()
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = m(x).float()
                if flip:
                    logits = (logits + m(x.flip(-1)).float()) / 2
            if confusion:
                _sync(dev)
                seconds[name] += time.perf_counter() - t0
                cms[name] += torch.bincount(y * confusion + logits.argmax(-1), minlength=confusion * confusion)
            top1, top5 = topk_correct(logits, y, (1, 5))
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            meters[name].add(x.shape[0], loss=loss, top1=top1, top5=top5)
    out: dict[str, Any] = {}
    for name, meter in meters.items():
        r = meter.read()
        prefix = "" if name == "model" else f"{name}_"
        out |= {f"{prefix}val_loss": r["loss"], f"{prefix}top1": r["top1"], f"{prefix}top5": r["top5"]}
        if confusion:
            out |= {f"{prefix}confusion": cms[name].view(confusion, confusion).cpu(), f"{prefix}seconds":
                    seconds[name], f"{prefix}count": int(r["count"])}
    return out


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
