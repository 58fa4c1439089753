"""Training set-up: patterns, init rules, checkpoints (``from:``) and freezing."""

from __future__ import annotations

import copy
import math
import pickle
import textwrap
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

from netspec.errors import SpecError
from netspec.frontend.source import load_text
from netspec.training import (
    FreezeRule,
    InitRule,
    OptimizerSpec,
    SchedulerSpec,
    TrainingSetup,
    apply_freeze,
    apply_init,
    init_functions,
    is_eval_frozen,
    setup_training,
    unfreeze_eval,
)
from netspec.training.patterns import no_match, select, selects


def make_model() -> nn.Sequential:
    features = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1),
            bn1=nn.BatchNorm2d(8),
            relu=nn.ReLU(),
            conv10=nn.Conv2d(8, 8, 3, padding=1),
            bn2=nn.BatchNorm2d(8),
        )
    )
    classifier = nn.Sequential(OrderedDict(fc1=nn.Linear(8, 16), act=nn.ReLU(), fc3=nn.Linear(16, 4)))
    return nn.Sequential(
        OrderedDict(features=features, pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), classifier=classifier)
    )


def build(model: nn.Module, text: str, base_dir: Path | None = None) -> TrainingSetup:
    source = load_text(textwrap.dedent(text), "spec.yaml")
    data: dict[str, Any] = source.data
    return setup_training(
        model,
        init=[InitRule.model_validate(r) for r in data["init"]] if "init" in data else None,
        freeze=TypeAdapter(list[FreezeRule]).validate_python(data["freeze"]) if "freeze" in data else None,
        optimizer=OptimizerSpec.model_validate(data["optimizer"]) if "optimizer" in data else None,
        scheduler=SchedulerSpec.model_validate(data["scheduler"]) if "scheduler" in data else None,
        source=source,
        base_dir=base_dir or Path("."),
    )


def fails(model: nn.Module, text: str, base_dir: Path | None = None) -> str:
    with pytest.raises(SpecError) as info:
        build(model, text, base_dir)
    return str(info.value)


# --- patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("head.*", "head.weight", True),
        ("head.*", "decode_head.weight", False),
        ("*head.*", "decode_head.weight", True),
        ("features.conv1", "features.conv1.weight", True),
        ("features.conv1", "features.conv10.weight", False),
        ("features.conv1", "features.conv1", True),
        ("features.*.bias", "features.0.bias", True),
        ("features.*.bias", "features.a.b.bias", True),
        ("features.*.bias", "features.0.weight", False),
        ("features.[01]", "features.1.weight", True),
        ("features.[01]", "features.2.weight", False),
        ("conv1", "features.conv1.weight", False),
        ("bias", "features.conv1.bias", False),
        ("*", "anything.at.all", True),
    ],
)
def test_glob_and_module_path_semantics(pattern: str, name: str, expected: bool) -> None:
    assert selects(pattern, name) is expected


def test_select_keeps_order_and_never_matches_substrings() -> None:
    names = ["head.weight", "decode_head.weight", "head.bias", "decode_head.bias"]
    assert select("head.*", names) == ["head.weight", "head.bias"]
    assert select("head", names) == ["head.weight", "head.bias"]
    assert select("ead", names) == []


def test_no_match_names_closest_real_names() -> None:
    names = ["features", "features.conv1", "features.conv1.weight", "classifier", "classifier.fc.weight"]
    message, hint = no_match("featurs.conv1", names)
    assert "'featurs.conv1'" in message and "features.conv1" in message
    message, hint = no_match("head.*", ["decode_head", "decode_head.weight"])
    assert "decode_head" in message and "substrings" in hint


# --- init -----------------------------------------------------------------------------------

CONTRACT_INIT = """
init:
  - {type: [Conv2d, Linear], weight: kaiming_normal, bias: zeros}
  - {type: Linear, weight: {fn: normal, mean: 0.0, std: 0.1}}
  - {type: BatchNorm2d, weight: ones, bias: zeros}
  - {match: "classifier.fc3.*", fn: xavier_uniform}
"""


