"""netspec.emit of the training set-up: frozen parameters -> freeze:, an optimizer -> optimizer: with groups."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn as nn

import netspec
from netspec.emitter.walker import emit
from netspec.errors import EmitError


def make_model() -> nn.Sequential:
    model = nn.Sequential()
    model.add_module(
        "features",
        nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.ReLU()
        ),
    )
    model.add_module("pool", nn.AdaptiveAvgPool2d(1))
    model.add_module("flat", nn.Flatten())
    model.add_module("classifier", nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
    return model


def groups_by_name(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[list[str], dict[str, Any]]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return [
        (sorted(names[id(p)] for p in g["params"]), {k: v for k, v in g.items() if k != "params"})
        for g in optimizer.param_groups
    ]


def test_frozen_parameters_become_module_paths_where_possible() -> None:
    model = make_model()
    for p in model.features[0].parameters():
        p.requires_grad_(False)
    model.features[1].bias.requires_grad_(False)
    spec = emit(model)
    assert spec.to_dict()["freeze"] == ["features.0", "features.1.bias"]
    rebuilt = netspec.build(spec).model
    frozen = [n for n, p in rebuilt.named_parameters() if not p.requires_grad]
    assert frozen == ["features.0.weight", "features.0.bias", "features.1.bias"]


def test_whole_model_frozen() -> None:
    model = make_model().requires_grad_(False)
    assert emit(model).to_dict()["freeze"] == ["*"]


def test_optimizer_defaults_and_groups_rebuild_the_same_groups() -> None:
    model = make_model()
    for p in model.features[0].parameters():
        p.requires_grad_(False)
    biases = [p for n, p in model.named_parameters() if n.endswith("bias") and p.requires_grad]
    head = [model.classifier[2].weight]
    rest = [p for p in model.parameters() if p.requires_grad and all(p is not q for q in biases + head)]
    optimizer = torch.optim.SGD(
        [{"params": head, "lr": 0.1}, {"params": rest}, {"params": biases, "weight_decay": 0.0}],
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=True,
    )
    spec = emit(model, optimizer=optimizer)
    section = spec.to_dict()["optimizer"]
    assert {k: section[k] for k in ("type", "lr", "momentum", "weight_decay", "nesterov")} == {
        "type": "SGD",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "nesterov": True,
    }
    assert section["groups"][0] == {"params": ["classifier.2.weight"], "lr": 0.1}
    built = netspec.build(spec)
    assert groups_by_name(built.model, built.optimizer) == groups_by_name(model, optimizer)


def test_single_group_optimizer_has_no_groups_section() -> None:
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95))
    section = emit(model, optimizer=optimizer).to_dict()["optimizer"]
    assert section == {"type": "AdamW", "lr": 3e-4, "betas": [0.9, 0.95]}
    built = netspec.build(emit(model, optimizer=optimizer))
    assert groups_by_name(built.model, built.optimizer) == groups_by_name(model, optimizer)


def test_parameters_outside_the_optimizer_are_reported() -> None:
    model = make_model()
    optimizer = torch.optim.SGD(model.classifier.parameters(), lr=0.1)
    spec = emit(model, optimizer=optimizer)
    assert any("in no param group" in w.message and "freeze them" in (w.hint or "") for w in spec.emit_warnings)


def test_custom_optimizer_class_is_refused() -> None:
    class MySGD(torch.optim.SGD):
        pass

    model = make_model()
    with pytest.raises(EmitError, match=r"MySGD is not a torch.optim optimizer"):
        emit(model, optimizer=MySGD(model.parameters(), lr=0.1))


def test_optimizer_of_another_model_is_refused() -> None:
    other = nn.Linear(3, 3)
    with pytest.raises(EmitError, match="not a parameter of the model"):
        emit(make_model(), optimizer=torch.optim.SGD(other.parameters(), lr=0.1))
