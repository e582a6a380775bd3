"""``python -m sdpnet export RUN --format safetensors|onnx|pt2``: the trained model outside the training code.

- ``safetensors``: the weights, with the spec, class names, validation preprocessing and source in the file's
  metadata (:mod:`sdpnet.models.weights`). ``sdpnet.build(spec, pretrained=FILE)`` and
  ``timm.create_model("sdpnet_...", pretrained=True, pretrained_cfg_overlay=dict(file=FILE))`` load it, and
  every subcommand here takes it in place of a run. No pickle.
- ``onnx``: ``torch.onnx.export`` (the ``torch.export``-based exporter), input ``image`` (B, 3, res, res) float32
  normalised as the run validates, output ``logits`` (B, num_classes), the batch dimension dynamic; the same
  metadata as ONNX ``metadata_props``. Checked with onnxruntime against eager PyTorch.
- ``pt2``: ``torch.export`` program (``torch.export.save``; load with ``torch.export.load(FILE).module()``),
  dynamic batch, metadata in the archive's ``extra_files`` as ``sdpnet.json``. Loaded back and checked.

The check runs real images from the run's validation ``.beton`` (or ``--images`` files) through the export and
through eager PyTorch in fp32, at two batch sizes, and prints the largest absolute difference of the logits;
above ``--tol`` (default 1e-4) the export is removed and the exit status is 1.

    python -m sdpnet export runs/fashion_mnist --format safetensors     # -> runs/fashion_mnist/model.safetensors
    python -m sdpnet export runs/fashion_mnist --format onnx --out fmnist.onnx
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from sdpnet.data.loaders import make_val_loader
from sdpnet.files import replace_atomically
from sdpnet.models.weights import save_weights
from sdpnet.tools.cli import UsageError, command_main, output_path
from sdpnet.tools.images import load_image
from sdpnet.tools.runs import add_source_args, open_trained

__all__ = ["export_safetensors", "export_onnx", "export_pt2", "check_images", "main"]

SUFFIX = {"safetensors": ".safetensors", "onnx": ".onnx", "pt2": ".pt2"}


def export_safetensors(trained, path: Path) -> Path:
    """The weights and metadata of ``trained`` (:class:`sdpnet.tools.runs.Trained`) to ``path``."""
    m = trained.metadata()
    return save_weights(path, trained.model.state_dict(), spec=m["spec"], classes=m["classes"],
                        preprocess=m["preprocess"], source=m["source"])


def _batch_dim(max_batch: int = 1 << 16):
    return torch.export.Dim("batch", min=1, max=max_batch)


def export_onnx(trained, path: Path, example: torch.Tensor, opset: int = 18) -> Path:
    """ONNX with a dynamic batch; ``example`` (B >= 2, 3, res, res) fixes the rest of the input shape."""
    model = trained.model.cpu().float().eval()
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=["image"], output_names=["logits"],
                                dynamic_shapes=({0: _batch_dim()},), opset_version=opset, external_data=False,
                                verbose=False)
    proto = program.model_proto   # an onnx.ModelProto, weights inside (what program.save writes)
    for key, value in trained.metadata().items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = f"sdpnet.{key}", json.dumps(value)
    replace_atomically(path, proto.SerializeToString())
    return path


def export_pt2(trained, path: Path, example: torch.Tensor) -> Path:
    """A ``torch.export`` program with a dynamic batch and the metadata as ``extra_files['sdpnet.json']``."""
    model = trained.model.cpu().float().eval()
    program = torch.export.export(model, (example,), dynamic_shapes=({0: _batch_dim()},))
    buf = io.BytesIO()
    torch.export.save(program, buf, extra_files={"sdpnet.json": json.dumps(trained.metadata())})
    replace_atomically(path, buf.getvalue())
    return path


def runner(fmt: str, path: Path) -> Callable[[torch.Tensor], np.ndarray]:
    """A function images -> logits that runs the exported file, loaded back from disk."""
    if fmt == "onnx":
        import onnxruntime as ort   # onnxruntime: optional, only for --format onnx

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda x: session.run(["logits"], {"image": x.numpy()})[0]
    if fmt == "pt2":
        module = torch.export.load(str(path)).module()
        return lambda x: module(x).detach().numpy()
    if fmt == "safetensors":
        model = open_trained(path).model.float().eval()
        return lambda x: model(x).detach().numpy()
    raise ValueError(f"unknown format {fmt!r}")


def check_images(trained, *, val_path: str | None, files: Sequence[str], count: int) -> torch.Tensor:
    """``count`` real images as the run validates them: from ``files`` if given, else from ``val_path``."""
    if files:
        return torch.stack([load_image(f, trained.preprocess)[0] for f in files])
    pre = trained.preprocess
    loader = make_val_loader(val_path, batch_size=count, res=pre["res"], num_workers=1, device="cpu",
                             subset=None, crop_ratio=pre["crop_ratio"], mean=pre["mean"], std=pre["std"],
                             channels_last=False)
    x, _ = next(iter(loader))
    return x.clone().contiguous()


@torch.no_grad()
def check(trained, fmt: str, path: Path, images: torch.Tensor) -> dict[str, Any]:
    """Max |logit difference| between the file (loaded back) and eager PyTorch, at batch len(images) and 1."""
    run = runner(fmt, path)
    model = trained.model.cpu().float().eval()
    diffs, agree = [], 1.0
    for x in (images, images[:1]):
        ref = model(x).numpy()
        got = run(x)
        if got.shape != ref.shape:
            raise RuntimeError(f"the export gives logits of shape {got.shape} for a batch of {len(x)}, eager "
                               f"{ref.shape}")
        diffs.append(float(np.abs(got - ref).max()))
        agree = min(agree, float((got.argmax(-1) == ref.argmax(-1)).mean()))
    return {"max_abs_diff": max(diffs), "batches": [len(images), 1], "images": len(images),
            "top1_agreement": agree}


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_args(p, device=False)   # exports and checks run on the CPU, in fp32
    p.add_argument("--format", choices=tuple(SUFFIX), required=True, help="what to write")
    p.add_argument("--out", help="output file (default: RUN/model.<suffix>, or FILE_STEM.<suffix> beside a file)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--data.val_path", dest="val_path", metavar="BETON",
                   help="images for the check (default: the run's validation .beton)")
    p.add_argument("--images", nargs="+", default=[], metavar="IMAGE",
                   help="image files for the check instead of the validation .beton")
    p.add_argument("--check-images", type=int, default=16, help="images in the check (default 16)")
    p.add_argument("--tol", type=float, default=1e-4, help="largest accepted |logit difference| (default 1e-4)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def run(args: argparse.Namespace) -> int:
    trained = open_trained(args.run, args.weights)
    suffix = SUFFIX[args.format]
    out = output_path(args, trained.run, f"model{suffix}", "{stem}" + suffix)
    if out.suffix != suffix:
        raise UsageError(f"--out={out}: a {args.format} file should end in {suffix}")
    if out.resolve() == Path(args.run).resolve():
        raise UsageError(f"--out={out} is the input file; give another name")
    if out.exists() and not args.force:
        raise UsageError(f"'{out}' exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise UsageError(f"--out={out}: folder '{out.parent}' does not exist")
    val_path = args.val_path or trained.val.get("val_path")
    if not args.images and not (val_path and Path(val_path).is_file()):
        raise UsageError("the check needs real images: give --data.val_path=VAL.beton or --images FILE ..."
                         + (f" (the run's '{val_path}' is gone)" if val_path else ""))
    if args.format == "onnx":
        try:
            import onnx  # noqa: F401  (onnx, onnxruntime: optional, only for --format onnx)
            import onnxruntime  # noqa: F401
        except ImportError as e:
            raise UsageError(f"--format {args.format} needs {e.name}: pip install onnx onnxruntime onnxscript") \
                from None
    images = check_images(trained, val_path=val_path, files=args.images, count=args.check_images)
    if len(images) < 2:
        raise UsageError("the check needs at least 2 images (it runs two batch sizes)")
    if args.format == "safetensors":
        export_safetensors(trained, out)
    elif args.format == "onnx":
        export_onnx(trained, out, images, opset=args.opset)
    else:
        export_pt2(trained, out, images)
    result = check(trained, args.format, out, images)
    ok = result["max_abs_diff"] <= args.tol
    what = {"onnx": "onnxruntime", "pt2": "torch.export.load", "safetensors": "reloaded safetensors"}[args.format]
    print(f"wrote {out} ({out.stat().st_size / 2**20:.2f} MiB, {trained.weights} weights)")
    print(f"check: {what} against eager PyTorch on {result['images']} real images, batches "
          f"{result['batches'][0]} and 1: max |logit diff| = {result['max_abs_diff']:.3g} "
          f"({'<=' if ok else '>'} {args.tol:g}: {'OK' if ok else 'FAILED'}), top-1 agreement "
          f"{100 * result['top1_agreement']:.0f}%")
    if not ok:
        out.unlink(missing_ok=True)
        print(f"export: error: the export differs from PyTorch by more than {args.tol:g}; removed {out}",
              file=sys.stderr)
        return 1
    return 0


main = command_main("export")