def test_contract_init_example_applies_in_order() -> None:
    model = make_model()
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(7.0)
    setup = build(model, CONTRACT_INIT)
    src = setup.init_sources
    assert src["features.conv1.weight"] == "spec.yaml:3"
    assert src["features.conv1.bias"] == "spec.yaml:3"
    assert src["classifier.fc1.weight"] == "spec.yaml:4"  # the later Linear rule overrides
    assert src["features.bn1.weight"] == "spec.yaml:5"
    assert src["classifier.fc3.weight"] == "spec.yaml:6"
    assert src["classifier.fc3.bias"] == "spec.yaml:3"  # xavier cannot do 1-D: left as rule 0 set it
    assert torch.count_nonzero(model.classifier.fc3.bias) == 0
    assert torch.all(model.features.bn1.weight == 1) and torch.all(model.features.bn2.bias == 0)
    bound = math.sqrt(6 / (16 + 4))
    assert model.classifier.fc3.weight.abs().max() <= bound
    assert any("fc3.bias" in w.message for w in setup.warnings)
    assert all(not torch.all(p == 7.0) for p in model.parameters())


# The in-place initialisers torch.nn.init documents (https://pytorch.org/docs/stable/nn.init.html),
# written out by hand: netspec's discovery must find exactly these (a new torch adds a name here).
DOCUMENTED_INITS = [
    "constant", "dirac", "eye", "kaiming_normal", "kaiming_uniform", "normal", "ones", "orthogonal",
    "sparse", "trunc_normal", "uniform", "xavier_normal", "xavier_uniform", "zeros",
]  # fmt: skip


def _std_close(t: torch.Tensor, expected: float, tol: float = 0.08) -> bool:
    return abs(t.std().item() - expected) < tol * expected


# name -> (arguments, shape, check)
INIT_CASES: dict[str, tuple[dict[str, Any], tuple[int, ...], Any]] = {
    "constant": ({"val": 0.25}, (8, 16), lambda t: bool(torch.all(t == 0.25))),
    "zeros": ({}, (8, 16), lambda t: bool(torch.all(t == 0))),
    "ones": ({}, (8, 16), lambda t: bool(torch.all(t == 1))),
    "eye": ({}, (5, 7), lambda t: torch.equal(t, torch.eye(5, 7))),
    "dirac": (
        {},
        (6, 4, 3, 3),
        lambda t: all(t[i, i, 1, 1] == 1 for i in range(4)) and t.sum() == 4 and t[4:].abs().sum() == 0,
    ),
    "orthogonal": ({"gain": 1.0}, (32, 64), lambda t: torch.allclose(t @ t.T, torch.eye(32), atol=1e-4)),
    "normal": (
        {"mean": 1.0, "std": 0.5},
        (300, 300),
        lambda t: abs(t.mean().item() - 1.0) < 0.01 and _std_close(t, 0.5, 0.02),
    ),
    "uniform": (
        {"a": -2, "b": 3},
        (300, 300),
        lambda t: t.min() >= -2 and t.max() <= 3 and abs(t.mean().item() - 0.5) < 0.03,
    ),
    "trunc_normal": (
        {"mean": 0.0, "std": 1.0, "a": -0.5, "b": 0.5},
        (200, 200),
        lambda t: t.min() >= -0.5 and t.max() <= 0.5 and abs(t.mean().item()) < 0.01,
    ),
    "sparse": (
        {"sparsity": 0.5, "std": 0.01},
        (20, 30),
        lambda t: all(int((t[:, j] == 0).sum()) >= 10 for j in range(30)),
    ),
    "kaiming_normal": ({"nonlinearity": "relu"}, (256, 512), lambda t: _std_close(t, math.sqrt(2 / 512))),
    "kaiming_uniform": (
        {"nonlinearity": "relu", "mode": "fan_in"},
        (256, 512),
        lambda t: t.abs().max() <= math.sqrt(6 / 512) and _std_close(t, math.sqrt(2 / 512)),
    ),
    "xavier_normal": ({"gain": 1.0}, (256, 512), lambda t: _std_close(t, math.sqrt(2 / 768))),
    "xavier_uniform": (
        {},
        (256, 512),
        lambda t: t.abs().max() <= math.sqrt(6 / 768) and _std_close(t, math.sqrt(2 / 768)),
    ),
}


class Holder(nn.Module):
    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full(shape, 9.0))


