"""The distributed section's errors (message, line, path) and its single-process behaviour.

Errors the build would raise under torchrun are found by ``netspec.plan`` too, with no process
group: the same unit selection and checks run on meta, so they are tested here in one process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import assert_problem
from specfiles import write_spec_file
from torch import nn

import netspec
from netspec.errors import CheckpointError

BASE = """\
netspec: 1
seed: 0
model:
  type: Sequential
  layers:
    encoder:
      type: Sequential
      layers:
        - {type: Linear, in_features: 4, out_features: 8}
        - ReLU
    head: {type: Linear, in_features: 8, out_features: 2}
optimizer: {type: SGD, lr: 0.1}
distributed:
  strategy: fsdp
  shard: [encoder, "heda*"]
"""


def test_shard_pattern_matching_nothing_names_the_closest_modules(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, BASE)
    with pytest.raises(netspec.SpecError) as info:
        netspec.plan(path, world_size=2)
    shown = assert_problem(
        info.value, file=path, line=15, path="distributed.shard.1", words=("'heda*' matches no module", "'head'")
    )
    assert "did you mean 'head*'?" in shown


def test_unknown_strategy_is_refused_when_read(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, BASE.replace("strategy: fsdp", "strategy: zero3"))
    with pytest.raises(netspec.SpecError) as info:
        netspec.read(path)
    assert_problem(info.value, file=path, line=14, path="distributed.strategy", words=("'fsdp' or 'ddp'", "zero3"))


def test_unknown_key_and_dtype_in_the_section(tmp_path: Path) -> None:
    text = BASE + "  mixed_precision: {param_dtype: bf16}\n  reshard_after_foward: true\n"
    path = write_spec_file(tmp_path, text)
    with pytest.raises(netspec.SpecError) as info:
        netspec.read(path)
    assert_problem(info.value, file=path, line=16, path="distributed.mixed_precision.param_dtype", words=("bf16",))
    assert_problem(
        info.value,
        file=path,
        line=17,
        path="distributed.reshard_after_foward",
        words=("unknown key", "did you mean 'reshard_after_forward'"),
    )


class TiedPair(nn.Module):
    """Two projections sharing one weight (an encoder-decoder tie)."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.a = nn.Linear(features, features)
        self.b = nn.Linear(features, features)
        self.b.weight = self.a.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


TIED = """\
netspec: 1
model:
  type: Sequential
  layers:
    pair: {type: TiedPair, features: 4}
distributed:
  strategy: fsdp
  shard: [pair.a]
"""


def test_tie_split_across_units_is_an_error(tmp_path: Path, clean_registry: None) -> None:
    netspec.register(TiedPair)
    path = write_spec_file(tmp_path, TIED)
    with pytest.raises(netspec.SpecError) as info:
        netspec.plan(path, world_size=2)
    assert_problem(
        info.value,
        file=path,
        line=8,
        path="distributed.shard",
        words=("'pair.a.weight' in unit 'pair.a'", "'pair.b.weight' in unit '<root>'", "shard a module that contains"),
    )
    together = write_spec_file(tmp_path, TIED.replace("shard: [pair.a]", "shard: [pair]"), "ok.yaml")
    assert [u.name for u in netspec.plan(together, world_size=2).units] == ["pair", ""]


class EmptyScale(nn.Module):
    """A layer whose parameter nothing fills: torch.empty and no reset_parameters."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.empty(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


UNFILLED = """\
netspec: 1
model:
  type: Sequential
  layers:
    - {type: Linear, in_features: 4, out_features: 4}
    - {type: EmptyScale, features: 4}
