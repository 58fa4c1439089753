"""Training set-up: every kind of bad input gives a located SpecError saying what to fix."""

from __future__ import annotations

import pickle
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

import netspec
from netspec.errors import Problem, SpecError
from netspec.frontend.source import load_text
from netspec.training import (
    FreezeRule,
    InitRule,
    OptimizerSpec,
    SchedulerSpec,
    TrainingSetup,
    apply_init,
    build_scheduler,
    check_training,
    setup_training,
)


def make_model() -> nn.Sequential:
    conv1, conv10 = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3)
    features = nn.Sequential(OrderedDict(conv1=conv1, bn1=nn.BatchNorm2d(8), conv10=conv10))
    head = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 16), fc2=nn.Linear(16, 4)))
    parts = OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), head=head)
    return nn.Sequential(parts)


def sections(text: str) -> tuple[Any, dict[str, Any]]:
    source = load_text(textwrap.dedent(text), "spec.yaml")
    data: dict[str, Any] = source.data
    return source, {
        "init": [InitRule.model_validate(r) for r in data["init"]] if "init" in data else None,
        "freeze": TypeAdapter(list[FreezeRule]).validate_python(data["freeze"]) if "freeze" in data else None,
        "optimizer": OptimizerSpec.model_validate(data["optimizer"]) if "optimizer" in data else None,
        "scheduler": SchedulerSpec.model_validate(data["scheduler"]) if "scheduler" in data else None,
    }


def build(text: str, base_dir: Path | None = None) -> TrainingSetup:
    source, parts = sections(text)
    return setup_training(make_model(), **parts, source=source, base_dir=base_dir or Path("."))


def problems(text: str, base_dir: Path | None = None) -> list[Problem]:
    with pytest.raises(SpecError) as info:
        build(text, base_dir)
    return list(info.value.problems)


def one(text: str, base_dir: Path | None = None) -> str:
    found = problems(text, base_dir)
    assert len(found) == 1, [p.format() for p in found]
    return found[0].format()


def test_unknown_init_function() -> None:
    message = one("init:\n  - {type: Conv2d, weight: kaiming_normall}\n")
    assert message.startswith("spec.yaml:2:")
    assert "init.0.weight: unknown init function 'kaiming_normall'" in message
    assert "torch.nn.init" in message and "did you mean 'kaiming_normal'" in message
    message = one("init:\n  - {match: head.fc2, fn: xavier_uniform_}\n")
    assert "init.0.fn" in message and "did you mean 'xavier_uniform'" in message


def test_init_arguments_checked_against_signature() -> None:
    message = one("init:\n  - {match: head.fc2, fn: normal, stdd: 0.1}\n")
    assert "init.0.stdd: init function 'normal' has no argument 'stdd'" in message and "'std'" in message
    message = one("init:\n  - {type: Linear, weight: {fn: constant}}\n")
    assert "init.0.weight" in message and "needs argument 'val'" in message
    message = one("init:\n  - {type: Linear, weight: {fn: normal, std: '0.1'}}\n")
    assert "init.0.weight.std" in message and "normal.std: expected number, got str '0.1'" in message
    message = one("init:\n  - {type: Linear, weight: {fn: kaiming_normal, mode: fan_avg}}\n")
    assert "one of 'fan_in', 'fan_out'" in message and "str 'fan_avg'" in message
    message = one("init:\n  - {type: Linear, std: 0.1}\n")
    assert "init.0.std" in message and "must be an init function name" in message and "beside" in message


def test_init_selectors_checked_against_the_model() -> None:
    message = one("init:\n  - {type: Conv2D, weight: zeros}\n")
    assert "init.0.type: unknown layer type 'Conv2D'" in message and "did you mean 'Conv2d'" in message
    message = one("init:\n  - {type: Linear, wieght: zeros}\n")
    assert "named 'wieght'" in message and "did you mean 'weight'" in message
    message = one("init:\n  - {match: 'featurs.*', weight: zeros}\n")
    assert "init.0.match" in message and "'featurs.*'" in message and "'features'" in message
    assert "did you mean 'features.*'" in message
    message = one("init:\n  - {weight: zeros}\n")
    assert "neither type: nor match:" in message
    message = one("init:\n  - {type: LayerNorm, weight: zeros}\n")
    assert "selects no module" in message


