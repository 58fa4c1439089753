"""Every example in specs/ builds, runs forward on its input.shape and survives a text round trip."""

from __future__ import annotations

import shutil
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import SPEC_FILES, SPECS

import netspec
from netspec.compiler.meta import DTYPES

IDS = [p.name for p in SPEC_FILES]


def test_there_are_examples() -> None:
    assert {"lenet5.yaml", "mlp.yaml", "linears.yaml", "choices.yaml"} <= set(IDS)


def random_input(spec: netspec.Spec) -> torch.Tensor:
    shape = tuple(spec.document.input.shape)  # type: ignore[union-attr]
    dtype = DTYPES[spec.document.input.dtype]  # type: ignore[union-attr]
    generator = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        return torch.randn((1, *shape), dtype=dtype, generator=generator)
    return torch.randint(0, 8, (1, *shape), dtype=dtype, generator=generator)  # token ids, class indices


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_example_builds_and_runs_forward(path: Path) -> None:
    built = netspec.build(path)
    model = built.model
    params = [*model.parameters(), *model.buffers()]
    assert all(t.device.type == "cpu" for t in params)
    assert all(torch.isfinite(t).all() for t in params if t.is_floating_point())
    if built.spec.document.input is None:
        pytest.skip("no input.shape: nothing to run forward on")
    with torch.no_grad():
        out = model.eval()(random_input(built.spec))
    expected = built.spec.inferred.shapes[""]  # inferred on meta with a batch of 2
    outs = out if isinstance(out, (tuple, list)) else (out,)
    shapes = expected if isinstance(out, (tuple, list)) else (expected,)
    for tensor, shape in zip(outs, shapes, strict=True):
        assert tuple(tensor.shape) == (1, *shape[1:])
        assert torch.isfinite(tensor).all()


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_example_round_trips_through_yaml_and_json(path: Path, tmp_path: Path) -> None:
    spec = netspec.read(path)
    shapes = {k: tuple(v.shape) for k, v in spec.inferred.meta_model.state_dict().items()}
    for weights in path.parent.glob("*.pt"):  # init: from: files travel with the spec (finetune.yaml)
        shutil.copyfile(weights, tmp_path / weights.name)
    for name, text in (("copy.yaml", spec.to_yaml()), ("copy.json", spec.to_json())):
        copy = tmp_path / name
        copy.write_text(text, encoding="utf-8")
        again = netspec.read(copy)
        assert again.to_dict() == spec.to_dict()
        assert {k: tuple(v.shape) for k, v in again.inferred.meta_model.state_dict().items()} == shapes


def test_cli_validates_every_example(cli) -> None:  # type: ignore[no-untyped-def]
    code, out, err = cli("validate", *SPEC_FILES)
    assert code == 0, err
    assert out.splitlines() == [f"{p}: ok" for p in SPEC_FILES]


def hand_written_lenet() -> nn.Module:
    """The PyTorch tutorial's LeNet with named Sequentials, as someone would write it by hand."""
    features = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 6, 5),
            relu1=nn.ReLU(),
            pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(6, 16, 5),
            relu2=nn.ReLU(),
            pool2=nn.MaxPool2d(2),
        )
    )
    classifier = nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(16 * 5 * 5, 120),
            relu3=nn.ReLU(),
            fc2=nn.Linear(120, 84),
            relu4=nn.ReLU(),
            fc3=nn.Linear(84, 10),
        )
    )
    return nn.Sequential(OrderedDict(features=features, flatten=nn.Flatten(), classifier=classifier))


def test_lenet_state_dict_is_the_tutorials() -> None:
    model = netspec.build(SPECS / "lenet5.yaml").model
    assert list(model.state_dict()) == [
        "features.conv1.weight",
        "features.conv1.bias",
        "features.conv2.weight",
        "features.conv2.bias",
        "classifier.fc1.weight",
        "classifier.fc1.bias",
        "classifier.fc2.weight",
        "classifier.fc2.bias",
        "classifier.fc3.weight",
        "classifier.fc3.bias",
    ]
    assert str(model) == str(hand_written_lenet())
    assert model.features.conv1.weight.shape == (6, 1, 5, 5)


def test_lenet_weights_equal_the_hand_written_module_under_the_same_seed() -> None:
    built = netspec.build(SPECS / "lenet5.yaml")  # seed: 0, no init rules: torch's default init in order
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        reference = hand_written_lenet()
    theirs, ours = reference.state_dict(), built.model.state_dict()
    assert theirs.keys() == ours.keys()
    for key in theirs:
        assert torch.equal(theirs[key], ours[key]), key
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(built.model(x), reference(x))


def test_linears_is_twenty_independent_layers() -> None:
    model = netspec.build(SPECS / "linears.yaml").model
    layers = model.linears
    assert isinstance(layers, nn.ModuleList) and len(layers) == 20
    assert all(isinstance(m, nn.Linear) and m.in_features == m.out_features == 10 for m in layers)
    assert len({m.weight.data_ptr() for m in layers}) == 20
    assert not torch.equal(layers[0].weight, layers[1].weight)
    assert list(model.state_dict())[:2] == ["linears.0.weight", "linears.0.bias"]
    assert list(model.state_dict())[-1] == "linears.19.bias"


def test_choices_is_a_module_dict() -> None:
    model = netspec.build(SPECS / "choices.yaml").model
    assert isinstance(model, nn.ModuleDict)
    assert list(model.keys()) == ["conv", "pool", "lrelu", "prelu"]
    assert sorted(model.state_dict()) == ["conv.bias", "conv.weight", "prelu.weight"]


def test_mlp_infers_every_input_size_and_uses_vars() -> None:
    model = netspec.build(SPECS / "mlp.yaml").model
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 256), (256, 128), (128, 10)]
    assert [m.p for m in model if isinstance(m, nn.Dropout)] == [0.1, 0.1]