def test_init_catalogue_is_torchs_documented_in_place_initialisers() -> None:
    found = init_functions()
    assert sorted(found) == DOCUMENTED_INITS
    for name, func in found.items():
        assert func is getattr(nn.init, name + "_")  # the in-place function, never the deprecated alias
    # torch's own export list agrees: every public in-place name in nn.init.__all__, and nothing else
    in_place = sorted(n[:-1] for n in nn.init.__all__ if n.endswith("_"))
    assert sorted(found) == in_place
    assert "calculate_gain" not in found  # a helper, not an initialiser


def test_every_documented_initialiser_has_a_statistics_check() -> None:
    assert sorted(INIT_CASES) == DOCUMENTED_INITS


@pytest.mark.parametrize("fn", DOCUMENTED_INITS)
@pytest.mark.parametrize("form", ["key", "fn"])
def test_every_init_function(fn: str, form: str) -> None:
    args, shape, check = INIT_CASES[fn]
    torch.manual_seed(0)
    model = Holder(shape)
    rule: dict[str, Any] = (
        {"type": "Holder", "w": {"fn": fn, **args}} if form == "key" else {"match": "w", "fn": fn, **args}
    )
    sources = apply_init(model, [InitRule.model_validate(rule)], None, Path("."))
    assert sources == {"w": "init.0"}
    assert check(model.w.detach()), fn


def test_bare_string_and_mapping_forms() -> None:
    model = Holder((4, 4))
    apply_init(model, [InitRule.model_validate({"type": "Holder", "w": "ones"})], None, Path("."))
    assert torch.all(model.w == 1)
    rule = InitRule.model_validate({"type": "Holder", "w": {"fn": "constant", "val": 3}})
    apply_init(model, [rule], None, ".")
    assert torch.all(model.w == 3)


class MyLinear(nn.Linear):
    pass


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)
        self.gain = nn.Parameter(torch.ones(3))


def test_type_matches_any_class_in_the_mro() -> None:
    model = nn.Sequential(OrderedDict(a=MyLinear(3, 3), b=Block(), c=nn.Conv1d(1, 1, 1)))
    rules = [
        InitRule.model_validate({"type": "Linear", "weight": "zeros"}),
        InitRule.model_validate({"type": "Block", "fn": "constant", "val": 2.0}),
    ]
    sources = apply_init(model, rules, None, Path("."))
    assert torch.all(model.a.weight == 0)  # a subclass of Linear matches "Linear"
    assert torch.all(model.b.inner.weight == 2) and torch.all(model.b.gain == 2)  # fn form: whole block
    assert "c.weight" not in sources


def test_match_with_type_and_buffers_as_keys() -> None:
    model = make_model()
    rules = [
        InitRule.model_validate(
            {"type": "BatchNorm2d", "match": "features.bn2", "running_var": {"fn": "constant", "val": 4.0}}
        ),
        InitRule.model_validate({"match": "classifier.fc1", "weight": "zeros"}),
    ]
    sources = apply_init(model, rules, None, Path("."))
    assert torch.all(model.features.bn2.running_var == 4) and torch.all(model.features.bn1.running_var == 1)
    assert torch.all(model.classifier.fc1.weight == 0) and not torch.all(model.classifier.fc3.weight == 0)
    assert set(sources) == {"features.bn2.running_var", "classifier.fc1.weight"}


def test_function_failing_on_explicit_tensor_is_an_error() -> None:
    message = fails(make_model(), "init:\n  - {type: Linear, bias: orthogonal}\n")
    assert "init.0.bias" in message and "'classifier.fc1.bias'" in message and "orthogonal" in message
    assert "spec.yaml:2" in message
    message = fails(make_model(), "init:\n  - {match: classifier.fc3.bias, fn: xavier_uniform}\n")
    assert "init rule 0 (xavier_uniform)" in message and "'classifier.fc3.bias' of shape [4]" in message


# --- from: ----------------------------------------------------------------------------------


