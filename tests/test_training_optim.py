"""Training set-up: optimizer groups, no-decay, clipping, schedulers, explain and the spec models."""

from __future__ import annotations

import json
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter, ValidationError
from torch import nn

from netspec.frontend.source import load_text
from netspec.training import (
    FreezeRule,
    InitRule,
    OptimizerSpec,
    SchedulerSpec,
    TrainingSetup,
    build_optimizer,
    build_scheduler,
    compress_names,
    explain_rows,
    format_explain,
    group_summary,
    optimizer_classes,
    scheduler_classes,
    setup_training,
)


def make_model() -> nn.Sequential:
    conv1, conv2, gn = nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3), nn.GroupNorm(2, 8)
    features = nn.Sequential(OrderedDict(conv1=conv1, bn1=nn.BatchNorm2d(8), conv2=conv2, gn=gn))
    head = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 16), ln=nn.LayerNorm(16), fc2=nn.Linear(16, 4)))
    parts = OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), head=head)
    return nn.Sequential(parts)


def build(model: nn.Module, text: str) -> TrainingSetup:
    source = load_text(textwrap.dedent(text), "spec.yaml")
    data: dict[str, Any] = source.data
    return setup_training(
        model,
        init=[InitRule.model_validate(r) for r in data["init"]] if "init" in data else None,
        freeze=TypeAdapter(list[FreezeRule]).validate_python(data["freeze"]) if "freeze" in data else None,
        optimizer=OptimizerSpec.model_validate(data["optimizer"]) if "optimizer" in data else None,
        scheduler=SchedulerSpec.model_validate(data["scheduler"]) if "scheduler" in data else None,
        source=source,
        base_dir=Path("."),
    )


GROUPS = """
freeze: [features.conv1]
optimizer:
  type: SGD
  lr: 0.01
  momentum: 0.9
  weight_decay: 1.0e-4
  no_decay: [bias, norm]
  groups:
    - {params: "features.*", lr: 0.001}
    - {params: ["head.fc1", "head.ln"], lr_mult: 10, decay_mult: 0.5, momentum: 0.5}
  clip_grad: {max_norm: 20, norm_type: 2}
"""


def test_groups_partition_trainable_parameters_exactly() -> None:
    model = make_model()
    setup = build(model, GROUPS)
    assert setup.optimizer is not None
    params = dict(model.named_parameters())
    trainable = {n for n in params if n not in setup.frozen}
    seen: list[int] = [id(p) for g in setup.optimizer.param_groups for p in g["params"]]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(params[n]) for n in trainable}
    assert set(setup.group_of) == trainable
    for name, index in setup.group_of.items():
        assert any(p is params[name] for p in setup.optimizer.param_groups[index]["params"])
    assert setup.frozen == {"features.conv1.weight", "features.conv1.bias"}


def test_no_decay_bias_and_norm_get_zero_weight_decay() -> None:
    model = make_model()
    setup = build(model, GROUPS)
    assert setup.optimizer is not None
    groups = setup.optimizer.param_groups
    no_decay = {"features.bn1.weight", "features.gn.weight", "head.ln.weight"}
    for name, index in setup.group_of.items():
        wd = groups[index]["weight_decay"]
        if name.endswith(".bias") or name in no_decay:
            assert wd == 0, name
        else:
            assert wd > 0, name


def test_lr_mult_and_decay_mult_arithmetic() -> None:
    setup = build(make_model(), GROUPS)
    assert setup.optimizer is not None
    groups = setup.optimizer.param_groups

    def group(name: str) -> dict[str, Any]:
        return groups[setup.group_of[name]]

    assert group("features.conv2.weight")["lr"] == pytest.approx(0.001)
    assert group("features.conv2.weight")["weight_decay"] == pytest.approx(1e-4)
    assert group("head.fc1.weight")["lr"] == pytest.approx(0.1)
    assert group("head.fc1.weight")["weight_decay"] == pytest.approx(0.5e-4)
    assert group("head.fc1.weight")["momentum"] == 0.5
    assert group("head.fc2.weight")["lr"] == pytest.approx(0.01)  # default group
    assert group("head.fc2.weight")["momentum"] == 0.9
    assert group("head.fc2.bias")["weight_decay"] == 0
    assert setup.group_labels[setup.group_of["head.fc2.bias"]] == "default (no_decay)"


