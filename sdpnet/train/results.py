"""What a finished run writes: results.json (accuracy, and the cost: FLOPs, throughput, peak memory, time, graph
breaks) and curves.png."""
from __future__ import annotations

import sys

from sdpnet.files import write_json
from sdpnet.train.cost import compile_graph_breaks, peak_memory
from sdpnet.train.plot import plot_run
from sdpnet.train.prepare import Job
from sdpnet.train.setup import Setup

__all__ = ["write_results"]


def write_results(job: Job, s: Setup) -> None:
    """results.json from the last epoch's metrics and the run's cost, a warning for graph breaks, curves.png."""
    rows, budget, t = s.rows, s.budget, job.opts.training
    last = rows[-1]
    breaks = compile_graph_breaks() if job.compile else None
    later = rows[1:] or rows   # the first epoch pays FFCV's compilation
    cost = {"flops": s.flops, "flops_res": job.opts.validation.res,
            "img_per_s": sum(r["img_per_s"] * r["epoch_time"] for r in later) / sum(r["epoch_time"] for r in later),
            **peak_memory(job.info.device)}
    if budget is not None:
        cost |= {"budget_s": budget.seconds, "budget_time_s": budget.spent, "budget_excluded_s": budget.excluded}
    write_json(job.run / "results.json", {
        "top1": last["top1"], "top5": last["top5"], "ema_top1": last.get("ema_top1"),
        "ema_top5": last.get("ema_top5"), "best_top1": s.best,
        "epochs": t.epochs if budget is None else round(s.step / s.steps_per_epoch, 3),
        "train_time_s": s.train_time, "params": s.n_params, "spec": job.spec_record["canonical"],
        "graph_breaks": breaks, **cost})
    if breaks:
        print(f"warning: torch.compile broke the graph {breaks} time(s) (run with TORCH_LOGS=graph_breaks "
              f"to see where): the compiled model runs slower than it could", file=sys.stderr)
    plot_run(job.run)