def test_from_rule_keys() -> None:
    message = one("init:\n  - {from: w.pt, type: Linear}\n")
    assert "init.0.type" in message and "from: rule" in message
    message = one("init:\n  - {type: Linear, weight: zeros, strip_prefix: module.}\n")
    assert "init.0.strip_prefix" in message and "only applies to a from: rule" in message


def test_from_missing_file(tmp_path: Path) -> None:
    message = one("init:\n  - {from: nowhere/pretrained.pt}\n", tmp_path)
    assert "init.0.from: file not found" in message and str(tmp_path / "nowhere" / "pretrained.pt") in message
    assert "relative to the spec's folder" in message


def test_from_non_checkpoint_files(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("this is not a checkpoint\n")
    message = one("init:\n  - {from: notes.pt}\n", tmp_path)
    assert "init.0.from: " in message and "notes.pt is not a PyTorch checkpoint" in message
    assert "torch.save(model.state_dict(), path)" in message  # the hint
    torch.save([1, 2, 3], tmp_path / "list.pt")
    message = one("init:\n  - {from: list.pt}\n", tmp_path)
    assert "list.pt holds a list, not a state_dict" in message
    torch.save({"epoch": 3, "note": "x"}, tmp_path / "meta.pt")
    message = one("init:\n  - {from: meta.pt}\n", tmp_path)
    assert "meta.pt holds a dict with keys 'epoch', 'note', not a state_dict" in message


def test_from_refuses_arbitrary_pickles(tmp_path: Path) -> None:
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(OrderedDict(w=Path("x")), protocol=2))
    message = one("init:\n  - {from: evil.pt}\n", tmp_path)
    assert "init.0.from: refusing to load" in message and "never executes code" in message


def test_from_strip_prefix_and_match_that_select_nothing(tmp_path: Path) -> None:
    torch.save(make_model().state_dict(), tmp_path / "w.pt")
    message = one("init:\n  - {from: w.pt, strip_prefix: module.}\n", tmp_path)
    assert "init.0.strip_prefix" in message and "starts none" in message
    message = one("init:\n  - {from: w.pt, match: 'backbone.*'}\n", tmp_path)
    assert "init.0.match" in message and "'backbone.*'" in message


def test_unknown_optimizer() -> None:
    message = one("optimizer: {type: ADAM, lr: 0.1}")
    assert "optimizer.type: unknown optimizer 'ADAM'" in message and "torch.optim" in message
    assert "did you mean 'Adam'" in message


def test_wrong_optimizer_arguments() -> None:
    message = one("optimizer: {type: SGD, lr: 0.1, momentun: 0.9}")
    assert "optimizer.momentun: optimizer SGD has no argument 'momentun'" in message
    assert "did you mean 'momentum'" in message
    message = one("optimizer: {type: Adam, lr: 0.1, betas: 0.9}")
    assert "optimizer.betas" in message and "Adam.betas: expected [number, number], got float 0.9" in message
    message = one("optimizer: {type: SGD, lr: -1.0}")
    assert "SGD rejected its settings" in message and "Invalid learning rate" in message
    message = one("optimizer: {type: SGD, lr: 0.1, groups: [{params: head, nesterow: true}]}")
    assert "optimizer.groups.0.nesterow" in message and "did you mean 'nesterov'" in message
    message = one("optimizer: {type: LBFGS, no_decay: [bias]}")
    assert "optimizer.no_decay" in message and "LBFGS takes no weight_decay" in message


def test_patterns_matching_nothing_name_closest() -> None:
    message = one("freeze: [features.conv2]")
    assert "freeze.0: pattern 'features.conv2' matches no parameter or module name" in message
    assert "'features.conv1'" in message or "'features.conv10'" in message
    message = one("freeze: ['head.*', 'decode_head.*']")
    assert "freeze.1" in message and "'decode_head.*'" in message
    message = one("optimizer: {type: SGD, groups: [{params: head.fc1}, {params: [head.fc2, haed.fc3]}]}")
    assert "optimizer.groups.1.params.1: pattern 'haed.fc3'" in message and "'head.fc" in message
    message = one("optimizer: {type: SGD, lr: 0.1, no_decay: [biass]}")
    assert "optimizer.no_decay.0" in message and "did you mean 'bias'" in message
    message = one("freeze: [{type: BatchNorm2d, match: 'head.*'}]")
    assert "freeze.0.type: no module of type BatchNorm2d matching 'head.*'" in message