def test_lr_mult_multiplies_group_lr_too() -> None:
    text = "optimizer: {type: SGD, lr: 0.1, groups: [{params: head, lr: 0.5, lr_mult: 0.1}]}"
    setup = build(make_model(), text)
    assert setup.optimizer is not None
    assert setup.optimizer.param_groups[setup.group_of["head.fc1.weight"]]["lr"] == pytest.approx(0.05)


def test_first_match_wins_when_groups_overlap() -> None:
    text = "optimizer: {type: SGD, groups: [{params: head.fc1, lr: 1.0}, {params: 'head.*', lr: 2.0}]}"
    setup = build(make_model(), text)
    assert setup.optimizer is not None
    assert setup.optimizer.param_groups[setup.group_of["head.fc1.weight"]]["lr"] == 1.0
    assert setup.optimizer.param_groups[setup.group_of["head.fc2.weight"]]["lr"] == 2.0


def test_optimizer_arguments_are_converted_like_torch_expects() -> None:
    spec = OptimizerSpec.model_validate({"type": "AdamW", "lr": 1, "betas": [0.8, 0.9], "amsgrad": True})
    optimizer, group_of, clip = build_optimizer(make_model(), spec, set(), None)
    assert isinstance(optimizer, torch.optim.AdamW) and clip is None
    assert optimizer.defaults["betas"] == (0.8, 0.9) and optimizer.defaults["lr"] == 1.0
    assert len(group_of) == len(list(make_model().parameters()))


# torch.optim's optimizers and schedulers as its documentation lists them, written out by hand.
DOCUMENTED_OPTIMIZERS = {
    "ASGD", "Adadelta", "Adafactor", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "Muon", "NAdam", "RAdam",
    "RMSprop", "Rprop", "SGD", "SparseAdam",
}  # fmt: skip
DOCUMENTED_SCHEDULERS = {
    "ChainedScheduler", "ConstantLR", "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "CyclicLR",
    "ExponentialLR", "LambdaLR", "LinearLR", "MultiStepLR", "MultiplicativeLR", "OneCycleLR", "PolynomialLR",
    "ReduceLROnPlateau", "SequentialLR", "StepLR",
}  # fmt: skip


def test_optimizer_catalogue_is_torchs_optimizers_and_nothing_else() -> None:
    found = optimizer_classes()
    assert set(found) == DOCUMENTED_OPTIMIZERS
    assert all(found[name] is getattr(torch.optim, name) for name in found)
    # not optimizers: the base class, submodules and helpers that torch.optim also exports
    for name in ("Optimizer", "lr_scheduler", "swa_utils", "swap_in_optimizer_params_and_state"):
        assert name in torch.optim.__all__ and name not in found
    # torch's export list, less those four, is exactly the catalogue
    assert len(found) == len(torch.optim.__all__) - 4


def test_scheduler_catalogue_is_torchs_schedulers_and_nothing_else() -> None:
    found = scheduler_classes()
    assert set(found) == DOCUMENTED_SCHEDULERS
    assert all(found[name] is getattr(torch.optim.lr_scheduler, name) for name in found)
    assert "LRScheduler" not in found and "_LRScheduler" not in found  # base classes
    assert set(found) == set(torch.optim.lr_scheduler.__all__) - {"LRScheduler"}


def _loss_step(model: nn.Module, scale: float = 100.0) -> None:
    model.zero_grad()
    out = model(torch.randn(2, 3, 8, 8))
    (out.sum() * scale).backward()


def test_clip_grad_norm_returns_total_norm_and_clips() -> None:
    torch.manual_seed(0)
    model = make_model()
    setup = build(model, "optimizer: {type: SGD, lr: 0.1, clip_grad: {max_norm: 1.0}}")
    _loss_step(model)
    expected = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    total = setup.clip_gradients(model)
    assert total == pytest.approx(expected, rel=1e-5) and total > 1.0
    after = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()
    assert after == pytest.approx(1.0, rel=1e-4)