def test_from_with_strip_prefix_and_match(tmp_path: Path) -> None:
    donor = make_model()
    torch.save(
        {"epoch": 3, "state_dict": {"module." + k: v for k, v in donor.state_dict().items()}},
        tmp_path / "p.pt",
    )
    model = make_model()
    setup = build(model, '{init: [{from: p.pt, match: "features.*", strip_prefix: "module."}]}', tmp_path)
    assert torch.equal(model.features.conv1.weight, donor.features.conv1.weight)
    assert torch.equal(model.features.bn1.running_mean, donor.features.bn1.running_mean)
    assert not torch.equal(model.classifier.fc1.weight, donor.classifier.fc1.weight)
    (report,) = setup.load_reports
    assert "features.conv1.weight" in report.loaded and "features.bn2.num_batches_tracked" in report.loaded
    assert report.missing == [] and report.unexpected == [] and report.mismatched == []
    assert setup.init_sources["features.conv10.bias"] == "spec.yaml:1"
    assert "classifier.fc1.weight" not in setup.init_sources


def test_from_raw_state_dict_and_model_entry_report_missing_unexpected(tmp_path: Path) -> None:
    donor = make_model().state_dict()
    donor["extra.weight"] = torch.zeros(2)
    del donor["classifier.fc3.bias"]
    torch.save({"model": donor}, tmp_path / "m.pt")
    setup = build(make_model(), "{init: [{from: m.pt}]}", tmp_path)
    (report,) = setup.load_reports
    assert report.missing == ["classifier.fc3.bias"] and report.unexpected == ["extra.weight"]
    message = fails(make_model(), "{init: [{from: m.pt, strict: true}]}", tmp_path)
    assert "classifier.fc3.bias" in message and "extra.weight" in message


def test_from_shape_mismatch_is_an_error_unless_skipped(tmp_path: Path) -> None:
    donor = make_model()
    donor.classifier.fc3 = nn.Linear(16, 10)
    torch.save(donor.state_dict(), tmp_path / "w.pt")
    message = fails(make_model(), "{init: [{from: w.pt}]}", tmp_path)
    assert "classifier.fc3.weight: file [10, 16], model [4, 16]" in message
    assert "skip_mismatched" in message
    model = make_model()
    setup = build(model, "{init: [{from: w.pt, skip_mismatched: true}]}", tmp_path)
    (report,) = setup.load_reports
    assert {m[0] for m in report.mismatched} == {"classifier.fc3.weight", "classifier.fc3.bias"}
    assert torch.equal(model.classifier.fc1.weight, donor.classifier.fc1.weight)
    assert not torch.equal(model.classifier.fc3.bias[:4], donor.classifier.fc3.bias[:4])


def test_from_always_uses_weights_only_on_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.save(make_model().state_dict(), tmp_path / "w.pt")
    seen: list[dict[str, Any]] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    build(make_model(), "{init: [{from: w.pt}]}", tmp_path)
    assert seen == [{"map_location": "cpu", "weights_only": True}]


def test_from_suggests_strip_prefix_when_nothing_loads(tmp_path: Path) -> None:
    torch.save({"backbone." + k: v for k, v in make_model().state_dict().items()}, tmp_path / "w.pt")
    message = fails(make_model(), "{init: [{from: w.pt}]}", tmp_path)
    assert "loaded nothing" in message and "strip_prefix: 'backbone.'" in message


def test_from_strips_the_dataparallel_prefix_like_from_checkpoint(tmp_path: Path) -> None:
    # nn.DataParallel(model).state_dict() names every tensor "module.<name>": both readers strip it.
    donor = make_model()
    torch.save(nn.DataParallel(donor).state_dict(), tmp_path / "dp.pt")
    model = make_model()
    (report,) = build(model, "{init: [{from: dp.pt}]}", tmp_path).load_reports
    assert report.missing == [] and report.unexpected == [] and len(report.loaded) == len(donor.state_dict())
    assert all(torch.equal(v, donor.state_dict()[k]) for k, v in model.state_dict().items())


# --- freeze ---------------------------------------------------------------------------------

FREEZE = """
init:
  - {type: [Conv2d, Linear], weight: kaiming_normal, bias: zeros}
freeze:
  - features.conv1
  - "classifier.fc1.*"
  - {type: BatchNorm2d, eval: true}
optimizer: {type: SGD, lr: 0.1, momentum: 0.9, weight_decay: 0.01}
"""


