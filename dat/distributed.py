"""Data-parallel training across processes (torch.distributed; one process per GPU, launched by torchrun).

Without torchrun (``WORLD_SIZE`` unset or 1) every helper is the identity, so single-process training runs the
same code. With it, the configured batch size stays the global batch: each of the W processes trains on its own
1/W slice of every global batch, gradients are averaged by DistributedDataParallel, and the few values that steer
training (the curriculum's AUC, the non-finite check, stop/checkpoint decisions) are agreed across processes with
small collectives, so every process takes the same decisions at the same step. NCCL on GPUs, gloo on CPUs (which
is how the tests run it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

from dat.io import resolve_device


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: ``rank`` in [0, ``world_size``), ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str = "auto") -> tuple[DistEnv, torch.device]:
    """Join the process group that torchrun describes in the environment, and pick this process's device.

    Args:
        device_name: ``auto``, ``cpu`` or ``cuda``; under torchrun a CUDA device becomes ``cuda:LOCAL_RANK``.

    Returns:
        (DistEnv, device). A single process gets ``DistEnv()`` and :func:`dat.io.resolve_device`'s device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world_size <= 1:
        return DistEnv(), device
    env = DistEnv(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", env.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env, device


def shutdown(env: DistEnv) -> None:
    if env.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def all_reduce_sum(values: Sequence[float], env: DistEnv, device: torch.device) -> list[float]:
    """Element-wise sum of ``values`` over all processes (the values themselves for one process)."""
    if not env.enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather_cat(t: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Concatenate equal-shaped tensors from all processes along dim 0, in rank order."""
    if not env.enabled:
        return t
    parts = [torch.empty_like(t) for _ in range(env.world_size)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


def all_gather_object(obj: Any, env: DistEnv) -> list:
    """Every process's ``obj`` (picklable), in rank order."""
    if not env.enabled:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def shard_size(global_batch: int, env: DistEnv, key: str) -> int:
    """Per-process share of a global batch.

    Raises:
        ValueError: naming the config ``key`` when the global batch does not split evenly over the processes.
    """
    if global_batch % env.world_size:
        raise ValueError(f"{key} = {global_batch} does not split over {env.world_size} processes; use a multiple")
    return global_batch // env.world_size
