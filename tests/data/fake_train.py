"""A stand-in for train_ffcv.py in the search tests (``search --script tests/data/fake_train.py``): the same run folder
(config.json, spec.json, metrics.jsonl after every epoch, a checkpoint, results.json at the end, resume from the
checkpoint with ``--training.resume=1``) in a fraction of a second per epoch and without torch, so the tests of the
search's machinery (pruning, resume, two workers on one database) cost no training. tests/test_search.py also runs
the real train_ffcv.py end to end.

Accuracy after epoch e is ``q * (1 - 0.5 ** e)``, ``q`` of the spec: ``0.9`` for a spec holding ``$FAKE_GOOD``
(default ``ENC``), ``0.5`` for the others, minus a hundredth per character over 30 (so designs differ); an epoch
takes ``$FAKE_EPOCH_S`` seconds (default 0.2). GFLOPs grow with the spec's length.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def write(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    opts = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
    spec = json.loads(Path(opts["model.spec"]).read_text())
    arch = spec["arch"]
    run = Path(opts["logging.folder"])
    run.mkdir(parents=True, exist_ok=True)
    minutes = float(opts.get("budget.minutes", 0))
    epochs = 4 if minutes else int(opts.get("training.epochs", 3))
    delay = float(os.environ.get("FAKE_EPOCH_S", "0.2"))
    quality = (0.9 if os.environ.get("FAKE_GOOD", "ENC") in arch else 0.5) - 0.01 * max(0, len(arch) - 30)
    ckpt = run / "checkpoint.pt"
    rows = json.loads(ckpt.read_text())["rows"] if ckpt.is_file() and opts.get("training.resume") == "1" else []
    if rows:
        print(f"{arch}: resuming after epoch {len(rows)}", flush=True)
    else:
        write(run / "config.json", {"validation": {"res": 28}, "argv": argv})
        write(run / "spec.json", {"canonical": arch})   # no "arch": compare counts no FLOPs (no torch)
    for e in range(len(rows) + 1, epochs + 1):
        time.sleep(delay)
        top1 = quality * (1 - 0.5 ** e)
        row = {"epoch": e, "train_loss": 1 / e, "top1": top1, "ema_top1": top1 - 0.01, "lr": 0.001 / e,
               "res": 28, "img_per_s": 1000.0 / len(arch), "epoch_time": delay}
        if minutes:
            row["progress"] = e / epochs
        rows.append(row)
        write(ckpt, {"rows": rows})
        write(run / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    write(run / "results.json", {"top1": rows[-1]["top1"], "ema_top1": rows[-1]["ema_top1"], "epochs": epochs,
                                 "train_time_s": delay * epochs, "params": 1000 * len(arch), "flops": 1e6 * len(arch),
                                 "img_per_s": rows[-1]["img_per_s"], "spec": arch})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