def test_same_parameter_forced_into_two_groups() -> None:
    text = """
    optimizer:
      type: SGD
      lr: 0.1
      groups:
        - {params: "head.*", lr: 0.01}
        - {params: features, lr: 0.02}
        - {params: head.fc1, lr: 0.5}
    """
    message = one(text)
    assert "optimizer.groups.2.params" in message
    assert "group 2 matches only parameters already claimed by group 0" in message
    assert "head.fc1.weight" in message


def test_group_of_only_frozen_parameters_and_nothing_trainable() -> None:
    message = one("freeze: [head]\noptimizer: {type: SGD, lr: 0.1, groups: [{params: head.fc1}]}")
    assert "group 0 matches only frozen parameters" in message
    message = one("freeze: ['*']\noptimizer: {type: SGD, lr: 0.1}")
    assert "nothing to train" in message


def test_scheduler_without_optimizer(tmp_path: Path) -> None:
    """One test for the three ways in: a spec file (located), the training set-up, the scheduler builder."""
    spec = tmp_path / "train.yaml"
    spec.write_text(
        "netspec: 1\nmodel: {type: Linear, in_features: 2, out_features: 2}\nscheduler: {type: StepLR, step_size: 1}\n"
    )
    with pytest.raises(SpecError) as info:
        netspec.read(spec)
    [problem] = info.value.problems
    assert str(problem).startswith(f"{spec}:3:1: scheduler: a scheduler needs an optimizer")
    assert problem.hint is not None and "add optimizer:" in problem.hint
    message = one("scheduler: {type: StepLR, step_size: 10}")
    assert "scheduler: a scheduler needs an optimizer" in message and "add optimizer:" in message
    with pytest.raises(SpecError, match="needs an optimizer"):
        build_scheduler(None, SchedulerSpec.model_validate({"type": "StepLR", "step_size": 1}), None)


def test_unknown_scheduler_and_bad_arguments() -> None:
    message = one("optimizer: {type: SGD, lr: 0.1}\nscheduler: {type: CosineAnnealing, T_max: 10}")
    assert "scheduler.type: unknown scheduler 'CosineAnnealing'" in message
    assert "did you mean 'CosineAnnealingLR'" in message
    message = one("optimizer: {type: SGD, lr: 0.1}\nscheduler: {type: StepLR, stepsize: 10}")
    assert "scheduler.stepsize" in message and "did you mean 'step_size'" in message
    message = one("optimizer: {type: SGD, lr: 0.1}\nscheduler: {type: StepLR, gamma: 0.5}")
    assert "scheduler: scheduler StepLR needs argument 'step_size', which is missing" in message
    message = one("optimizer: {type: SGD, lr: 0.1}\nscheduler: {type: LambdaLR}")
    assert "cannot be configured from a spec" in message
    message = one("optimizer: {type: SGD, lr: 0.1}\nscheduler: {type: ReduceLROnPlateau, warmup: {steps: 2}}")
    assert "scheduler.warmup" in message


def test_all_problems_are_reported_together() -> None:
    text = """
    init:
      - {type: Linear, weight: zero}
    freeze: [featurs]
    optimizer: {type: SGDD, lr: 0.1}
    scheduler: {type: StepLR}
    """
    found = problems(text)
    paths = [p.path for p in found]
    assert ("init", 0, "weight") in paths and ("freeze", 0) in paths and ("optimizer", "type") in paths
    assert ("scheduler",) in paths  # StepLR needs step_size
    assert all(p.location is not None for p in found)


def test_check_training_finds_model_independent_problems() -> None:
    source, parts = sections("init: [{type: Linear, weight: zero}]\nscheduler: {type: StepLR, step_size: 1}")
    found = check_training(**parts, source=source)
    assert [p.path for p in found] == [("init", 0, "weight"), ("scheduler",)]
    source, parts = sections("init: [{type: Linear, weight: zeros}]\noptimizer: {type: SGD, lr: 0.1}")
    assert check_training(**parts, source=source) == []


def test_apply_init_raises_spec_error_without_a_source() -> None:
    with pytest.raises(SpecError) as info:
        rule = InitRule.model_validate({"type": "Linear", "bias": "orthogonal"})
        apply_init(make_model(), [rule], None, Path("."))
    assert info.value.problems[0].path == ("init", 0, "bias")
    assert "'head.fc1.bias' of shape [16]" in str(info.value)
