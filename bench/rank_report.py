"""The end of a two-rank bench job (``fsdp_build_job.py``, ``fsdp_init_job.py``): every rank's figures to OUT.

In: the job's mode, the built (sharded) model, this rank's figures and OUT. Out: rank 0 writes
``{"mode", "parameters" (the model's full count), "ranks": [each rank's figures]}`` as JSON; the
process group is destroyed on every rank.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch.distributed as dist
from torch import nn


def report_and_finish(mode: str, model: nn.Module, mine: dict[str, float], out: Path) -> None:
    """Gather ``mine`` from every rank; rank 0 writes the report; then leave the process group."""
    everyone: list[dict[str, float]] = [{}] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if dist.get_rank() == 0:
        params = sum(p.numel() for p in model.parameters())
        out.write_text(json.dumps({"mode": mode, "parameters": params, "ranks": everyone}))
    dist.barrier()
    dist.destroy_process_group()
