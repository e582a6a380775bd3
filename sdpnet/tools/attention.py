"""``python -m sdpnet attention RUN IMAGE...``: what each class token attends to, layer by layer, over the image.

In SdP-Net the class tokens meet the image only through attention: in every ``sequence`` block (``ENC``, and
any attention mixer that runs on the joined sequence ``[class tokens, register tokens, image tokens]``). The maps
come from forward hooks, not from a copy of the forward: every attention layer inside a sequence block that
follows timm's layout (``q_norm`` and ``k_norm`` applied to queries and keys of shape (B, heads, N, head_dim))
gets a hook on those two, or on its position scheme ``pos`` when it has one (whose output are the queries and
keys attention uses, and an additive bias or None), which keeps what the layer really used; the attention weights
are then ``softmax(q k^T / sqrt(head_dim) + bias)`` (the scale ``F.scaled_dot_product_attention`` uses by default)
for the class tokens' queries, over all N tokens of the sequence.

    python -m sdpnet attention runs/fashion_mnist shoe.png --out maps/

Writes, per image, ``<stem>_attention.png``: one row per class token, for each attention layer one column per
head and one for the mean over heads, each the class token's weights on the image tokens drawn over the
(preprocessed) image, with the share of its attention that went to the image rather than to the tokens;
and ``<stem>_attention.npz``: for each layer, the full weights (num_cls, heads, N) over every token.
"""
from __future__ import annotations

import argparse
import io
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from sdpnet.files import replace_atomically, save_figure
from sdpnet.tools.cli import UsageError, command_main, output_path
from sdpnet.tools.images import load_image
from sdpnet.tools.runs import add_source_args, open_trained, pick_device

__all__ = ["AttentionLayer", "attention_layers", "capture_attention", "attention_maps", "draw_maps", "main"]


@dataclass(frozen=True)
class AttentionLayer:
    """An attention layer the class tokens take part in: its name, the body block index and the block's name."""

    name: str           # module name in the model (body.5.attn)
    block: int          # index in model.body
    block_name: str     # the block's name in the spec (ENC)
    module: nn.Module
    grid_stride: int    # input pixels per image token on each side, entering this block


def attention_layers(model: nn.Module) -> list[AttentionLayer]:
    """Every timm-layout attention layer (with ``q_norm`` and ``k_norm``) inside a ``sequence`` body block."""
    body_plans = [layer for layer in model.plan.layers if layer.role == "body"]
    out = []
    for i, (block, lp) in enumerate(zip(model.body, body_plans)):
        if lp.kind != "sequence":
            continue
        stride = model.plan.img_size // lp.grid[0] if lp.grid[0] else 0
        for name, sub in block.named_modules():
            if isinstance(getattr(sub, "q_norm", None), nn.Module) and isinstance(getattr(sub, "k_norm", None),
                                                                                  nn.Module):
                out.append(AttentionLayer(f"body.{i}.{name}" if name else f"body.{i}", i, lp.name, sub, stride))
    return out


