"""The summary at torchinfo's level: chosen columns, per-layer activation memory checked against a hand
computation, Keras's "connected to" for Graph children, optimizer groups as patterns, the training
footer, and JSON carrying everything the table shows."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import netspec
from netspec.summary import COLUMNS, summarize_built

SMALL_CNN = """
    netspec: 1
    name: small_cnn
    input: {shape: [3, 16, 16]}
    model:
      type: Sequential
      layers:
        conv: {type: Conv2d, out_channels: 8, kernel_size: 3, padding: 1}
        relu: ReLU
        pool: {type: MaxPool2d, kernel_size: 2}
        flat: Flatten
        fc: {type: Linear, out_features: 10}
    """

# Per sample, float32: conv 8x16x16, relu the same, pool 8x8x8, flatten 512, fc 10 values.
HAND_BYTES = {"conv": 8 * 16 * 16 * 4, "relu": 8 * 16 * 16 * 4, "pool": 8 * 8 * 8 * 4, "flat": 512 * 4, "fc": 10 * 4}


def test_activation_memory_matches_a_hand_computation(write_spec: Callable[..., Path]) -> None:
    built = netspec.build(write_spec(SMALL_CNN), device="meta")
    for columns in (("memory",), ("input", "memory")):  # from inferred shapes, and from a meta trace
        summary = summarize_built(built, columns=columns)
        by_name = {r.name: r for r in summary.rows}
        assert {n: by_name[n].memory for n in HAND_BYTES} == HAND_BYTES
        assert summary.forward_bytes == sum(HAND_BYTES.values()) == 20_520
        assert by_name[""].memory == 20_520  # the model row sums its layers
        table = summary.to_table()
        assert "Forward pass size: 20.0 KB (per sample, layer outputs)" in table
        assert "Forward/backward pass size: 40.1 KB (per sample)" in table


def test_columns_choose_what_the_table_shows(write_spec: Callable[..., Path]) -> None:
    built = netspec.build(write_spec(SMALL_CNN), device="meta")
    table = summarize_built(built, columns=("input", "kernel", "params")).to_table()
    header = table.splitlines()[1].split()
    assert header == ["Layer", "(type)", "Input", "shape", "Kernel", "Params"]
    conv = next(line for line in table.splitlines() if line.strip().startswith("conv (Conv2d)"))
    assert conv.split() == ["conv", "(Conv2d)", "[B,", "3,", "16,", "16]", "[3,", "3]", "224"]
    pool = next(line for line in table.splitlines() if line.strip().startswith("pool"))
    assert pool.split()[-6:] == ["[B,", "8,", "16,", "16]", "[2]", "-"]
    with pytest.raises(ValueError, match="unknown summary column 'outptu'"):
        summarize_built(built, columns=("outptu",))


def test_connected_to_lists_what_feeds_each_graph_child() -> None:
    built = netspec.build(Path(__file__).parents[1] / "specs" / "resnet18.yaml", device="meta")
    summary = summarize_built(built, depth=3, columns=("connected",))
    connected = {r.name: r.connected for r in summary.rows}
    assert connected["conv1"] == ["x"]
    assert connected["layer1"] == ["maxpool"]
    assert connected["fc"] == ["flatten"]  # a statement function, by its name
    assert connected["layer2.0.downsample"] == ["x"]  # the shortcut reads the block's input
    assert connected["layer1"] and connected["layer1.0.conv1"] == ["x"]
    assert connected["layer1.0.relu"] == ["bn1", "add"]  # called twice: after bn1, and on h + x


def test_training_footer_groups_as_patterns_and_short_repr(write_spec: Callable[..., Path]) -> None:
    path = write_spec("""
        netspec: 1
        input: {shape: [8]}
        model:
          type: Sequential
          layers:
            blocks:
              type: Sequential
              repeat: 6
              layer:
                type: Sequential
                layers:
                  norm1: LayerNorm
                  fc: {type: Linear, out_features: 8}
            head: {type: Linear, out_features: 2}
        freeze: [{type: LayerNorm, eval: true}]
        optimizer:
          type: AdamW
          lr: 1.0e-3
          groups: [{params: "head.*", lr_mult: 10}]
          clip_grad: {max_norm: 1.0}
        scheduler: {type: CosineAnnealingLR, T_max: 100, interval: step, warmup: {steps: 10}}
        loss: {type: CrossEntropyLoss, label_smoothing: 0.1}
        average: {type: ema, decay: 0.999}
        eval: [head]
        """)
    built = netspec.build(path, device="meta")
    summary = summarize_built(built)
    lines = summary.footer_lines()
    text = "\n".join(lines)
    assert "Group 0: lr=0.01 weight_decay=0.01 params=18  head" in text
    assert "Group 1: lr=0.001" in text
    footer = dict(summary.footer)
    assert footer["Scheduler"] == "CosineAnnealingLR(T_max=100), stepped per step; warm-up 10 steps from 0.01× lr"
    assert footer["Gradient clipping"] == "norm ≤ 1 (L2)"
    assert footer["Loss"] == "CrossEntropyLoss(label_smoothing=0.1)"
    assert footer["Eval mode"] == "*.norm1, head"  # seven modules: one pattern for the six norms, and head
    assert footer["Averaging"] == "ema(decay=0.999)"
    shown = repr(built.training)
    assert len(shown) < 200, shown
    assert shown.startswith("TrainingSetup(optimizer=AdamW (2 groups), scheduler=SequentialLR per step")
    assert "clip=norm ≤ 1 (L2)" in shown and "frozen=12 tensors" in shown and "eval=7 modules" in shown


def test_ties_are_in_the_footer() -> None:
    import torch.nn as nn

    from netspec.io.checkpoint import tied_groups

    emb, head = nn.Embedding(10, 4), nn.Linear(4, 10, bias=False)
    head.weight = emb.weight
    model = nn.ModuleDict({"wte": emb, "lm_head": head})
    assert tied_groups(model) == [["wte.weight", "lm_head.weight"]]


def test_json_carries_everything_the_table_shows(
    cli: Callable[..., tuple[int, str, str]], write_spec: Callable[..., Path]
) -> None:
    path = write_spec(SMALL_CNN + "optimizer: {type: SGD, lr: 0.1, clip_grad: {max_norm: 5.0}}\n")
    all_columns = ",".join(COLUMNS)
    code, table, _ = cli("build", path, "--columns", all_columns)
    assert code == 0
    code, out, _ = cli("build", path, "--columns", all_columns, "--format", "json")
    data = json.loads(out)
    assert data["columns"] == list(COLUMNS)
    conv = next(r for r in data["layers"] if r["name"] == "conv")
    assert conv["input_shape"] == ["B", 3, 16, 16] and conv["output_shape"] == ["B", 8, 16, 16]
    assert conv["kernel"] == [3, 3] and conv["memory"] == 8192 and conv["params"] == 224
    assert data["totals"]["forward_bytes_per_sample"] == 20_520
    assert data["totals"]["forward_backward_bytes_per_sample"] == 41_040
    assert data["training"] == {"Gradient clipping": "norm ≤ 5 (L2)"}
    assert "Gradient clipping: norm ≤ 5 (L2)" in table
    assert len(data["optimizer_groups"]) == 1


def test_unknown_column_is_a_usage_error(
    cli: Callable[..., tuple[int, str, str]], write_spec: Callable[..., Path]
) -> None:
    code, out, err = cli("build", write_spec(SMALL_CNN), "--columns", "params,memroy")
    assert code == 2 and out == ""
    assert "--columns: unknown column 'memroy'; did you mean 'memory'?" in err
