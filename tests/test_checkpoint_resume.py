"""Resuming from a checkpoint: tied parameters, the saved dtype, and tampered optimizer/scheduler state.

Every tampered file must be refused at load with a ``CheckpointError`` naming the field, before
anything is loaded — not accepted and then failing (or training wrongly) at the first step.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import netspec
from netspec.api import load_checkpoint
from netspec.errors import CheckpointError
from netspec.io.checkpoint import save

GPT: dict[str, Any] = {
    "netspec": 1,
    "seed": 0,
    "model": {
        "type": "Graph",
        "inputs": ["x"],
        "layers": {
            "embed": {"type": "Embedding", "num_embeddings": 11, "embedding_dim": 8},
            "norm": {"type": "LayerNorm", "normalized_shape": 8},
            "head": {"type": "Linear", "in_features": 8, "out_features": 11, "bias": False},
        },
        "forward": ["y = head(norm(embed(x)))"],
        "outputs": "y",
    },
    "optimizer": {"type": "AdamW", "lr": 0.01},
}

MLP: dict[str, Any] = {
    "netspec": 1,
    "seed": 0,
    "input": {"shape": [4]},
    "model": {"type": "Sequential", "layers": [{"type": "Linear", "out_features": 3}]},
    "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
    "scheduler": {"type": "StepLR", "step_size": 2, "gamma": 0.5},
}


def steps(built: netspec.Built, x: torch.Tensor, n: int) -> None:
    for _ in range(n):
        built.optimizer.zero_grad()
        built.model(x).logsumexp(-1).mean().backward()
        built.optimizer.step()
        if built.scheduler is not None:
            built.scheduler.step()


def tied_gpt() -> netspec.Built:
    """The embedding/head tying GPT-2 does, done in user code after build; the optimizer then built over it."""
    built = netspec.build(GPT)
    built.model.head.weight = built.model.embed.weight
    built.optimizer = torch.optim.AdamW(built.model.parameters(), lr=0.01)
    return built


def test_a_tied_model_resumes_and_trains_exactly_as_the_uninterrupted_run(tmp_path: Path) -> None:
    x = torch.randint(0, 11, (4, 6))
    run = tied_gpt()
    steps(run, x, 2)
    save(run, tmp_path / "gpt.pt")
    resumed = load_checkpoint(tmp_path / "gpt.pt")
    assert resumed.model.head.weight is resumed.model.embed.weight
    # The optimizer holds the tied parameter itself, once (not a stale copy from before re-tying).
    held = [p for g in resumed.optimizer.param_groups for p in g["params"]]
    assert any(p is resumed.model.embed.weight for p in held)
    assert len(held) == len(list(resumed.model.parameters()))
    steps(run, x, 2)
    steps(resumed, x, 2)
    for (name, a), (_, b) in zip(run.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_bfloat16_comes_back_as_bfloat16(tmp_path: Path) -> None:
    built = netspec.build(MLP, dtype="bfloat16")
    save(built, tmp_path / "bf16.pt")
    loaded = load_checkpoint(tmp_path / "bf16.pt")
    assert {t.dtype for t in loaded.model.state_dict().values()} == {torch.bfloat16}
    assert loaded.checkpoint.dtype == "bfloat16"
    for name, tensor in built.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_weights_of_mixed_dtypes_are_reported_not_cast(tmp_path: Path) -> None:
    built = netspec.build(MLP)
    built.model[0].bias.data = built.model[0].bias.data.to(torch.float64)
    save(built, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match=r"dtype 'mixed: float32, float64'.*pass dtype="):
        load_checkpoint(tmp_path / "mixed.pt")


def saved(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    built = netspec.build(MLP)
    steps(built, torch.arange(20.0).reshape(5, 4) / 10, 3)
    path = save(built, tmp_path / "mlp.pt")
    return path, torch.load(path, weights_only=True)


def tamper(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    path, payload = saved(tmp_path)
    change(payload)
    torch.save(payload, path)
    return path


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


def _delete(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def change(payload: dict[str, Any]) -> None:
        target = payload
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return change


TAMPERED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "string-lr": (
        _set(("optimizer", "param_groups", 0, "lr"), "0.1"),
        "optimizer.param_groups.0.lr should be a number, found the string '0.1'",
    ),
    "bool-momentum": (
        _set(("optimizer", "param_groups", 0, "momentum"), True),
        "optimizer.param_groups.0.momentum should be a number, found bool True",
    ),
    "momentum-buffer-shape": (
        _set(("optimizer", "state", 0, "momentum_buffer"), torch.zeros(4, 3)),
        "optimizer.state.0.momentum_buffer is a float32 tensor of shape [4, 3]; its parameter has shape [3, 4]",
    ),
    "momentum-buffer-int": (
        _set(("optimizer", "state", 0, "momentum_buffer"), torch.zeros(3, 4, dtype=torch.int64)),
        "optimizer.state.0.momentum_buffer should be a floating-point tensor, found a int64 tensor",
    ),
    "momentum-buffer-string": (
        _set(("optimizer", "state", 0, "momentum_buffer"), "zeros"),
        "optimizer.state.0.momentum_buffer should be a tensor or a number, found the string 'zeros'",
    ),
    "state-for-no-parameter": (
        _set(("optimizer", "state", 7), {"momentum_buffer": torch.zeros(3)}),
        "optimizer.state has an entry for 7, which no parameter group lists",
    ),
    "unknown-group-key": (
        _set(("optimizer", "param_groups", 0, "lrr"), 0.1),
        "optimizer.param_groups.0 has unknown key(s) 'lrr'",
    ),
    "unknown-top-key": (
        _set(("optimizer", "extra"), 1),
        "optimizer has unknown key(s) 'extra'",
    ),
    "no-param-groups": (
        _delete(("optimizer", "param_groups")),
        "optimizer lacks key(s) 'param_groups'",
    ),
    "params-count": (
        _set(("optimizer", "param_groups", 0, "params"), [0]),
        "optimizer.param_groups.0.params has 1 parameter(s); group 0 of the optimizer built from the spec has 2",
    ),
    "params-not-indices": (
        _set(("optimizer", "param_groups", 0, "params"), ["a", "b"]),
        "optimizer.param_groups.0.params should be a list of parameter indices",
    ),
    "scheduler-string-epoch": (
        _set(("scheduler", "last_epoch"), "3"),
        "scheduler.last_epoch should be a number, found the string '3'",
    ),
    "scheduler-gamma-list": (
        _set(("scheduler", "gamma"), [0.5]),
        "scheduler.gamma should be a number, found list",
    ),
    "scheduler-unknown-key": (
        _set(("scheduler", "warp"), 1),
        "scheduler has unknown key(s) 'warp'",
    ),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_tampered_optimizer_or_scheduler_state_is_refused_at_load(tmp_path: Path, case: str) -> None:
    change, message = TAMPERED[case]
    path = tamper(tmp_path, change)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert text.startswith(f"{path}: cannot resume the "), text
    assert message in text, text


def test_an_untampered_checkpoint_resumes_exactly(tmp_path: Path) -> None:
    path, _ = saved(tmp_path)
    run = netspec.build(MLP)
    steps(run, torch.arange(20.0).reshape(5, 4) / 10, 3)
    resumed = load_checkpoint(path)
    assert resumed.scheduler.last_epoch == 3 and resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    x2 = torch.randn(5, 4)
    steps(run, x2, 2)
    steps(resumed, x2, 2)
    for name, tensor in run.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name


def test_a_group_key_the_file_lacks_comes_from_the_spec(tmp_path: Path) -> None:
    """A checkpoint from an older torch lacks keys newer torch adds; they are filled from the built group."""
    path = tamper(tmp_path, _delete(("optimizer", "param_groups", 0, "nesterov")))
    resumed = load_checkpoint(path)
    assert resumed.optimizer.param_groups[0]["nesterov"] is False
    steps(resumed, torch.randn(5, 4), 1)


@pytest.mark.parametrize("suffix", [".pt", ""])  # a file, and a DCP directory written without a process group
def test_settings_the_spec_changes_on_resume_win_over_the_saved_ones(tmp_path: Path, suffix: str) -> None:
    spec = {
        "netspec": 1,
        "seed": 0,
        "vars": {"base": 0.1},
        "model": {
            "type": "Sequential",
            "layers": {"a": {"type": "Linear", "in_features": 3, "out_features": 3}, "b": "ReLU"},
        },
        "optimizer": {
            "type": "SGD",
            "lr": "${base}",
            "momentum": 0.9,
            "weight_decay": 0.01,
            "groups": [{"params": "a.bias", "lr_mult": 2.0}],
        },
        "scheduler": {"type": "StepLR", "step_size": 1, "gamma": 0.5},
    }
    built = netspec.build(spec)
    built.model(torch.ones(2, 3)).sum().backward()
    built.optimizer.step()
    built.scheduler.step()  # the saved lrs are the decayed ones: 0.1 * 0.5 and 0.2 * 0.5
    path = tmp_path / f"run{suffix}"
    netspec.save(built, path)
    saved_momentum = [dict(s) for s in built.optimizer.state.values()]

    plain = netspec.load(path)
    assert [g["lr"] for g in plain.optimizer.param_groups] == pytest.approx([0.1, 0.05])  # group order: a.bias first
    assert plain.checkpoint.hyperparameters == {} and not [w for w in plain.warnings if w.path == ("optimizer",)]

    # A var the optimizer reads, and a group's lr_mult: lr is the spec's again in both groups; momentum stays.
    changed = netspec.load(path, overrides={"vars.base": 0.3, "optimizer.groups.0.lr_mult": 3.0})
    assert [g["lr"] for g in changed.optimizer.param_groups] == pytest.approx([0.9, 0.3])
    assert [g["momentum"] for g in changed.optimizer.param_groups] == [0.9, 0.9]
    assert changed.checkpoint.hyperparameters["lr"] == [(pytest.approx(0.1), pytest.approx(0.9)), (0.05, 0.3)]
    (note,) = [w.message for w in changed.warnings if w.path == ("optimizer",)]
    assert "lr 0.3/0.9" in note and "the checkpoint had 0.05/0.1" in note
    states = [dict(s) for s in changed.optimizer.state.values()]
    for mine, saved in zip(states, saved_momentum, strict=True):
        assert torch.equal(mine["momentum_buffer"], saved["momentum_buffer"])
