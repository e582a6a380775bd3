"""Distributed data parallel from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR).

Without those variables everything degrades to a single process: ``world_size`` 1,
no process group, reductions are no-ops. Backend: NCCL on CUDA, gloo on CPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from sdpnet.files import write_json
from sdpnet.train.checkpoint import rng_state

__all__ = ["DistInfo", "init_distributed", "all_reduce_sum", "all_reduce_max", "barrier", "wrap_ddp", "unwrap",
           "gather_rng", "dump_rank", "cleanup"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, local rank on its node, number of processes, device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (if any) and pick this process's device.

    ``device``: ``auto`` (CUDA if available, else CPU), ``cpu`` or ``cuda``. On CUDA each
    process takes GPU ``LOCAL_RANK``.
    """
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    if use_cuda and not torch.cuda.is_available():
        raise ValueError("device=cuda requested but no CUDA device is available; use device=cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world,
                                device_id=dev if use_cuda else None)
    return DistInfo(rank, local, world, dev)


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all processes, in place (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_reduce_max(value: float, device: torch.device) -> float:
    """The largest ``value`` over the ranks (the time a data-parallel budget agrees on)."""
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def wrap_ddp(model: nn.Module, info: DistInfo) -> nn.Module:
    """``DistributedDataParallel(model)`` when distributed, else ``model`` itself."""
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP (in-place compile keeps parameter names unprefixed)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def gather_rng(info: DistInfo) -> list:
    """Every rank's RNG states, in rank order (so a resumed DDP run continues each stream)."""
    state = rng_state()
    if not info.distributed:
        return [state]
    out = [None] * info.world_size
    dist.all_gather_object(out, state)
    return out


def dump_rank(run: Path, info: DistInfo, epoch: int, order, labels: list, model: nn.Module) -> None:
    """Debug (dist.dump_samples): the indices this rank read, the labels it saw, a parameter checksum."""
    flat = torch.cat([p.detach().double().flatten().cpu() for p in model.parameters()])
    n = sum(len(b) for b in labels)
    rec = {"rank": info.rank, "world_size": info.world_size, "epoch": epoch + 1,
           "indices": [int(i) for i in order[:n]], "labels": [v for b in labels for v in b],
           "param_sum": float(flat.sum()), "param_abs_sum": float(flat.abs().sum()),
           "param_weighted": float((flat * torch.arange(flat.numel(), dtype=torch.float64).remainder(7)).sum())}
    write_json(run / f"samples_rank{info.rank}_epoch{epoch + 1}.json", rec)


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
