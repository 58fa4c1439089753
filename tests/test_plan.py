"""``netspec.plan`` / ``netspec plan``: per-rank bytes checked against figures computed by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from specfiles import write_spec_file

import netspec

LLAMA_70B = ROOT / "specs" / "scale" / "llama_70b.yaml"
LLAMA = ROOT / "specs" / "scale" / "llama.yaml"

SMALL = """\
netspec: 1
model:
  type: Sequential
  layers:
    - {type: Linear, in_features: 10, out_features: 6}
    - {type: BatchNorm1d, num_features: 6}
    - ReLU
    - {type: Linear, in_features: 6, out_features: 3}
freeze: ["3.bias"]
optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
distributed: {strategy: fsdp, shard: ["0"]}
"""


def small(tmp_path: Path, text: str = SMALL) -> Path:
    return write_spec_file(tmp_path, text)


def test_small_fsdp_plan_matches_bytes_counted_by_hand(tmp_path: Path) -> None:
    plan = netspec.plan(small(tmp_path), world_size=4)
    units = {u.name: u for u in plan.units}
    assert list(units) == ["0", ""]  # the shard unit, then the root
    # unit "0": weight [6, 10] -> ceil(6/4)=2 rows = 20 floats; bias [6] -> 2 floats: 22 * 4 bytes
    assert (units["0"].parameters, units["0"].gradients, units["0"].optimizer) == (88, 88, 88)  # SGD momentum
    assert units["0"].all_gather == (8 * 10 + 8) * 4  # dim 0 padded to 8 rows, gathered whole
    # root: BatchNorm weight and bias [6] -> 2 + 2; Linear [3, 6] -> 1 row = 6; its bias [3] -> 1 (frozen)
    assert units[""].parameters == (2 + 2 + 6 + 1) * 4
    assert units[""].gradients == (2 + 2 + 6) * 4  # the frozen bias has no gradient...
    assert units[""].optimizer == (2 + 2 + 6) * 4  # ...and no momentum buffer
    assert units[""].all_gather == (8 + 8 + 4 * 6 + 4) * 4
    assert plan.buffers == 6 * 4 + 6 * 4 + 8  # running mean, var (float32), num_batches_tracked (int64)
    assert plan.largest_all_gather == 352
    assert plan.total == 88 * 3 + 44 + 40 + 40 + 56 + 352


@pytest.mark.parametrize(
    ("optimizer", "per_element", "scalars"),
    [
        ("{type: SGD, lr: 0.1}", 0, 0),
        ("{type: AdamW, lr: 0.001}", 2, 1),
        ("{type: Adam, lr: 0.001, amsgrad: true}", 3, 1),
        ("{type: RMSprop, lr: 0.01, momentum: 0.9, centered: true}", 3, 1),
        ("{type: Adagrad, lr: 0.01}", 1, 1),
        ("{type: NAdam, lr: 0.001}", 2, 2),
    ],
)
def test_optimizer_state_by_type(tmp_path: Path, optimizer: str, per_element: int, scalars: int) -> None:
    text = SMALL.replace("optimizer: {type: SGD, lr: 0.1, momentum: 0.9}", f"optimizer: {optimizer}")
    plan = netspec.plan(small(tmp_path, text), world_size=4)
    trainable = {"0": (22, 2), "": (10, 3)}  # (local elements, trainable tensors) per unit
    for unit in plan.units:
        elements, tensors = trainable[unit.name]
        assert unit.optimizer == elements * 4 * per_element + tensors * 4 * scalars, (optimizer, unit.name)
    assert plan.optimizer == optimizer.split(",")[0].removeprefix("{type: ")


def test_ddp_and_no_section_hold_everything_on_every_rank(tmp_path: Path) -> None:
    ddp = netspec.plan(small(tmp_path, SMALL.replace("strategy: fsdp", "strategy: ddp")), world_size=8)
    assert [u.name for u in ddp.units] == [""] and ddp.largest_all_gather == 0
    assert ddp.parameters == (60 + 6 + 6 + 6 + 18 + 3) * 4
    plain = SMALL.replace('distributed: {strategy: fsdp, shard: ["0"]}\n', "")
    none = netspec.plan(small(tmp_path, plain), world_size=8)
    assert none.strategy == "none" and none.parameters == ddp.parameters
    assert [w.message for w in none.warnings] == [
        "the spec has no distributed: section: every rank holds the whole model (as with ddp)"
    ]


def test_reshard_after_forward_false_keeps_every_unit_gathered(tmp_path: Path) -> None:
    text = SMALL.replace('shard: ["0"]}', 'shard: ["0"], reshard_after_forward: false}')
    plan = netspec.plan(small(tmp_path, text), world_size=4)
    assert plan.transient == 352 + 176


def llama_70b_by_hand(world: int) -> dict[str, int]:
    """Llama-3-70B's figures from its published dimensions, with FSDP at ``world`` ranks, float32
    parameters, AdamW (two moments + a float32 step per tensor), bfloat16 all-gathers."""
    dim, layers, ffn, heads, kv, vocab = 8192, 80, 28672, 64, 8, 128256
    kv_dim = dim // heads * kv
    block = [dim * dim, kv_dim * dim, kv_dim * dim, dim * dim, ffn * dim, dim * ffn, ffn * dim, dim, dim]
    block_params = sum(block)
    embed = vocab * dim
    total = layers * block_params + 2 * embed + dim
    assert all(shape % world == 0 for shape in (dim, kv_dim, ffn, vocab))  # no padding at world 8
    tensors = layers * len(block) + 3
    return {
        "elements": total,
        "parameters": total * 4 // world,
        "optimizer": 2 * total * 4 // world + 4 * tensors,
        "block_gather": block_params * 2,
        "largest_gather": embed * 2,  # tok_embeddings and output are units of their own
    }


def test_llama_70b_at_world_8() -> None:
    expected = llama_70b_by_hand(8)
    assert expected["elements"] == 70_553_706_496  # Llama 3 70B's parameter count
    plan = netspec.plan(LLAMA_70B, world_size=8)
    assert plan.strategy == "fsdp" and plan.optimizer == "AdamW"
    assert sum(u.elements for u in plan.units) == expected["elements"]
    assert plan.parameters == plan.gradients == expected["parameters"]
    assert plan.optimizer_state == expected["optimizer"]
    units = {u.name: u for u in plan.units}
    assert len(units) == 80 + 3
    assert units["layers.0"].all_gather == units["layers.79"].all_gather == expected["block_gather"]
    assert plan.largest_all_gather == expected["largest_gather"]
    assert plan.total == 2 * expected["parameters"] + expected["optimizer"] + expected["largest_gather"]


def test_cli_plan_table_json_and_memory_warning(cli: Any, tmp_path: Path) -> None:
    code, out, err = cli("plan", LLAMA_70B, "--world", "8", "--device-memory", "80GiB")
    assert code == 0
    assert "llama3-70b: fsdp at world size 8, optimizer AdamW" in out
    assert "layers.79" in out and "tok_embeddings" in out
    total = netspec.plan(LLAMA_70B, world_size=8).total
    assert f"a rank needs {total / 2**30:.2f} GiB" in err and "but the device has 80.00 GiB" in err
    assert "llama.yaml:" in err  # located where distributed: is written (the base file)
    code, out, err = cli("plan", small(tmp_path), "--world", "4", "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["per_rank"]["parameters"] == 132 and data["units"][0]["name"] == "0"
    code, _, err = cli("plan", small(tmp_path), "--world", "0")
    assert code == 2 and "--world must be at least 1" in err
    code, _, err = cli("plan", small(tmp_path), "--world", "2", "--device-memory", "12 parsecs")
    assert code == 2 and "unknown unit 'parsecs'" in err


def test_llama_spec_builds_small_and_runs() -> None:
    overrides = {"vars.dim": 64, "vars.layers": 2, "vars.heads": 4, "vars.kv_heads": 2, "vars.ffn": 96}
    built = netspec.build(LLAMA, overrides={**overrides, "vars.vocab": 100})
    import torch

    logits = built.model(torch.randint(0, 100, (2, 16)))
    assert logits.shape == (2, 16, 100)
    kv_out = built.model.layers[0].attention.wk.out_features
    assert kv_out == 64 // 4 * 2  # grouped-query attention: 2 key/value heads of 16
    assert math.isfinite(float(logits.detach().sum()))
