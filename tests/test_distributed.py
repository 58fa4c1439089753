"""FSDP2 and DDP from the spec, for real: two CPU processes (gloo) under torchrun, against one process.

One torchrun job (tests/dist_job.py, ~20 s on 2 cores) runs every two-process check and leaves what
it found in a folder; the tests below compare it with single-process builds made here. The job
uses ``torchrun --standalone`` (a free port of its own) under a timeout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

import netspec
from netspec.io.checkpoint import read_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dist_specs import batch, fsdp_spec, tied_spec, train

JOB = Path(__file__).resolve().parent / "dist_job.py"
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("dist")
    one = netspec.build(fsdp_spec())  # no process group: the section is ignored, one device
    tokens, labels = batch()
    train(one, tokens, labels, steps=1)
    netspec.save(one, out / "ck1", epoch=1)  # for the 1 -> 2 resume
    torch.save({"optim": get_optimizer_state_dict(one.model, one.optimizer)}, out / "ck1_optim.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    command = [*launcher, str(JOB), str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, env=env, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return out, json.loads((out / "results.json").read_text())


def test_fsdp_build_shards_the_matched_modules_and_the_root(job: tuple[Path, dict[str, Any]]) -> None:
    _, found = job
    assert found["world"] == 2 and found["strategy"] == "fsdp"
    assert found["fsdp_modules"] == ["", "blocks.0", "blocks.1", "head"]  # "blocks.*": one unit per block
    assert found["dtensor_params"] and found["optimizer_params_are_dtensors"]
    shapes = found["local_shapes"]
    assert shapes["blocks.0.fc1.weight"] == [6, 8]  # rank 0's half of [12, 8]
    assert shapes["head.weight"] == [3, 8]  # 5 rows over 2 ranks: torch.chunk's 3 + 2


def test_gathered_state_is_bit_identical_to_one_process(job: tuple[Path, dict[str, Any]]) -> None:
    out, _ = job
    initial = torch.load(out / "initial.pt", weights_only=True)
    reference = netspec.build(fsdp_spec()).model
    expected = reference.state_dict()
    assert set(initial["state"]) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(initial["state"][name], tensor), name
        assert initial["state"][name].dtype == tensor.dtype
    buffers = dict(reference.named_buffers())  # the non-persistent tril mask is not in the state_dict
    assert set(initial["buffers"]) == set(buffers)
    for name, tensor in buffers.items():
        assert torch.equal(initial["buffers"][name], tensor), name
    # The spec's values really are exercised: rules, defaults, Graph tensors and BatchNorm stats.
    assert not torch.equal(expected["blocks.1.fc2.bias"], torch.zeros(8))
    assert torch.equal(expected["bn.running_var"], torch.ones(8))


def test_three_adamw_steps_match_one_process(job: tuple[Path, dict[str, Any]]) -> None:
    out, found = job
    one = netspec.build(fsdp_spec())
    tokens, labels = batch()
    losses = train(one, tokens, labels)
    torch.testing.assert_close(found["losses"], losses, rtol=1e-5, atol=0)
    after = torch.load(out / "after.pt", weights_only=True)
    for name, tensor in one.model.state_dict().items():
        torch.testing.assert_close(after["state"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    assert after["sched"]["last_epoch"] == 3


def test_resume_at_world_two_from_world_two_and_one(job: tuple[Path, dict[str, Any]]) -> None:
    out, found = job
    assert found["resume_2_2_model_equal"] and found["resume_2_2_optim_equal"]
    assert found["resume_2_2_epoch"] == 3 and found["resume_2_2_sched"] == 3
    assert found["from_one_is_sharded"]
    from_one = torch.load(out / "from_one.pt", weights_only=True)
    saved = netspec.load(out / "ck1")  # the same directory, read back in one process
    for name, tensor in saved.model.state_dict().items():
        assert torch.equal(from_one["state"][name], tensor), name
    reference = torch.load(out / "ck1_optim.pt", weights_only=True)["optim"]
    for name, entry in reference["state"].items():
        for key, value in entry.items():
            assert torch.equal(from_one["optim"]["state"][name][key], value), (name, key)


def test_resume_at_world_two_uses_the_changed_optimizer_settings(job: tuple[Path, dict[str, Any]]) -> None:
    _, found = job
    # Without overrides DCP's set_optimizer_state_dict restores the saved groups: StepLR halved lr 0.01 once.
    assert found["plain_resume_groups"] == [{"lr": 0.005, "weight_decay": 0.1}] * len(found["plain_resume_groups"])
    # With them, every group uses the spec's new values; what the override did not touch stays as saved.
    for group in found["override_groups"]:
        assert group == {"lr": 0.5, "weight_decay": 0.25, "betas": [0.9, 0.999]}
    assert found["override_moments_equal"]  # the AdamW moments are still the saved ones
    assert found["override_report"]["lr"][0] == [0.005, 0.5]
    assert found["override_report"]["weight_decay"][0] == [0.1, 0.25]
    (note,) = found["override_notes"]
    assert "lr 0.5 (the checkpoint had 0.005)" in note and "weight_decay 0.25 (the checkpoint had 0.1)" in note


def test_save_at_world_two_load_at_world_one(job: tuple[Path, dict[str, Any]]) -> None:
    out, _ = job
    after = torch.load(out / "after.pt", weights_only=True)
    built = netspec.load(out / "ck2")  # no process group here
    assert built.strategy is None and built.checkpoint.epoch == 3
    assert [w.message for w in built.warnings if "distributed" in w.message]  # ignored, said once
    state = built.model.state_dict()
    assert set(state) == set(after["state"])
    for name, tensor in after["state"].items():
        assert torch.equal(state[name], tensor), name
    optim = get_optimizer_state_dict(built.model, built.optimizer)
    for name, entry in after["optim"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(optim["state"][name][key], value), (name, key)
    assert built.scheduler.state_dict() == after["sched"]


def test_ddp_wraps_and_saves_without_module_prefix(job: tuple[Path, dict[str, Any]]) -> None:
    out, found = job
    assert found["ddp_wrapped"] == "DistributedDataParallel"
    payload = read_file(out / "ddp.pt")
    assert payload["epoch"] == 1
    assert not [k for k in payload["model"] if k.startswith("module.")]
    expected = torch.load(out / "ddp_state.pt", weights_only=True)
    assert set(payload["model"]) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(payload["model"][name], tensor), name
    resumed = netspec.load(out / "ddp.pt")
    assert set(resumed.model.state_dict()) == set(expected)


def test_bfloat16_on_gloo_is_refused_before_sharding(job: tuple[Path, dict[str, Any]]) -> None:
    _, found = job
    message = found["bf16_error"]
    assert message is not None
    assert "distributed.mixed_precision.param_dtype" in message
    assert "bfloat16 cannot be used on cpu with gloo" in message


def test_tie_activation_checkpointing_and_ema_under_fsdp(job: tuple[Path, dict[str, Any]]) -> None:
    out, found = job
    assert found["tied_shared"]  # one tensor under both names, sharded once
    one = netspec.build(tied_spec())
    saved = torch.load(out / "tied.pt", weights_only=True)
    for name, tensor in one.model.state_dict().items():
        assert torch.equal(saved["initial"][name], tensor), name
    tokens, labels = batch()
    losses = train(one, tokens, labels)  # with checkpointed blocks and an EMA update per step
    torch.testing.assert_close(found["tied_losses"], losses, rtol=1e-5, atol=0)
    # The tied embedding's gradient sums two paths (lookup and output projection) in another order on two
    # ranks; AdamW's first steps divide by its root mean square, which turns ~1e-7 relative differences in
    # the gradient into ~1e-4 absolute ones in those weights. Everything else agrees to 1e-6.
    for name, tensor in one.averaged.module.state_dict().items():
        atol = 2e-4 if name in ("embed.weight", "unembed.weight") else 1e-6
        torch.testing.assert_close(saved["averaged"][name], tensor, rtol=1e-5, atol=atol, msg=name)
    resumed = netspec.load(out / "ck_tied")  # world 2 -> 1, the average included
    assert resumed.model.unembed.weight is resumed.model.embed.weight
    for name, tensor in saved["averaged"].items():
        assert torch.equal(resumed.averaged.module.state_dict()[name], tensor), name
    assert resumed.training.averager.calls == 3