distributed: {strategy: fsdp}
"""


def test_a_tensor_nothing_initialises_is_an_error_before_allocation(tmp_path: Path, clean_registry: None) -> None:
    netspec.register(EmptyScale)
    path = write_spec_file(tmp_path, UNFILLED)
    with pytest.raises(netspec.SpecError) as info:
        netspec.plan(path, world_size=2)
    assert_problem(
        info.value,
        file=path,
        line=6,
        path="model.layers.1",
        words=("'1.scale' would be left uninitialised", "EmptyScale creates it with torch.empty", "init: rule"),
    )
    covered = UNFILLED + "init: [{match: '1.scale', fn: ones}]\n"
    plan = netspec.plan(write_spec_file(tmp_path, covered, "covered.yaml"), world_size=2)
    assert plan.units[0].elements == 16 + 4 + 4


def test_without_a_process_group_the_section_is_ignored_with_one_warning(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, BASE.replace('"heda*"', "head"))
    built = netspec.build(path)
    notes = [w for w in built.warnings if "distributed" in w.message]
    assert len(notes) == 1
    assert notes[0].format().startswith(f"{path}:13:1: distributed: warning: distributed: strategy fsdp is ignored")
    assert built.strategy is None and isinstance(built.model, nn.Sequential)
    plain = netspec.build(_without_section(path))
    for (name, a), (_, b) in zip(built.model.state_dict().items(), plain.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def _without_section(path: Path) -> dict[str, Any]:
    data = netspec.read(path).to_dict()
    del data["distributed"]
    return data


def test_cli_build_prints_the_warning_once(cli: Any, tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, BASE.replace('"heda*"', "head"))
    code, _, err = cli("build", path)
    assert code == 0
    assert err.count("distributed: strategy fsdp is ignored") == 1


# -- checkpoint directories (DCP) in one process ---------------------------------------------------------


def test_directory_checkpoint_round_trip_and_crash_safety(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = write_spec_file(tmp_path, BASE.replace('"heda*"', "head").replace("lr: 0.1}", "lr: 0.1, momentum: 0.9}"))
    built = netspec.build(spec)
    out = built.model(torch.ones(3, 4)).sum()
    out.backward()
    built.optimizer.step()
    target = tmp_path / "run"
    netspec.save(built, target, epoch=1)
    first = {k: v.clone() for k, v in built.model.state_dict().items()}

    # A crash after the old checkpoint was moved aside and before the new one was renamed in:
    real_replace = os.replace
    calls: list[tuple[str, str]] = []

    def crash_on_second(src: Any, dst: Any) -> None:
        calls.append((str(src), str(dst)))
        if str(dst) == str(target):
            raise OSError("power cut")
        real_replace(src, dst)

    with torch.no_grad():
        for p in built.model.parameters():
            p.add_(1.0)
    monkeypatch.setattr(os, "replace", crash_on_second)
    with pytest.raises(OSError, match="power cut"):
        netspec.save(built, target, epoch=2)
    monkeypatch.setattr(os, "replace", real_replace)
    assert not target.exists()
    resumed = netspec.load(target)
    assert resumed.checkpoint.epoch == 1
    assert any("a save was interrupted" in w.message for w in resumed.warnings)
    for name, tensor in first.items():
        assert torch.equal(resumed.model.state_dict()[name], tensor), name

    # The next save completes and replaces it; the momentum buffers come back too.
    netspec.save(built, target, epoch=2)
    again = netspec.load(target)
    assert again.checkpoint.epoch == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".run")) == []
    for name, tensor in built.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[name], tensor), name
    saved = [s["momentum_buffer"] for s in built.optimizer.state.values()]
    loaded = [s["momentum_buffer"] for s in again.optimizer.state.values()]
    assert all(torch.equal(a, b) for a, b in zip(saved, loaded, strict=True))


def test_directory_checkpoint_refuses_a_foreign_target(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, BASE.replace('"heda*"', "head")))
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    with pytest.raises(CheckpointError, match="a folder that is not a netspec checkpoint"):
        netspec.save(built, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "keep me"
    with pytest.raises(CheckpointError, match="not a netspec checkpoint directory"):
        netspec.load(tmp_path / "notes")


TIE_SPEC = """\
netspec: 1
model:
  type: Sequential
  layers:
    wte: {type: Embedding, num_embeddings: 10, embedding_dim: 4}
    lm_head: {type: Linear, in_features: 4, out_features: 10, bias: false}
tie:
  lm_head.weight: wte.weight
distributed: {strategy: fsdp, shard: [lm_head]}
"""


def test_a_tie_split_by_the_shard_patterns_is_reported_at_the_tie(tmp_path: Path) -> None:
    path = write_spec_file(tmp_path, TIE_SPEC)
    with pytest.raises(netspec.SpecError) as info:
        netspec.plan(path, world_size=2)
    assert_problem(
        info.value,
        file=path,
        line=7,
        path="tie",
        words=("tied parameters fall in different FSDP units", "'lm_head.weight' in unit 'lm_head'", "'<root>'"),
    )
    whole = write_spec_file(tmp_path, TIE_SPEC.replace("shard: [lm_head]", "shard: []"), "root.yaml")
    plan = netspec.plan(whole, world_size=2)
    assert plan.units[0].tensors == 1 and plan.parameters == 5 * 4 * 4  # the shared [10, 4] tensor, once


CONTAINERS = """\
netspec: 1
model:
  type: ModuleDict
  layers:
    blocks:
      type: ModuleList
      repeat: 2
      layer: {type: Linear, in_features: 4, out_features: 4}
    head: {type: Linear, in_features: 4, out_features: 2}
distributed:
  strategy: fsdp
  shard: [blocks, head]
"""


def test_a_unit_without_a_forward_is_refused_at_its_pattern_and_the_root_at_the_model(tmp_path: Path) -> None:
    """fully_shard raises a bare ValueError for a ModuleList or ModuleDict: netspec says where, before sharding."""
    path = write_spec_file(tmp_path, CONTAINERS)
    with pytest.raises(netspec.SpecError) as info:
        netspec.plan(path, world_size=2)
    shown = assert_problem(
        info.value, file=path, line=12, path="distributed.shard.0", words=("FSDP cannot shard 'blocks'", "ModuleList")
    )
    assert "'blocks.*' rather than 'blocks'" in shown
    assert_problem(info.value, file=path, line=3, path="model.type", words=("the root model", "ModuleDict", "Graph"))
    assert len(info.value.problems) == 2  # head (a Linear) is fine
