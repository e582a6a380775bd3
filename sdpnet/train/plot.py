"""A run's curves, drawn to RUN_DIR/curves.png after training (and by ``python -m sdpnet plot RUN_DIR``)."""
from __future__ import annotations

from pathlib import Path

from sdpnet.files import read_jsonl, save_figure

__all__ = ["plot_run"]


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw train/val loss and top-1/top-5 (model and EMA) per epoch from ``metrics.jsonl`` to a PNG."""
    import matplotlib   # matplotlib: heavy (0.3-0.5 s), imported only when drawing
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    src = run_dir / "metrics.jsonl"
    if not src.is_file():
        raise FileNotFoundError(f"{src} not found: RUN_DIR must be a training run folder "
                                f"(--logging.folder of train_ffcv.py)")
    rows = read_jsonl(src)
    if not rows:
        raise ValueError(f"{src} has no epochs yet")
    ep = [r["epoch"] for r in rows]
    fig, (ax_l, ax_a, ax_r) = plt.subplots(1, 3, figsize=(15, 4))
    for key, label in (("train_loss", "train"), ("val_loss", "val")):
        ax_l.plot(ep, [r.get(key) for r in rows], marker=".", label=label)
    ax_l.set(xlabel="epoch", ylabel="loss", title="loss")
    for key, label in (("top1", "top-1"), ("top5", "top-5"), ("ema_top1", "EMA top-1"),
                       ("ema_top5", "EMA top-5")):
        if any(r.get(key) is not None for r in rows):
            ax_a.plot(ep, [100 * r[key] if r.get(key) is not None else None for r in rows],
                      marker=".", label=label)
    ax_a.set(xlabel="epoch", ylabel="accuracy (%)", title="validation accuracy")
    ax_r.plot(ep, [r["lr"] for r in rows], marker=".", color="tab:red")
    ax_r.set(xlabel="epoch", ylabel="lr (end of epoch)", title="lr and resolution")
    ax_res = ax_r.twinx()
    ax_res.plot(ep, [r["res"] for r in rows], ls="--", color="tab:gray")
    ax_res.set_ylabel("train resolution (px)")
    for ax in (ax_l, ax_a):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    return save_figure(fig, Path(out) if out is not None else run_dir / "curves.png")
