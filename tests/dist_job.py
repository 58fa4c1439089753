"""The two-process part of tests/test_distributed.py, run as ``torchrun --nproc-per-node 2 job.py OUT``.

Each check writes what it found under OUT (rank 0) for the test functions to assert on; the
single-process references are computed by the tests themselves, in the parent process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_optimizer_state_dict
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dist_specs import batch, fsdp_spec, tied_spec, train

import netspec

FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


def main(out: Path) -> None:
    results: dict[str, object] = {}
    built = netspec.build(fsdp_spec())  # torchrun set RANK/WORLD_SIZE: netspec initialises the gloo group
    rank, world = dist.get_rank(), dist.get_world_size()
    model = built.model
    results["world"] = world
    results["strategy"] = built.strategy
    results["fsdp_modules"] = sorted(n for n, m in model.named_modules() if isinstance(m, FSDPModule))
    results["dtensor_params"] = all(isinstance(p, DTensor) for p in model.parameters())
    results["local_shapes"] = {n: list(p.to_local().shape) for n, p in model.named_parameters()}
    results["optimizer_params_are_dtensors"] = all(
        isinstance(p, DTensor) for g in built.optimizer.param_groups for p in g["params"]
    )
    full = get_model_state_dict(model, options=FULL)
    buffers = {n: b.clone() for n, b in model.named_buffers()}  # the non-persistent mask too
    if rank == 0:
        torch.save({"state": full, "buffers": buffers}, out / "initial.pt")

    tokens, labels = batch()
    half = len(tokens) // world
    mine = slice(rank * half, (rank + 1) * half)
    local = train(built, tokens[mine], labels[mine])
    losses = torch.tensor(local, dtype=torch.float64)
    dist.all_reduce(losses)
    results["losses"] = (losses / world).tolist()
    after = get_model_state_dict(model, options=FULL)
    optim_after = get_optimizer_state_dict(model, built.optimizer, options=FULL)
    if rank == 0:
        torch.save({"state": after, "optim": optim_after, "sched": built.scheduler.state_dict()}, out / "after.pt")
    netspec.save(built, out / "ck2", epoch=3)

    # 2 -> 2: resume what was just saved.
    again = netspec.load(out / "ck2")
    same = get_model_state_dict(again.model, options=FULL)
    same_optim = get_optimizer_state_dict(again.model, again.optimizer, options=FULL)
    if rank == 0:
        results["resume_2_2_model_equal"] = all(torch.equal(after[k], same[k]) for k in after) and set(after) == set(
            same
        )
        results["resume_2_2_optim_equal"] = _optim_equal(optim_after, same_optim)
        results["resume_2_2_epoch"] = again.checkpoint.epoch
        results["resume_2_2_sched"] = again.scheduler.state_dict()["last_epoch"]

    # 2 -> 2 with the optimizer changed: DCP restores the saved param groups (lr, weight_decay, ...);
    # the override must win over them, the moments must still be the saved ones, and it is reported.
    changed = netspec.load(out / "ck2", overrides={"optimizer.weight_decay": 0.25, "optimizer.lr": 0.5})
    changed_optim = get_optimizer_state_dict(changed.model, changed.optimizer, options=FULL)
    if rank == 0:
        results["override_groups"] = [
            {k: g[k] for k in ("lr", "weight_decay", "betas")} for g in changed.optimizer.param_groups
        ]
        results["plain_resume_groups"] = [
            {k: g[k] for k in ("lr", "weight_decay")} for g in again.optimizer.param_groups
        ]
        results["override_moments_equal"] = all(
            torch.equal(value, changed_optim["state"][key][name])
            for key, entry in optim_after["state"].items()
            for name, value in entry.items()
        )
        results["override_notes"] = [w.message for w in changed.warnings if w.path == ("optimizer",)]
        results["override_report"] = {k: [list(p) for p in v] for k, v in changed.checkpoint.hyperparameters.items()}

    # 1 -> 2: the parent saved ck1 from a plain single-process run.
    one = netspec.load(out / "ck1")
    from_one = get_model_state_dict(one.model, options=FULL)
    from_one_optim = get_optimizer_state_dict(one.model, one.optimizer, options=FULL)
    if rank == 0:
        torch.save({"state": from_one, "optim": from_one_optim}, out / "from_one.pt")
    results["from_one_is_sharded"] = all(isinstance(p, DTensor) for p in one.model.parameters())

    # tie:, checkpoint_activations and average: under FSDP, saved with the average and resumed in one process.
    tied = netspec.build(tied_spec())
    results["tied_shared"] = tied.model.unembed.weight is tied.model.embed.weight
    tied_initial = get_model_state_dict(tied.model, options=FULL)
    tied_local = train(tied, tokens[mine], labels[mine])
    tied_losses = torch.tensor(tied_local, dtype=torch.float64)
    dist.all_reduce(tied_losses)
    results["tied_losses"] = (tied_losses / world).tolist()
    averaged = get_model_state_dict(tied.averaged.module, options=FULL)
    if rank == 0:
        torch.save({"initial": tied_initial, "averaged": averaged}, out / "tied.pt")
    netspec.save(tied, out / "ck_tied", epoch=3)

    # bfloat16 all-gathers on gloo would abort the process: refused before anything is sharded.
    try:
        netspec.build(fsdp_spec(mixed_precision={"param_dtype": "bfloat16"}))
        results["bf16_error"] = None
    except netspec.SpecError as err:
        results["bf16_error"] = str(err)

    # DDP: same weights on every rank, saved without "module.".
    ddp = netspec.build(fsdp_spec("ddp"))
    results["ddp_wrapped"] = type(ddp.model).__name__
    train(ddp, tokens[mine], labels[mine], steps=1)
    netspec.save(ddp, out / "ddp.pt", epoch=1)
    ddp_state = {k: v.clone() for k, v in ddp.module.state_dict().items()}
    if rank == 0:
        torch.save(ddp_state, out / "ddp_state.pt")
        (out / "results.json").write_text(json.dumps(results, indent=1))
    dist.barrier()
    dist.destroy_process_group()


def _optim_equal(a: dict, b: dict) -> bool:
    if set(a["state"]) != set(b["state"]):
        return False
    for key, entry in a["state"].items():
        for name, value in entry.items():
            other = b["state"][key][name]
            if isinstance(value, torch.Tensor) and not torch.equal(value, other):
                return False
    return a["param_groups"] == b["param_groups"]


if __name__ == "__main__":
    main(Path(sys.argv[1]))
