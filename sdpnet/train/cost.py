"""What a run costs, for results.json: FLOPs per image, peak memory, torch.compile's graph breaks."""
from __future__ import annotations

import resource

import torch

from sdpnet.models.summary import summarize

__all__ = ["model_flops", "peak_memory", "compile_graph_breaks"]


def model_flops(model: torch.nn.Module, res: int) -> int:
    """FLOPs of one image at ``res`` px, counted as ``python -m sdpnet summary`` counts them (eval mode)."""
    was_training = model.training
    try:
        return summarize(model.eval(), res)["flops"]
    finally:
        model.train(was_training)


def peak_memory(device: torch.device) -> dict:
    """The run's peak memory in MiB: CUDA memory allocated on a GPU, the process's peak resident set on a CPU."""
    if device.type == "cuda":
        return {"peak_mem_mib": torch.cuda.max_memory_allocated(device) / 2 ** 20, "peak_mem_kind": "cuda_allocated"}
    return {"peak_mem_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak_mem_kind": "cpu_rss"}


def compile_graph_breaks() -> int:
    """How many graph breaks torch.compile (dynamo) met in this process."""
    # torch._dynamo costs about 1 s to import: reached as an attribute (torch loads it on first access), only after
    # a run that compiled, which has loaded it already
    return sum(torch._dynamo.utils.counters["graph_break"].values())
