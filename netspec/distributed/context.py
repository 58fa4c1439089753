"""Where this process stands in a ``torchrun`` job: rank, world size and the device its shards live on.

In: the environment (``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``)
or a process group the caller initialised. Out: a ``DistContext`` — or ``None`` for a plain
single-process run, in which case a spec's ``distributed:`` section is ignored with a warning.

Under ``torchrun`` without an initialised group, the group is initialised here: NCCL on
``cuda:LOCAL_RANK`` when CUDA is available, gloo on the CPU otherwise. With a group already
initialised, its backend decides the device (``nccl`` -> ``cuda:LOCAL_RANK``, else CPU).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistContext:
    """This rank's place in the default process group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return all(name in os.environ for name in _TORCHRUN_VARS)


def _local_rank() -> int:
    text = os.environ.get("LOCAL_RANK", "")
    return int(text) if text.isdigit() else 0


def current() -> DistContext | None:
    """The process group's context, initialising it under ``torchrun``; ``None`` without one."""
    if not dist.is_available():
        return None
    if not dist.is_initialized():
        if not launched_by_torchrun():
            return None
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(_local_rank())
        dist.init_process_group(backend=backend)
    backend = str(dist.get_backend())
    local_rank = _local_rank()
    if "nccl" in backend:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend, device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