def test_clip_grad_inf_norm_and_value_clipping_and_none() -> None:
    torch.manual_seed(0)
    model = make_model()
    setup = build(model, "optimizer: {type: SGD, lr: 0.1, clip_grad: {max_norm: 0.5, norm_type: inf}}")
    _loss_step(model)
    largest = max(p.grad.abs().max().item() for p in model.parameters())
    assert setup.clip_gradients(model) == pytest.approx(largest)
    assert max(p.grad.abs().max().item() for p in model.parameters()) <= 0.5 + 1e-6
    setup = build(model, "optimizer: {type: SGD, lr: 0.1, clip_grad: {max_value: 0.01}}")
    _loss_step(model)
    assert setup.clip_gradients(model) is None
    assert max(p.grad.abs().max().item() for p in model.parameters()) <= 0.01
    setup = build(model, "optimizer: {type: SGD, lr: 0.1}")
    assert setup.clip is None and setup.clip_gradients(model) is None


def _lrs(setup: TrainingSetup, steps: int) -> list[float]:
    assert setup.optimizer is not None and setup.scheduler is not None
    values = []
    for _ in range(steps):
        values.append(setup.optimizer.param_groups[0]["lr"])
        setup.optimizer.step()
        setup.scheduler.step()
    return values


def test_warmup_then_step_lr_values() -> None:
    text = """
    optimizer: {type: SGD, lr: 0.1}
    scheduler:
      {type: StepLR, step_size: 2, gamma: 0.5, warmup: {steps: 3, start_factor: 0.01}, interval: step}
    """
    setup = build(make_model(), text)
    assert setup.scheduler_interval == "step"
    assert isinstance(setup.scheduler, torch.optim.lr_scheduler.SequentialLR)
    expected = [0.001, 0.034, 0.067, 0.1, 0.1, 0.05, 0.05, 0.025]
    assert _lrs(setup, 8) == pytest.approx(expected)


