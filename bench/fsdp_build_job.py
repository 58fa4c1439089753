"""One side of bench_scale.py's FSDP figure, run as ``torchrun --nproc-per-node 2 fsdp_build_job.py MODE OUT``.

MODE ``netspec``: ``netspec.build`` of specs/scale/llama.yaml at ~100M parameters (FSDP, gloo).
MODE ``hand``: the same model written by hand (bench/handwritten.py ``Llama``), sharded the way
torchtitan does it: built under ``torch.device("meta")``, ``fully_shard`` per block, embeddings
and output, then the root, ``to_empty``, ``reset_parameters`` on the DTensor shards. Both build
an AdamW over the sharded parameters. Each rank reports its build seconds (wall and CPU) and
its peak resident memory above what it held before the build; rank 0 writes them to OUT.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import handwritten as hw  # noqa: E402
from rank_report import report_and_finish  # noqa: E402

import netspec  # noqa: E402
from netspec.distributed.context import current  # noqa: E402

SPEC = BENCH.parent / "specs" / "scale" / "llama.yaml"


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def build_netspec() -> torch.nn.Module:
    overrides = {f"vars.{k}": v for k, v in hw.LLAMA_100M.items()}
    overrides["distributed.mixed_precision"] = None  # gloo cannot reduce in bfloat16
    return netspec.build(SPEC, overrides=overrides).model


def build_hand() -> torch.nn.Module:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    with torch.device("meta"):
        model = hw.Llama(**hw.LLAMA_100M)
    for module in [model.tok_embeddings, *model.layers, model.output]:
        fully_shard(module, mesh=mesh)
    fully_shard(model, mesh=mesh)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    return model


def main(mode: str, out: Path) -> None:
    current()  # torchrun's environment: gloo on the CPU
    dist.barrier()
    before = rss_kib()
    start, cpu = time.perf_counter(), time.process_time()
    model = build_netspec() if mode == "netspec" else build_hand()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    local = sum(p.to_local().numel() for p in model.parameters())
    mine = {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_mib": (peak - before) / 1024, "local": local}
    report_and_finish(mode, model, mine, out)


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
