"""One argument-type system: layer, loss, optimizer, scheduler and init arguments are checked by
``catalog.argtypes`` alone, with one wording for every bad value, located at file:line and path."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import netspec
from netspec.catalog import argtypes
from netspec.training import kwargs as training_kwargs

MODEL = "model: {type: Sequential, layers: [{type: Linear, in_features: 4, out_features: 3}, {type: Dropout, p: 0.1}]}"


def spec_error(tmp_path: Path, body: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text("netspec: 1\n" + textwrap.dedent(body), encoding="utf-8")
    with pytest.raises(netspec.SpecError) as info:
        netspec.read(path)
    return str(info.value)


def located(text: str, line: int, spec_path: str) -> str:
    """The one message at ``spec.yaml:line:col: spec_path: ...`` (its first line)."""
    match = re.search(rf"spec\.yaml:{line}:\d+: {re.escape(spec_path)}: (.*)", text)
    assert match, f"no problem at line {line}, path {spec_path}:\n{text}"
    return match.group(1)


# The same bad value (the string '0.1' where torch takes a float) in each kind of argument.
PLACES = [
    ("layer", "model: {type: Dropout, p: '0.1'}\n", 2, "model.p", "Dropout.p"),
    (
        "loss",
        MODEL + "\nloss: {type: SmoothL1Loss, beta: '0.1'}\n",
        3,
        "loss.beta",
        "SmoothL1Loss.beta",
    ),
    (
        "optimizer",
        MODEL + "\noptimizer: {type: SGD, lr: 0.1, momentum: '0.1'}\n",
        3,
        "optimizer.momentum",
        "SGD.momentum",
    ),
    (
        "scheduler",
        MODEL + "\noptimizer: {type: SGD, lr: 0.1}\nscheduler: {type: StepLR, step_size: 2, gamma: '0.1'}\n",
        4,
        "scheduler.gamma",
        "StepLR.gamma",
    ),
    (
        "init",
        MODEL + "\ninit:\n  - {type: Linear, weight: {fn: normal, std: '0.1'}}\n",
        4,
        "init.0.weight.std",
        "normal.std",
    ),
]


@pytest.mark.parametrize(("kind", "body", "line", "path", "owner"), PLACES, ids=[p[0] for p in PLACES])
def test_the_same_bad_value_gets_the_same_wording_everywhere(
    tmp_path: Path, kind: str, body: str, line: int, path: str, owner: str
) -> None:
    message = located(spec_error(tmp_path, body), line, path)
    assert message == f"{owner}: expected number, got str '0.1'", kind


UNKNOWN = [
    ("layer", "model: {type: Dropout, pp: 0.1}\n", 2, "model.pp", "Dropout has no argument 'pp'", "'p'"),
    (
        "loss",
        MODEL + "\nloss: {type: SmoothL1Loss, betta: 1.0}\n",
        3,
        "loss.betta",
        "SmoothL1Loss has no argument 'betta'",
        "'beta'",
    ),
    (
        "optimizer",
        MODEL + "\noptimizer: {type: SGD, lr: 0.1, momentun: 0.9}\n",
        3,
        "optimizer.momentun",
        "optimizer SGD has no argument 'momentun'",
        "'momentum'",
    ),
    (
        "scheduler",
        MODEL + "\noptimizer: {type: SGD, lr: 0.1}\nscheduler: {type: StepLR, step_size: 2, gama: 0.1}\n",
        4,
        "scheduler.gama",
        "scheduler StepLR has no argument 'gama'",
        "'gamma'",
    ),
    (
        "init",
        MODEL + "\ninit:\n  - {type: Linear, weight: {fn: normal, stdd: 0.1}}\n",
        4,
        "init.0.weight.stdd",
        "init function 'normal' has no argument 'stdd'",
        "'std'",
    ),
]


@pytest.mark.parametrize(("kind", "body", "line", "path", "message", "near"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_an_unknown_argument_name_is_answered_with_did_you_mean_everywhere(
    tmp_path: Path, kind: str, body: str, line: int, path: str, message: str, near: str
) -> None:
    text = spec_error(tmp_path, body)
    assert located(text, line, path) == message, kind
    assert f"did you mean {near}?" in text


def test_training_arguments_go_through_the_layer_checker(monkeypatch: pytest.MonkeyPatch) -> None:
    # One checker: the training side calls catalog.argtypes.check_arguments, the function layers use.
    seen: list[str] = []
    real = argtypes.check_arguments

    def spy(*args: object, **kw: object) -> object:
        seen.append(str(kw["owner"]))
        return real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(training_kwargs, "check_arguments", spy)
    netspec.read(
        {
            "netspec": 1,
            "model": {"type": "Linear", "in_features": 4, "out_features": 3},
            "init": [{"type": "Linear", "weight": {"fn": "normal", "std": 0.1}}],
            "optimizer": {"type": "SGD", "lr": 0.1},
            "scheduler": {"type": "StepLR", "step_size": 2},
        }
    )
    assert {"normal", "SGD", "StepLR"} <= set(seen)
    assert training_kwargs.signature_params is argtypes.signature_params
    layer = netspec.catalog.registry.LAYERS.get("Dropout")
    assert layer.params["p"].type == argtypes.signature_params(nn.Dropout)["p"].type


# -- where the two checkers disagreed, the correct behaviour now holds for both ------------------------


def test_a_python_object_argument_is_refused_when_read_not_at_the_first_forward(tmp_path: Path) -> None:
    # The layer checker used to accept anything for an annotation it did not know; torch then failed
    # at the first forward. Hand-written PyTorch shows the failure:
    loss = nn.LinearCrossEntropyLoss(4, 3, options={"chunk": 3})  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        loss(torch.randn(2, 4), torch.tensor([0, 1]))
    body = MODEL + "\nloss: {type: LinearCrossEntropyLoss, in_features: 3, num_classes: 2, options: {chunk: 3}}\n"
    message = located(spec_error(tmp_path, body), 3, "loss.options")
    assert message.startswith("LinearCrossEntropyLoss.options: expected null")
    assert "LinearCrossEntropyOptions cannot be written in a spec" in message and "got dict {'chunk': 3}" in message
    # The training checker refused such a value all along, with the same wording now.
    body = (
        MODEL
        + "\noptimizer: {type: SGD, lr: 0.1}\nscheduler: {type: CyclicLR, base_lr: 0.01, max_lr: 0.1, scale_fn: x}\n"
    )
    message = located(spec_error(tmp_path, body), 4, "scheduler.scale_fn")
    assert message == "CyclicLR.scale_fn: expected null (a Python function cannot be written in a spec), got str 'x'"


def test_a_function_argument_is_not_satisfied_by_null(tmp_path: Path) -> None:
    # activation: str | Callable. The layer checker read Callable as "null", so `activation: null` was
    # accepted and the model failed in forward, as it does hand-written:
    layer = nn.TransformerEncoderLayer(8, 2, activation=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not callable"):
        layer(torch.zeros(3, 8))
    body = "input: {shape: [3, 8]}\nmodel: {type: TransformerEncoderLayer, d_model: 8, nhead: 2, activation: null}\n"
    message = located(spec_error(tmp_path, body), 3, "model.activation")
    assert (
        message
        == "TransformerEncoderLayer.activation: expected str (a Python function cannot be written in a spec), got null"
    )
    built = netspec.build(
        {"netspec": 1, "model": {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2, "activation": "gelu"}}
    )
    assert built.model.activation is torch.nn.functional.gelu


def test_an_int_given_for_a_float_stays_an_int_as_in_hand_written_pytorch() -> None:
    # The training checker turned 1 into 1.0; layers kept 1. Both keep what was written now, as torch does.
    spec = {
        "netspec": 1,
        "model": {"type": "LeakyReLU", "negative_slope": 0},
        "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 1},
    }
    param = nn.Parameter(torch.zeros(1))
    hand_opt = torch.optim.SGD([param], lr=0.1, momentum=1)
    model = nn.Sequential(nn.Linear(2, 2))
    spec["model"] = {
        "type": "Sequential",
        "layers": [{"type": "Linear", "in_features": 2, "out_features": 2}, spec["model"]],
    }
    built = netspec.build(spec)
    assert repr(built.model[1]) == repr(nn.LeakyReLU(0)) == "LeakyReLU(negative_slope=0)"
    got = built.optimizer.param_groups[0]["momentum"]
    want = hand_opt.param_groups[0]["momentum"]
    assert got == want and type(got) is type(want) is int
    assert len(list(model.parameters())) == len(list(built.model.parameters()))


def test_the_types_read_torch_annotations_the_same_way_for_layers_and_callables() -> None:
    sgd = argtypes.signature_params(torch.optim.SGD, ["params"])
    assert sgd["lr"].type.describe() == "number"  # float | Tensor: a scalar tensor is written as a number
    assert sgd["foreach"].type.describe() == "bool or null"
    adam = argtypes.signature_params(torch.optim.Adam, ["params"])
    assert adam["betas"].type.check([0.9, 0.99]) == (0.9, 0.99)  # a list where torch takes a tuple
    lambda_lr = argtypes.signature_params(torch.optim.lr_scheduler.LambdaLR, ["optimizer"])
    assert lambda_lr["lr_lambda"].type.describe() == "a Python function, which a spec cannot write"
    with pytest.raises(argtypes.ArgMismatch, match="expected a Python function, which a spec cannot write, got str"):
        lambda_lr["lr_lambda"].type.check("lambda e: 0.9")
    # Bare containers: any items, a list or mapping from a spec.
    assert argtypes.from_annotation(tuple).check([1, "a"]) == (1, "a")
    assert argtypes.from_annotation(dict).check({"a": [1]}) == {"a": [1]}
    with pytest.raises(argtypes.ArgMismatch, match=r"expected mapping of any value, got list \[1\]"):
        argtypes.from_annotation(dict).check([1])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(-2, 2, allow_nan=False) | st.sampled_from(["x", "same"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b"]), inner, max_size=2),
    max_leaves=6,
)
FUZZED = [
    *argtypes.signature_params(torch.optim.Adam, ["params"]).values(),
    *argtypes.signature_params(torch.optim.lr_scheduler.OneCycleLR, ["optimizer"]).values(),
    *argtypes.signature_params(nn.init.kaiming_normal_, ["tensor"]).values(),
    *(netspec.catalog.registry.LAYERS.get(n).params[a] for n, a in [("Conv2d", "padding"), ("MaxPool2d", "stride")]),
    netspec.catalog.registry.LAYERS.get("CrossEntropyLoss").params["weight"],
]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(value=JSON, index=st.integers(0, len(FUZZED) - 1))
def test_any_spec_value_is_converted_or_refused_with_expected_and_got(value: object, index: int) -> None:
    param = FUZZED[index]
    try:
        converted = param.type.check(value)
    except argtypes.ArgMismatch as err:
        text = str(err)
        assert text.startswith(f"expected {param.type.describe()}, got ") and len(text) < 400
        found = argtypes.check_arguments({param.name: param}, {param.name: value}, owner="X")[1]
        assert found == [(param.name, f"X.{param.name}: {text}", None)]
        return
    # What passes converts once: checking the converted value again gives it back unchanged.
    again = param.type.check(converted)
    assert type(again) is type(converted)
    if not isinstance(converted, torch.Tensor):
        assert again == converted