def test_frozen_parameters_stay_bit_identical_and_bn_stats_stay_put() -> None:
    torch.manual_seed(0)
    model = make_model()
    setup = build(model, FREEZE)
    assert setup.optimizer is not None
    expected = {
        "features.conv1.weight", "features.conv1.bias", "classifier.fc1.weight", "classifier.fc1.bias",
        "features.bn1.weight", "features.bn1.bias", "features.bn2.weight", "features.bn2.bias",
    }  # fmt: skip
    assert setup.frozen == expected
    before = {k: v.clone() for k, v in model.state_dict().items()}
    in_optimizer = {id(p) for g in setup.optimizer.param_groups for p in g["params"]}
    params = dict(model.named_parameters())
    assert all(id(params[n]) not in in_optimizer and not params[n].requires_grad for n in expected)
    for _ in range(20):
        model.train()
        x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
        loss = nn.functional.cross_entropy(model(x), y)
        setup.optimizer.zero_grad()
        loss.backward()
        setup.optimizer.step()
    after = model.state_dict()
    for name in expected:
        assert torch.equal(after[name], before[name]), name
    for bn in ("features.bn1", "features.bn2"):
        for stat in ("running_mean", "running_var", "num_batches_tracked"):
            assert torch.equal(after[f"{bn}.{stat}"], before[f"{bn}.{stat}"]), (bn, stat)
    assert not torch.equal(after["features.conv10.weight"], before["features.conv10.weight"])
    assert model.training and not model.features.bn1.training and model.features.conv1.training


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised inside torch inductor
def test_eval_frozen_modules_keep_names_and_survive_copy_pickle_compile() -> None:
    model = make_model()
    build(model, "freeze: [{type: BatchNorm2d, eval: true}]")
    plain = repr(make_model())
    assert repr(model) == plain
    bn = model.features.bn1
    assert type(bn).__name__ == "BatchNorm2d" and type(bn).__qualname__ == "BatchNorm2d"
    assert isinstance(bn, nn.BatchNorm2d) and is_eval_frozen(bn)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        clone.train()
        assert is_eval_frozen(clone.features.bn2) and not clone.features.bn2.training
        assert clone.classifier.fc1.training
        assert torch.equal(clone.features.bn1.weight, model.features.bn1.weight)
    model.train()
    x = torch.randn(2, 3, 8, 8)
    compiled = torch.compile(model, backend="eager")  # dynamo traces the pinned class; no inductor codegen needed
    assert torch.allclose(compiled(x), model(x))
    assert torch.equal(model.features.bn1.num_batches_tracked, torch.tensor(0))
    unfreeze_eval(model)
    model.train()
    assert model.features.bn1.training and type(model.features.bn1) is nn.BatchNorm2d


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(4)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):  # unannotated: fx cannot pickle string annotations (from __future__)
        return x + self.fc(self.bn(x))


def test_eval_freeze_of_an_fx_graph_module_survives_copy_and_pickle() -> None:
    model = nn.Sequential(OrderedDict(block=torch.fx.symbolic_trace(Residual()), out=nn.Linear(4, 2)))
    rules = TypeAdapter(list[FreezeRule]).validate_python([{"type": "GraphModule", "eval": True}])
    frozen = apply_freeze(model, rules, None)
    assert frozen == {"block.bn.weight", "block.bn.bias", "block.fc.weight", "block.fc.bias"}
    for clone in (model, copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        clone.train()
        assert not clone.block.training and not clone.block.bn.training and clone.out.training
        assert clone(torch.randn(3, 4)).shape == (3, 2)


def test_freeze_by_type_with_match_and_without_eval() -> None:
    model = make_model()
    frozen = apply_freeze(
        model,
        TypeAdapter(list[FreezeRule]).validate_python([{"type": "Conv2d", "match": "features.conv1*"}]),
        None,
    )
    assert frozen == {
        "features.conv1.weight",
        "features.conv1.bias",
        "features.conv10.weight",
        "features.conv10.bias",
    }
    model.train()
    assert model.features.conv1.training and not is_eval_frozen(model.features.conv1)


def test_freeze_module_path_is_not_a_prefix_of_a_sibling() -> None:
    model = make_model()
    frozen = apply_freeze(model, ["features.conv1"], None)
    assert frozen == {"features.conv1.weight", "features.conv1.bias"}
    assert model.features.conv10.weight.requires_grad
