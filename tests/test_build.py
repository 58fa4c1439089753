"""The spec model, shape inference and the compiler, through the public API (read, build, load, Built, Spec)."""

from __future__ import annotations

import copy
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
from conftest import SPECS, problem_lines

import netspec
from netspec.compiler.memory import check_fits, sizes_in_bytes
from netspec.frontend.source import from_data

WritePath = Callable[..., Path]


def spec(model: Any, **top: Any) -> dict[str, Any]:
    return {"netspec": 1, **top, "model": model}


def linear(i: int, o: int) -> dict[str, Any]:
    return {"type": "Linear", "in_features": i, "out_features": o}


# -- containers -----------------------------------------------------------------------------------


def test_sequential_list_form_names_children_by_index() -> None:
    model = netspec.build(spec({"type": "Sequential", "layers": [linear(4, 8), "ReLU", linear(8, 2)]})).model
    assert isinstance(model, nn.Sequential)
    assert [name for name, _ in model.named_children()] == ["0", "1", "2"]
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_sequential_mapping_form_keeps_names_like_ordered_dict() -> None:
    layers = {"fc1": linear(4, 8), "act": {"type": "ReLU", "inplace": True}, "fc2": linear(8, 2)}
    model = netspec.build(spec({"type": "Sequential", "layers": layers})).model
    reference = nn.Sequential(OrderedDict(fc1=nn.Linear(4, 8), act=nn.ReLU(inplace=True), fc2=nn.Linear(8, 2)))
    assert str(model) == str(reference)
    assert list(model.state_dict()) == list(reference.state_dict())


def test_modulelist_list_form() -> None:
    model = netspec.build(spec({"type": "ModuleList", "layers": [linear(4, 4), "Tanh"]})).model
    assert isinstance(model, nn.ModuleList) and len(model) == 2
    assert isinstance(model[1], nn.Tanh)


def test_modulelist_repeat_makes_independent_copies_with_index() -> None:
    layer = {"type": "Linear", "in_features": 4, "out_features": "${4 + i}"}
    model = netspec.build(spec({"type": "ModuleList", "repeat": 3, "layer": layer}, seed=0)).model
    assert [m.out_features for m in model] == [4, 5, 6]
    assert len({m.weight.data_ptr() for m in model}) == 3
    assert list(model.state_dict()) == [f"{k}.{p}" for k in range(3) for p in ("weight", "bias")]


def test_sequential_repeat_and_splice_items_infer_sizes() -> None:
    data = spec(
        {
            "type": "Sequential",
            "layers": [
                {"type": "Linear", "out_features": 8},
                {"repeat": 2, "layer": {"type": "Linear", "out_features": "${8 + i}"}},
                "ReLU",
                {"type": "Sequential", "repeat": 2, "layer": {"type": "Linear", "out_features": 3}},
            ],
        },
        input={"shape": [5]},
    )
    model = netspec.build(data).model
    sizes = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert sizes == [(5, 8), (8, 8), (8, 9), (9, 3), (3, 3)]
    assert [name for name, _ in model.named_children()] == ["0", "1", "2", "3", "4"]
    assert model(torch.randn(2, 5)).shape == (2, 3)


def test_moduledict() -> None:
    layers = {"conv": {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3}, "act": "GELU"}
    model = netspec.build(spec({"type": "ModuleDict", "layers": layers})).model
    assert isinstance(model, nn.ModuleDict) and list(model) == ["conv", "act"]
    assert list(model.state_dict()) == ["conv.weight", "conv.bias"]


def test_vars_and_safe_arithmetic() -> None:
    data = spec(
        {
            "type": "Sequential",
            "layers": [
                {"type": "Linear", "in_features": "${width}", "out_features": "${width * 2}"},
                {"type": "Linear", "in_features": "${width * 2}", "out_features": "${max(1, width // 4)}"},
                {"type": "Dropout", "p": "${p if width > 4 else 0.0}"},
            ],
        },
        vars={"width": 8, "p": 0.25, "double": "${width * 2}", "power": "${2 ** 3}"},
    )
    built = netspec.build(data)
    first, second, drop = built.model
    assert (first.in_features, first.out_features, second.out_features, drop.p) == (8, 16, 2, 0.25)
    assert built.spec.resolved.vars["double"] == 16 and built.spec.resolved.vars["power"] == 8
    assert built.spec.to_dict()["model"]["layers"][0]["in_features"] == "${width}"  # written back as written


# -- shape inference ------------------------------------------------------------------------------


