"""Train an sdpnet spec on FFCV data with the SdP-Net recipe, on one CPU, one GPU or many machines.

    python train_ffcv.py --spec specs/xl.json -C configs/imagenet.yaml
    python train_ffcv.py --spec "P4(d=32)-[DWC3+MLP,ENC]x2-MLP" -C configs/fashion_mnist.yaml --training.epochs=2
    torchrun --nproc_per_node=8 train_ffcv.py --spec specs/xl.json -C configs/imagenet.yaml
    torchrun --standalone --nproc_per_node=8 --max-restarts=3 train_ffcv.py ...   (a restart resumes by itself)

Recipe (seed 000/001): AdamW, lr = 0.001 x global batch / 512, weight decay 0.05 (none on
norms, biases, tokens, position embeddings), 5 linear warm-up epochs then cosine annealing
with warm restarts stepped per iteration; RandomResizedCrop + flip in FFCV's JIT pipeline;
RandAugment, random erasing, MixUp/CutMix (per batch) and label smoothing on the loaded
batch; EMA of the weights evaluated beside the model; progressive resolution.
Everything a run produces lands in ``--logging.folder``: config.json, spec.json,
metrics.jsonl, checkpoint.pt, results.json and curves.png (docs/training.md).

Three phases, in sdpnet/train/: the options are parsed and checked (each option is spelt once,
in the dataclasses of options.py); :func:`prepare` (prepare.py) checks everything that needs the
data files, the model or the run folder; only then :func:`train` (loop.py) loads, writes and
trains. Any refusal before :func:`train` is one line naming the key, exit status 2, and nothing
written.
"""
from __future__ import annotations

import sys

from sdpnet.data.loaders import LoaderError
from sdpnet.files import os_error_text
from sdpnet.plugins import load_plugins, split_imports
from sdpnet.train.config import parse_options
from sdpnet.train.dist import cleanup
from sdpnet.train.errors import RunError, UsageError
from sdpnet.train.loop import train
from sdpnet.train.options import Options, expand_spec
from sdpnet.train.prepare import load_recorded_plugins, prepare

PROG = "train_ffcv.py"


def cli(argv: list[str]) -> int:
    """Parse, check, train. Exit status 2: refused before any work; 1: the run failed (message says why)."""
    try:
        names, argv = split_imports(argv)
        plugins = load_plugins(names)   # before the options: a spec may name a plugin's block
    except ValueError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    opts = parse_options(Options, expand_spec(argv), description=__doc__.split("\n")[0], prog=PROG)
    try:
        try:
            recorded = load_recorded_plugins(opts)   # a resumed run loads what it was trained with
            job = prepare(opts)
            job.record["plugins"] = plugins + [p for p in recorded if p not in plugins]   # evaluate/... reload them
        except UsageError as e:
            print(f"{PROG}: error: {e}", file=sys.stderr)
            return 2
        return train(job)
    except (RunError, LoaderError) as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"{PROG}: error: cannot write {e.filename or 'a run file'}: {os_error_text(e)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; continue from the last saved epoch with --training.resume=1", file=sys.stderr)
        return 130
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
