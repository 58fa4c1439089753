"""One side of bench_scale.py's FSDP-init memory figure: ``torchrun --nproc-per-node 2 fsdp_init_job.py MODE OUT``.

The spec: a 4-layer LSTM (1024 wide: eight 4096x1024 gate matrices, 16 MiB each in float32) and
a MultiheadAttention (one 3072x1024 in-projection, one 1024x1024 out-projection), each one FSDP
unit. MODE ``tensor``: ``netspec.build`` as it is (each layer's construction recorded on meta and
replayed one tensor at a time). MODE ``layer``: the same build with the recording turned off, so
each layer is constructed whole on the rank's device and then sharded (what netspec did before).

Each rank counts, with a dispatch mode over torch's own ops, the bytes of every plain tensor
storage created during the build while it is alive — the full tensors made to initialise shards
(the shards themselves are allocated inside DTensor's dispatch, which the mode does not see) —
and reports the peak, its own shards' bytes, and its peak RSS growth (``ru_maxrss``); rank 0
writes them to OUT.
"""

from __future__ import annotations

import importlib
import resource
import sys
from pathlib import Path
from typing import Any

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: netspec and tests/

from rank_report import report_and_finish  # beside this file

import netspec
from netspec.distributed.context import current
from tests.live_bytes import LiveBytes

# The module itself (netspec.distributed.materialize, the attribute, is the runtime's function).
materialize = importlib.import_module("netspec.distributed.materialize")

SPEC: dict[str, Any] = {
    "netspec": 1,
    "seed": 0,
    "model": {
        "type": "Graph",
        "inputs": ["x"],
        "layers": {
            "rnn": {"type": "LSTM", "input_size": 1024, "hidden_size": 1024, "num_layers": 4},
            "attention": {"type": "MultiheadAttention", "embed_dim": 1024, "num_heads": 8},
        },
        "forward": ["h = rnn(x)[0]", "y = attention(h, h, h)[0]"],
        "outputs": "y",
    },
    "distributed": {"strategy": "fsdp", "shard": ["rnn", "attention"]},
}


def main(mode: str, out: Path) -> None:
    current()  # torchrun's environment: gloo on the CPU
    if mode == "layer":
        materialize.record = lambda construct: None  # type: ignore[assignment]  # every layer built whole
    dist.barrier()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    counter = LiveBytes()
    with counter:
        built = netspec.build(SPEC)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB on Linux
    model = built.model
    shards = sum(p.to_local().numel() * p.element_size() for p in model.parameters())
    largest = max(p.numel() * p.element_size() for p in model.parameters())
    mine = {"peak": counter.peak, "shards": shards, "largest": largest, "rss_kib": rss}
    report_and_finish(mode, model, mine, out)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