def test_omitted_input_sizes_are_inferred() -> None:
    layers = [
        {"type": "Conv2d", "out_channels": 8, "kernel_size": 3, "padding": 1},
        "BatchNorm2d",
        {"type": "GroupNorm", "num_groups": 2},
        "ReLU",
        {"type": "AdaptiveAvgPool2d", "output_size": 2},
        "Flatten",
        "LayerNorm",
        {"type": "Linear", "out_features": 10},
    ]
    model = netspec.build(spec({"type": "Sequential", "layers": layers}, input={"shape": [3, 16, 16]})).model
    conv, bn, gn, _, _, _, ln, fc = model
    assert conv.in_channels == 3 and bn.num_features == 8 and gn.num_channels == 8
    assert ln.normalized_shape == (32,) and fc.in_features == 32
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_sequence_models_infer_feature_sizes() -> None:
    layers = {
        "emb": {"type": "Embedding", "num_embeddings": 50, "embedding_dim": 16},
        "enc": {"type": "TransformerEncoderLayer", "nhead": 4, "batch_first": True},
        "rnn": {"type": "LSTM", "hidden_size": 8, "batch_first": True},
    }
    built = netspec.build(spec({"type": "Sequential", "layers": layers}, input={"shape": [7], "dtype": "int64"}))
    assert built.model.enc.self_attn.embed_dim == 16
    assert built.model.rnn.input_size == 16


# -- compiler: device, dtype, seed, memory --------------------------------------------------------

CONVNET = spec(
    {
        "type": "Sequential",
        "layers": {
            "conv": {"type": "Conv2d", "out_channels": 4, "kernel_size": 3},
            "bn": "BatchNorm2d",
            "flat": "Flatten",
            "fc": {"type": "Linear", "out_features": 3},
        },
    },
    input={"shape": [2, 6, 6]},
    seed=7,
)


def test_dtype_float64_makes_every_parameter_float64() -> None:
    for dtype in (torch.float64, "float64"):
        model = netspec.build(CONVNET, dtype=dtype).model
        assert {p.dtype for p in model.parameters()} == {torch.float64}
        assert model.bn.running_mean.dtype == torch.float64
        assert model.bn.num_batches_tracked.dtype == torch.int64  # integer buffers keep their dtype
        assert model(torch.randn(1, 2, 6, 6, dtype=torch.float64)).dtype == torch.float64


def test_unknown_dtype_is_a_spec_error() -> None:
    with pytest.raises(netspec.SpecError, match="unknown dtype 'float8'"):
        netspec.build(CONVNET, dtype="float8")


def test_meta_device_allocates_nothing() -> None:
    built = netspec.build(CONVNET, device="meta")
    tensors = [*built.model.parameters(), *built.model.buffers()]
    assert tensors and all(t.device.type == "meta" for t in tensors)
    assert built.device == torch.device("meta")


# The seed tests of the build, the init rules and the overrides, in one: weights are drawn by the
# layers' own constructors, or by init rules (type and match forms), after `seed` (spec or --set).
SEEDED = {
    "constructors": CONVNET,
    "init rules": {
        **CONVNET,
        "init": [
            {"type": ["Conv2d", "Linear"], "weight": "kaiming_normal", "bias": "normal"},
            {"match": "fc.weight", "fn": "xavier_uniform"},
        ],
    },
}


@pytest.mark.parametrize("spec", SEEDED.values(), ids=SEEDED)
def test_same_seed_gives_bit_identical_weights_and_another_seed_differs(spec: dict[str, Any]) -> None:
    a = netspec.build(spec).model.state_dict()
    b = netspec.build(spec).model.state_dict()
    c = netspec.build(spec, overrides={"seed": 8}).model.state_dict()
    assert netspec.build({**spec, "seed": 8}).model.state_dict()["fc.weight"].equal(c["fc.weight"])
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["conv.weight"], c["conv.weight"])
    assert not torch.equal(a["fc.weight"], c["fc.weight"])


def test_seeded_build_does_not_disturb_the_global_rng() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    netspec.build(CONVNET)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(torch.rand(3), expected)


HUGE = spec(
    {"type": "Sequential", "layers": {name: linear(1_000_000, 1_000_000) for name in ("fc1", "fc2", "fc3")}},
    input={"shape": [1_000_000]},
)


def test_model_too_big_for_memory_fails_fast_naming_the_largest_layers(write_spec: WritePath) -> None:
    path = write_spec(netspec.read(HUGE).to_yaml(), "huge.yaml")
    start = time.perf_counter()
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(path, device="cpu")
    assert time.perf_counter() - start < 10
    (line,) = problem_lines(info.value)
    assert line.startswith(f"{path}:")
    assert "largest layers: fc1 (3.6 TB), fc2 (3.6 TB), fc3 (3.6 TB)" in line
    assert "10.9 TB" in line
    assert "device='meta'" in str(info.value)


def test_model_too_big_for_memory_builds_on_meta() -> None:
    start = time.perf_counter()
    model = netspec.build(HUGE, device="meta").model
    assert time.perf_counter() - start < 10
    assert sum(p.numel() for p in model.parameters()) == 3 * (10**12 + 10**6)