@contextmanager
def capture_attention(layers: Sequence[AttentionLayer]) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
    """Hooks on each layer's ``q_norm`` / ``k_norm`` (or on its position scheme ``pos``, whose output are the
    queries and keys attention uses, and its additive bias) while the context is open; yields
    ``{name: {"q": .., "k": .., "bias": .. or None}}`` filled by the forward passes run inside it (the last pass
    wins)."""
    store: dict[str, dict[str, torch.Tensor]] = {layer.name: {} for layer in layers}
    handles = []

    def keep(name: str, key: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            store[name][key] = output.detach()
        return hook

    def keep_pair(name: str):
        def hook(module: nn.Module, inputs: Any, output: tuple[torch.Tensor, torch.Tensor, Any]) -> None:
            q, k, bias = output
            store[name].update(q=q.detach(), k=k.detach(), bias=None if bias is None else bias.detach())
        return hook

    try:
        for layer in layers:
            pos = getattr(layer.module, "pos", None)
            if isinstance(pos, nn.Module):   # a position scheme (ENC's pos=) turns q and k after their norms
                handles.append(pos.register_forward_hook(keep_pair(layer.name)))
                continue
            handles.append(layer.module.q_norm.register_forward_hook(keep(layer.name, "q")))
            handles.append(layer.module.k_norm.register_forward_hook(keep(layer.name, "k")))
        yield store
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def attention_maps(model: nn.Module, x: torch.Tensor) -> tuple[list[AttentionLayer], list[torch.Tensor]]:
    """Run ``model`` on ``x`` (B, C, H, W); for each attention layer the class tokens' attention weights
    (B, num_cls, heads, N) over the N tokens of the sequence, class tokens first, image tokens last (raster
    order). Each row sums to 1."""
    layers = attention_layers(model)
    model.eval()
    with capture_attention(layers) as store:
        model(x)
    maps = []
    for layer in layers:
        q, k = store[layer.name].get("q"), store[layer.name].get("k")
        if q is None or k is None:
            raise RuntimeError(f"{layer.name}: the forward pass did not reach its q_norm/k_norm")
        q = q[:, :, : model.num_cls].float()   # the class tokens' queries
        w = q @ k.float().transpose(-2, -1) * q.shape[-1] ** -0.5   # (B, heads, num_cls, N)
        bias = store[layer.name].get("bias")   # the scheme's additive bias, broadcastable to (B, heads, Nq, N)
        w = (w if bias is None else w + bias[..., : model.num_cls, :].float()).softmax(-1)
        maps.append(w.transpose(1, 2).cpu())
    return layers, maps


def image_grid(layer: AttentionLayer, res: tuple[int, int], num_keys: int, num_tokens: int) -> tuple[int, int]:
    """The image-token grid at a block for an input of ``res`` (H, W); checked against the sequence length."""
    gh, gw = (res[0] // layer.grid_stride, res[1] // layer.grid_stride) if layer.grid_stride else (0, 0)
    if gh * gw != num_keys - num_tokens:
        raise RuntimeError(f"{layer.name}: {num_keys} keys, {num_tokens} tokens, but the grid is {gh}x{gw}")
    return gh, gw


def draw_maps(pixels: np.ndarray, layers: Sequence[AttentionLayer], maps: Sequence[torch.Tensor], num_tokens: int,
              path: Path, title: str, heads: bool = True) -> Path:
    """One PNG: rows = class tokens; per layer, a column per head (if ``heads``) and one for their mean; each cell
    the weights on the image tokens over ``pixels`` (res, res, 3), with the share that went to the image."""
    import matplotlib   # matplotlib: optional, imported only to draw
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = pixels.shape[:2]
    cols = []   # (layer index, head index or None for the mean)
    for li, m in enumerate(maps):
        cols += [(li, h) for h in range(m.shape[1])] if heads and m.shape[1] > 1 else []
        cols.append((li, None))
    rows = maps[0].shape[0] if maps else 0
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.9 * len(cols), 2.1 * rows + 0.6), squeeze=False)
    grey = pixels.mean(-1) if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all() \
        else None
    for c, (li, h) in enumerate(cols):
        layer, m = layers[li], maps[li]    # m: (num_cls, heads, N)
        gh, gw = image_grid(layer, res, m.shape[-1], num_tokens)
        for r in range(rows):
            w = m[r].mean(0) if h is None else m[r, h]
            img_w = w[num_tokens:]
            share = float(img_w.sum())
            ax = axes[r][c]
            ax.imshow(grey if grey is not None else pixels, cmap="gray" if grey is not None else None,
                      extent=(0, res[1], res[0], 0))
            ax.imshow((img_w / img_w.max().clamp(min=1e-12)).view(gh, gw).numpy(), cmap="jet", alpha=0.5,
                      extent=(0, res[1], res[0], 0), interpolation="nearest", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"image {100 * share:.0f}%", fontsize=8)
            if r == 0:
                ax.set_title(f"{layer.block_name} ({layer.name})\n{'mean of heads' if h is None else f'head {h}'}",
                             fontsize=8)
            if c == 0:
                ax.set_ylabel(f"class token {r}", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _save_npz(path: Path, layers: Sequence[AttentionLayer], maps: Sequence[torch.Tensor], num_tokens: int,
              grid: Sequence[tuple[int, int]]) -> None:
    arrays = {f"layer{i}": m.numpy().astype(np.float32) for i, m in enumerate(maps)}
    buf = io.BytesIO()
    np.savez(buf, names=np.array([layer.name for layer in layers]), num_tokens=np.int64(num_tokens),
             grids=np.array(grid, dtype=np.int64).reshape(-1, 2), **arrays)
    replace_atomically(path, buf.getvalue())


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_source_args(p)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (preprocessed as the run validates)")
    p.add_argument("--out", help="output folder (default: RUN/attention, or FILE_STEM-attention beside a file)")
    p.add_argument("--mean-only", action="store_true", help="draw only the mean over heads, not every head")


def run(args: argparse.Namespace) -> int:
    device = pick_device(args.device)
    trained = open_trained(args.run, args.weights)
    if not trained.model.num_cls:
        raise UsageError(f"'{args.run}' has no class tokens (its spec declares no CLS): there is nothing to draw")
    layers = attention_layers(trained.model)
    if not layers:
        raise UsageError(f"'{args.run}': no attention layer over the class tokens (no sequence block such as "
                         f"ENC with q_norm/k_norm) in {trained.source.get('spec')}")
    out = output_path(args, trained.run, "attention", "{stem}-attention")
    out.mkdir(parents=True, exist_ok=True)
    model = trained.model.to(device)
    num_tokens = model.num_cls + model.num_reg
    failed = 0
    for f in args.images:
        try:
            x, pixels = load_image(f, trained.preprocess)
        except ValueError as e:
            print(f"attention: error: {f}: {e}", file=sys.stderr)
            failed += 1
            continue
        x = x[None].to(device)
        layers, maps = attention_maps(model, x)
        maps = [m[0] for m in maps]
        with torch.no_grad():
            p = model(x).float().softmax(-1)[0].cpu()
        top = int(p.argmax())
        stem = Path(f).stem
        grids = [image_grid(layer, pixels.shape[:2], m.shape[-1], num_tokens) for layer, m in zip(layers, maps)]
        png = draw_maps(pixels, layers, maps, num_tokens, out / f"{stem}_attention.png",
                        f"{Path(f).name}: {trained.class_name(top)} ({100 * float(p[top]):.1f}%)",
                        heads=not args.mean_only)
        _save_npz(out / f"{stem}_attention.npz", layers, maps, num_tokens, grids)
        shares = ", ".join(f"{layer.name} {100 * float(m[:, :, num_tokens:].sum(-1).mean()):.0f}%"
                           for layer, m in zip(layers, maps))
        print(f"{f}: {trained.class_name(top)} {100 * float(p[top]):.1f}%; attention on the image: {shares}; "
              f"wrote {png}")
    return 1 if failed else 0


main = command_main("attention")