def test_warmup_alone_and_plain_scheduler() -> None:
    sgd = "optimizer: {type: SGD, lr: 1.0}\n"
    setup = build(make_model(), sgd + "scheduler: {warmup: {steps: 4, start_factor: 0.2}}")
    assert setup.scheduler_interval == "epoch"
    assert _lrs(setup, 6) == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    setup = build(make_model(), sgd + "scheduler: {type: MultiStepLR, milestones: [1, 3]}")
    assert _lrs(setup, 4) == pytest.approx([1.0, 0.1, 0.1, 0.01])
    setup = build(make_model(), sgd + "scheduler: {type: ReduceLROnPlateau, patience: 2}")
    assert isinstance(setup.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


def test_build_scheduler_without_spec_is_none() -> None:
    assert build_scheduler(None, None, None) == (None, "epoch")


def test_explain_rows_and_table() -> None:
    text = GROUPS.replace("freeze:", "init: [{type: Linear, weight: zeros}]\nfreeze:")
    setup = build(make_model(), text)
    rows = {row["name"]: row for row in explain_rows(setup)}
    assert list(rows) == [n for n, _ in make_model().named_parameters()]
    assert rows["features.conv1.weight"] == {
        "name": "features.conv1.weight", "shape": [8, 3, 3, 3], "init": "default", "frozen": True,
        "group": "-", "lr": "-", "weight_decay": "-",
    }  # fmt: skip
    fc1 = rows["head.fc1.weight"]
    assert fc1["init"] == "spec.yaml:2" and fc1["frozen"] is False
    assert fc1["lr"] == pytest.approx(0.1) and fc1["weight_decay"] == pytest.approx(5e-5)
    table = format_explain(explain_rows(setup)).splitlines()
    assert table[0].split() == ["name", "shape", "init", "frozen", "group", "lr", "weight_decay"]
    assert set(table[1]) <= {"-", " "}
    assert {line.index("[") for line in table[2:]} == {table[0].index("shape")}
    assert len(table) == 2 + len(rows)


def test_group_summary_compresses_members() -> None:
    setup = build(make_model(), "optimizer: {type: SGD, lr: 0.1, groups: [{params: features, lr: 0.5}]}")
    summary = group_summary(setup)
    assert [row["members"] for row in summary] == [["features"], ["head"]]
    assert summary[0]["lr"] == 0.5 and summary[0]["tensors"] == 8
    assert summary[0]["params"] == sum(p.numel() for p in make_model().features.parameters())
    names = ["a.0.weight", "a.0.bias", "a.1.weight", "a.1.bias", "a.2.weight", "a.2.bias", "b.weight"]
    assert compress_names(["a.0.bias", "a.1.bias", "a.2.bias"], names) == ["*.bias"]
    assert compress_names(names, names) == ["*"]
    assert compress_names(["a.0.weight", "a.0.bias", "b.weight"], names) == ["a.0", "b"]


def test_spec_models_generate_json_schema_and_are_strict() -> None:
    for model in (InitRule, OptimizerSpec, SchedulerSpec):
        json.dumps(model.model_json_schema())
    json.dumps(TypeAdapter(list[FreezeRule]).json_schema())
    with pytest.raises(ValidationError):
        OptimizerSpec.model_validate({"type": "SGD", "lr": "0.1"})
    with pytest.raises(ValidationError):
        SchedulerSpec.model_validate({"type": "StepLR", "warmup": {"steps": "3"}})
    with pytest.raises(ValidationError):
        TypeAdapter(list[FreezeRule]).validate_python([{"type": "BatchNorm2d", "eval": "yes"}])
    with pytest.raises(ValidationError, match="exactly one of max_norm"):
        OptimizerSpec.model_validate({"type": "SGD", "clip_grad": {"max_norm": 1, "max_value": 1}})
    with pytest.raises(ValidationError):
        OptimizerSpec.model_validate({"type": "SGD", "no_decay": "bias"})
    rule = InitRule.model_validate({"from": "x.pt", "strip_prefix": "module."})
    assert rule.from_ == "x.pt" and rule.model_dump(by_alias=True, exclude_none=True)["from"] == "x.pt"


def test_reading_a_spec_with_an_optimizer_imports_no_dynamo() -> None:
    """`read` checks the optimizer by constructing it over meta parameters; torch's lazy dynamo guard
    on `add_param_group` would import all of torch._dynamo (seconds of CPU) for that check."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = textwrap.dedent(
        """
        import sys
        import netspec
        spec = {"netspec": 1, "input": {"shape": [8]}, "model": {"type": "Linear", "out_features": 4},
                "optimizer": {"type": "AdamW", "lr": 0.001, "no_decay": ["bias"]}}
        built = netspec.build(spec, device="meta")
        print(type(built.optimizer).__name__, len(built.optimizer.param_groups), "torch._dynamo" in sys.modules)
        """
    )
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    assert out.stdout.split() == ["AdamW", "2", "False"]


def test_an_optimizer_made_over_meta_parameters_is_torchs_own() -> None:
    import netspec

    spec = {
        "netspec": 1,
        "input": {"shape": [8]},
        "model": {"type": "Linear", "out_features": 4},
        "optimizer": {"type": "AdamW", "lr": 0.001, "weight_decay": 0.1, "no_decay": ["bias"]},
    }
    ours = netspec.build(spec, device="meta")
    model = nn.Linear(8, 4, device="meta")
    hand = torch.optim.AdamW(
        [{"params": [model.weight]}, {"params": [model.bias], "weight_decay": 0.0}], lr=0.001, weight_decay=0.1
    )
    strip = [{k: v for k, v in g.items() if k != "params"} for g in hand.param_groups]
    assert [{k: v for k, v in g.items() if k != "params"} for g in ours.optimizer.param_groups] == strip
    assert ours.optimizer.defaults == hand.defaults
    # No instance override is left behind: a later group goes through torch's own (dynamo-guarded) method.
    assert "add_param_group" not in vars(ours.optimizer)
    extra = nn.Parameter(torch.empty(3, device="meta"))
    ours.optimizer.add_param_group({"params": [extra]})
    assert ours.optimizer.param_groups[-1]["params"] == [extra]
    # torch's own refusals still surface, located at the optimizer.
    with pytest.raises(netspec.SpecError, match="AdamW rejected its settings: Invalid learning rate"):
        netspec.read({**spec, "optimizer": {"type": "AdamW", "lr": -1.0}})