def test_check_fits_against_a_given_budget() -> None:
    tensors = netspec.read(CONVNET).inferred.tensors
    total = sum(sizes_in_bytes(tensors, None).values())
    assert total == 4 * sum(p.numel() for p in netspec.build(CONVNET).model.parameters()) + 4 * 2 * 4 + 8
    source = from_data({})
    assert check_fits(tensors, torch.device("cpu"), None, source, available=total) == total
    assert check_fits(tensors, torch.device("cpu"), torch.float64, source, available=2 * total) > total
    with pytest.raises(netspec.SpecError, match="largest layers: fc"):
        check_fits(tensors, torch.device("cpu"), None, source, available=total - 1)


# -- API ------------------------------------------------------------------------------------------


def test_read_build_load_and_built_unpacking(write_spec: WritePath) -> None:
    path = write_spec(
        """\
        netspec: 1
        seed: 0
        vars: {width: 16}
        input: {shape: [8]}
        model:
          type: Sequential
          layers:
            - {type: Linear, out_features: "${width}"}
            - ReLU
            - {type: Linear, out_features: 2}
        loss: {type: CrossEntropyLoss, label_smoothing: 0.1}
        optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
        scheduler: {type: StepLR, step_size: 10}
        """
    )
    spec_obj = netspec.read(path)
    assert isinstance(spec_obj, netspec.Spec) and spec_obj.name == "spec"
    built = netspec.load(path, overrides={"vars.width": 128})
    model, optimizer, scheduler = built
    assert model is built.model and optimizer is built.optimizer and scheduler is built.scheduler
    assert isinstance(built, netspec.Built) and built.spec.resolved.vars["width"] == 128
    assert model[0].out_features == 128 and model[2].in_features == 128
    assert isinstance(optimizer, torch.optim.SGD) and isinstance(scheduler, torch.optim.lr_scheduler.StepLR)
    assert isinstance(built.loss, nn.CrossEntropyLoss) and built.loss.label_smoothing == 0.1
    assert netspec.build(spec_obj).model[0].out_features == 16  # a Spec builds as it is
    assert netspec.build(spec_obj, overrides={"vars.width": 4}).model[0].out_features == 4
    assert built.clip_gradients() is None


def test_overrides_reach_seed_input_shape_and_layers() -> None:
    base = copy.deepcopy(CONVNET)
    built = netspec.build(base, overrides={"seed": 1, "input.shape": [2, 10, 10], "model.layers.conv.out_channels": 5})
    assert built.spec.document.seed == 1
    assert built.model.conv.out_channels == 5 and built.model.fc.in_features == 5 * 8 * 8
    assert base == CONVNET, "build must not modify the caller's dict"


def test_to_dict_is_a_copy() -> None:
    spec_obj = netspec.read(CONVNET)
    data = spec_obj.to_dict()
    data["model"]["layers"]["conv"]["out_channels"] = 99
    assert spec_obj.to_dict() == CONVNET


def test_round_trip_keeps_strings_that_look_like_other_things(tmp_path: Path) -> None:
    tricky = ["1e-3", "yes", "no", "on", "null", "~", "true", "0x10", "1_000", ".5", "", " pad ", "a: b", "#x", "${x}"]
    data = spec({"type": "ModuleDict", "layers": {k: "ReLU" for k in ("1", "yes", "null", "1e-3")}})
    data["name"] = "yes"
    data["vars"] = {f"v{k}": s for k, s in enumerate(tricky)} | {"x": 1, "lr": 1e-3, "big": 10**30}
    original = netspec.read(data)
    for name, text in (("a.yaml", original.to_yaml()), ("a.json", original.to_json())):
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        again = netspec.read(path)
        assert again.to_dict() == data
        assert isinstance(again.to_dict()["vars"]["lr"], float)
        assert list(again.inferred.meta_model.keys()) == ["1", "yes", "null", "1e-3"]  # type: ignore[operator]


def test_round_trip_of_lenet_builds_the_same_state_dict_shapes(tmp_path: Path) -> None:
    original = netspec.build(SPECS / "lenet5.yaml")
    path = tmp_path / "lenet.yaml"
    path.write_text(original.spec.to_yaml(), encoding="utf-8")
    again = netspec.build(path)
    assert {k: v.shape for k, v in again.model.state_dict().items()} == {
        k: v.shape for k, v in original.model.state_dict().items()
    }
    assert all(torch.equal(v, again.model.state_dict()[k]) for k, v in original.model.state_dict().items())


def test_spec_error_hierarchy_and_format(write_spec: WritePath) -> None:
    assert issubclass(netspec.SpecError, netspec.NetspecError)
    assert issubclass(netspec.SpecError, ValueError)
    path = write_spec("netspec: 1\nmodel:\n  type: Sequential\n  layers:\n    - {type: Dropout, p: 2}\n    - Relu\n")
    with pytest.raises(ValueError) as info:
        netspec.build(path)
    err = info.value
    assert isinstance(err, netspec.SpecError) and len(err.problems) == 2
    assert problem_lines(err) == [
        f"{path}:5:23: model.layers.0.p: p is a probability and must be in [0, 1], got 2",
        f"{path}:6:7: model.layers.1.type: unknown layer type 'Relu'",
    ]
    assert "did you mean 'ReLU'" in str(err)
