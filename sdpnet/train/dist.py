"""Distributed data parallel from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR).

Without those variables everything degrades to a single process: ``world_size`` 1,
no process group, reductions are no-ops. Backend: NCCL on CUDA, gloo on CPU.

torchrun also says which job and which attempt a worker belongs to: ``TORCHELASTIC_RUN_ID``
(``--rdzv_id``, a fresh uuid with ``--standalone``) and ``TORCHELASTIC_RESTART_COUNT`` (0, then
1, 2, ... each time ``--max-restarts`` restarts this node's worker group after a failure; a node
restarted because another node failed keeps its count, so the count is per node, not per job).
A worker of the job that started a run folder resumes it without ``--training.resume=1``
(:func:`sdpnet.train.prepare.prepare`).

Restarts and the process group's store: since torch 2.5 the c10d rendezvous shares the agent's
TCPStore with the workers (``TORCHELASTIC_USE_AGENT_STORE``), and that store outlives a restart.
The restarted workers' ``init_process_group`` then reads the killed group's keys (gloo's peer
addresses) and retries dead ports until gloo's 30-minute timeout: with torch 2.14.1 a SIGKILLed
worker's restarted group hung in ``init_process_group`` in every try (tests/test_multinode.py
caught it; pytorch/pytorch#135712). So under the agent's store each group makes a store of its
own (:func:`_group_store`): global rank 0 hosts a fresh TCPStore and posts its address with a
random token in the agent's store; the other ranks connect to the posted address until they find
the token there (a stale post names a dead port, or a server without that token).
"""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
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
    """Where this process sits: global rank, local rank on its node, number of processes, device; under
    torchrun also the job's run id and the attempt (0 first, n after the n-th restart; None/0 without torchrun)."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device
    run_id: str | None = None
    restart: int = 0

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
        store = _group_store(rank, world) if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" else None
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world, store=store,
                                device_id=dev if use_cuda else None)
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    return DistInfo(rank, local, world, dev, run_id, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))


GROUP_STORE_KEY = "sdpnet/group_store"   # in the agent's store: "host:port:token" of the current group's store


def _group_store(rank: int, world: int, timeout: float = 600.0) -> dist.Store:
    """A TCPStore of this worker group's own, hosted by global rank 0 (see the module docstring).

    Rank 0 runs on the node whose address is MASTER_ADDR (the rendezvous gives global rank 0 to
    the agent that hosts the shared store, or to --node_rank=0 with --master_addr).
    """
    host, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    wait = timedelta(seconds=timeout)
    agent = dist.TCPStore(host, port, is_master=False, timeout=wait)
    if rank == 0:
        own = dist.TCPStore(host, 0, world, is_master=True, timeout=wait, wait_for_workers=False)
        token = uuid.uuid4().hex
        own.set("token", token)
        agent.set(GROUP_STORE_KEY, f"{host}:{own.port}:{token}")
        return own
    deadline = time.monotonic() + timeout
    while True:
        addr, own_port, token = agent.get(GROUP_STORE_KEY).decode().rsplit(":", 2)
        try:
            own = dist.TCPStore(addr, int(own_port), is_master=False, timeout=timedelta(seconds=0.5))
            if own.get("token").decode() == token:
                own.set_timeout(wait)
                return own
        except (RuntimeError, TimeoutError):   # DistStoreError/DistNetworkError: a dead port, a stale post
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"rank {rank}: no live process-group store posted by rank 0 in the agent's store "
                               f"at {host}:{port} after {timeout:.0f} s (last post {addr}:{own_port})")
        time.sleep(0.1)


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
    run.mkdir(parents=True, exist_ok=True)   # on a node that does not share rank 0's run folder, its own
    write_json(run / f"samples_rank{info.rank}_epoch{epoch + 1}.json", rec)


def cleanup() -> None:
    """Leave the process group."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
