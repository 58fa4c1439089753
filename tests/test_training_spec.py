"""The training set-up end to end: from a spec file to a model, optimizer, scheduler and loss."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from specfiles import write_spec_file

import netspec
from netspec import SpecError
from netspec.cli.main import main

SPEC = """
netspec: 1
seed: 0
input: {shape: [3, 16, 16]}
model:
  type: Sequential
  layers:
    features:
      type: Sequential
      layers:
        conv1: {type: Conv2d, out_channels: 8, kernel_size: 3, padding: 1}
        bn1: BatchNorm2d
        relu1: ReLU
        conv2: {type: Conv2d, out_channels: 8, kernel_size: 3, padding: 1}
        bn2: BatchNorm2d
        pool: {type: AdaptiveAvgPool2d, output_size: 1}
    flatten: Flatten
    classifier:
      type: Sequential
      layers:
        fc1: {type: Linear, out_features: 16}
        fc3: {type: Linear, out_features: 4}
init:
  - {type: [Conv2d, Linear], weight: kaiming_normal, bias: zeros}
  - {type: BatchNorm2d, weight: ones, bias: zeros}
  - {match: "classifier.fc3.*", fn: xavier_uniform}
freeze:
  - features.conv1
  - {type: BatchNorm2d, eval: true}
optimizer:
  type: SGD
  lr: 0.01
  momentum: 0.9
  weight_decay: 1.0e-4
  no_decay: [bias, norm]
  groups:
    - {params: "features.*", lr: 0.001}
    - {params: "classifier.*", lr_mult: 10}
  clip_grad: {max_norm: 1.0}
scheduler: {type: StepLR, step_size: 10, gamma: 0.1}
loss: {type: CrossEntropyLoss, weight: [1.0, 2.0, 1.0, 1.0], label_smoothing: 0.1}
"""


def write(tmp_path: Path, text: str = SPEC) -> Path:
    return write_spec_file(tmp_path, text, "train.yaml")


def test_spec_builds_model_optimizer_scheduler_and_loss(tmp_path: Path) -> None:
    built = netspec.load(write(tmp_path))
    model, optimizer, scheduler = built
    assert isinstance(optimizer, torch.optim.SGD)
    assert isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert isinstance(built.loss, nn.CrossEntropyLoss)
    assert torch.equal(built.loss.weight, torch.tensor([1.0, 2.0, 1.0, 1.0]))
    assert not model.features.conv1.weight.requires_grad
    in_groups = [id(p) for g in optimizer.param_groups for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(in_groups) == sorted(trainable) and len(set(in_groups)) == len(in_groups)
    lrs = {
        n: g["lr"]
        for g in optimizer.param_groups
        for n, p in model.named_parameters()
        if any(p is q for q in g["params"])
    }
    assert lrs["features.conv2.weight"] == pytest.approx(0.001)
    assert lrs["classifier.fc1.weight"] == pytest.approx(0.1)
    decay = {
        n: g["weight_decay"]
        for g in optimizer.param_groups
        for n, p in model.named_parameters()
        if any(p is q for q in g["params"])
    }
    assert decay["classifier.fc1.bias"] == 0 and decay["classifier.fc1.weight"] == pytest.approx(1e-4)


def test_training_steps_leave_frozen_tensors_and_bn_statistics_alone(tmp_path: Path) -> None:
    built = netspec.load(write(tmp_path))
    model, optimizer, _ = built
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for _ in range(5):
        x, y = torch.randn(4, 3, 16, 16), torch.randint(0, 4, (4,))
        optimizer.zero_grad()
        built.loss(model(x), y).backward()
        norm = built.clip_gradients()
        assert norm is not None
        optimizer.step()
    after = model.state_dict()
    assert torch.equal(after["features.conv1.weight"], before["features.conv1.weight"])
    assert torch.equal(after["features.bn1.running_mean"], before["features.bn1.running_mean"])
    assert not model.features.bn1.training
    assert not torch.equal(after["classifier.fc1.weight"], before["classifier.fc1.weight"])


def test_explain_shows_init_rule_group_and_frozen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(write(tmp_path)), "--explain"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("features.conv1.weight"))
    assert "train.yaml:" in line and "yes" in line  # set by the init rule, frozen
    fc3 = next(row for row in out.splitlines() if row.startswith("classifier.fc3.weight"))
    assert "train.yaml:25" in fc3  # the match rule on line 25 overrides the type rule


def test_summary_lists_optimizer_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(write(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "Group 0: lr=0.001" in out
    assert "Frozen params: 256" in out  # conv1 (3*8*9 + 8) and both BatchNorms (2 * 16)


@pytest.mark.parametrize(
    ("old", "new", "line", "wanted"),
    [
        ('"features.*", lr: 0.001', '"featurs.*", lr: 0.001', 36, "features"),
        ("type: SGD", "type: SDG", 30, "did you mean 'SGD'"),
        ("weight: kaiming_normal", "weight: kaiming_norml", 23, "kaiming_normal"),
        ("type: StepLR, step_size: 10", "type: StepLR, step_sise: 10", 39, "step_size"),
        ("- features.conv1", "- features.conv7", 27, "features.conv1"),
    ],
)
def test_training_errors_are_found_by_read(tmp_path: Path, old: str, new: str, line: int, wanted: str) -> None:
    path = write(tmp_path, SPEC.replace(old, new))
    with pytest.raises(SpecError) as err:
        netspec.read(path)
    assert f"train.yaml:{line}:" in str(err.value)
    assert wanted in str(err.value)


def test_vars_work_in_training_sections(tmp_path: Path) -> None:
    text = SPEC.replace("seed: 0", "seed: 0\nvars: {base_lr: 0.05}").replace("lr: 0.01", "lr: ${base_lr}")
    optimizer = netspec.load(write(tmp_path, text)).optimizer
    assert any(g["lr"] == pytest.approx(0.5) for g in optimizer.param_groups)  # classifier: lr_mult 10
