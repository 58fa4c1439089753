"""The pipeline's structure: each stage hands the next a new value, and the layering holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import netspec

SPEC = {
    "netspec": 1,
    "input": {"shape": [3, 8, 8]},
    "model": {
        "type": "Sequential",
        "layers": {
            "conv": {"type": "Conv2d", "out_channels": 4, "kernel_size": 3},
            "norm": {"type": "BatchNorm2d"},
            "flat": "Flatten",
            "fc": {"type": "Linear", "out_features": 2},
        },
    },
}


def test_infer_returns_a_new_tree_and_leaves_resolves_alone() -> None:
    spec = netspec.read(SPEC)
    assert spec.resolved.root is not spec.inferred.root
    resolved = spec.resolved.root.children
    inferred = spec.inferred.root.children
    # The sizes the input determines are filled in on the inferred tree only.
    assert "in_channels" not in resolved["conv"].args and "num_features" not in resolved["norm"].args
    assert "in_features" not in resolved["fc"].args
    assert inferred["conv"].args["in_channels"] == 3 and inferred["norm"].args["num_features"] == 4
    assert inferred["fc"].args["in_features"] == 4 * 6 * 6
    model = netspec.build(spec).model
    assert (model.conv.in_channels, model.norm.num_features, model.fc.in_features) == (3, 4, 144)


TRAINED = {
    **SPEC,
    "seed": 0,
    "init": [{"type": "Linear", "weight": "zeros"}],
    "freeze": [{"type": "BatchNorm2d", "eval": True}],
    "optimizer": {"type": "AdamW", "lr": 0.01, "groups": [{"params": "conv.*", "lr_mult": 0.1}]},
    "scheduler": {"type": "StepLR", "step_size": 2},
}


def test_the_training_plan_is_made_once_per_read_and_build_reuses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.training.setup as setup

    calls: list[str] = []
    plan = setup._plan

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append("plan")
        return plan(*args, **kwargs)

    monkeypatch.setattr(setup, "_plan", counting)
    spec = netspec.read(TRAINED)
    assert calls == ["plan"]
    built = netspec.build(spec)
    built_again = netspec.build(spec, device="meta")
    assert calls == ["plan"], "build must apply the plan read made, not plan again"
    assert built_again.optimizer is not None

    # Behaviour is that of the same set-up written by hand in PyTorch.
    torch.manual_seed(0)
    model = built.model
    assert torch.count_nonzero(model.fc.weight) == 0
    assert not model.norm.training and model.norm.weight.requires_grad is False
    model.train()
    assert not model.norm.training  # pinned to eval
    groups = built.optimizer.param_groups
    assert isinstance(built.optimizer, torch.optim.AdamW) and len(groups) == 2
    assert [id(p) for p in groups[0]["params"]] == [id(model.conv.weight), id(model.conv.bias)]
    assert groups[0]["lr"] == pytest.approx(0.001) and groups[1]["lr"] == pytest.approx(0.01)
    assert {id(p) for p in groups[1]["params"]} == {id(model.fc.weight), id(model.fc.bias)}
    assert isinstance(built.scheduler, torch.optim.lr_scheduler.StepLR) and built.scheduler.step_size == 2
    assert built.training.frozen == {"norm.weight", "norm.bias"} and built.training.eval_modules == {"norm"}


TIED = {
    "netspec": 1,
    "seed": 0,
    "input": {"shape": [4]},
    "model": {
        "type": "Sequential",
        "layers": {
            "a": {"type": "Linear", "out_features": 4},
            "act": "ReLU",
            "b": {"type": "Linear", "out_features": 4},
        },
    },
    "tie": {"b.weight": "a.weight"},
    "checkpoint_activations": ["a", "b"],
    "freeze": ["b.bias"],
    "optimizer": {"type": "SGD", "lr": 0.1},
    "average": {"type": "swa", "start": 1, "lr": 0.05},
}


def counter(calls: list[str]) -> Callable[[str, Callable[..., Any]], Callable[..., Any]]:
    """``counting(name, fn)``: ``fn`` that appends ``name`` to ``calls`` each time it runs."""

    def counting(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    return counting


def test_ties_checkpointing_and_the_average_are_selected_once_per_read(monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.training.patterns as patterns
    import netspec.training.setup as setup

    calls: list[str] = []
    counting = counter(calls)

    for name in ("check_ties", "select_checkpointed", "check_average"):
        monkeypatch.setattr(setup, name, counting(name, getattr(setup, name)))
    monkeypatch.setattr(patterns, "selects", counting("selects", patterns.selects))  # every pattern match
    spec = netspec.read(TIED)
    assert {"check_ties", "select_checkpointed", "check_average", "selects"} <= set(calls)
    assert [c for c in calls if c != "selects"] == ["check_ties", "select_checkpointed", "check_average"]
    assert spec.training_plan is not None and spec.training_plan.checkpointed == ["a", "b"]
    calls.clear()
    built = netspec.build(spec)
    assert calls == [], f"build selected again: {calls}"

    # What the plan did is what hand-written PyTorch does.
    model = built.model
    assert model.b.weight is model.a.weight and built.training.ties == {"b.weight": "a.weight"}
    assert built.training.checkpointed == ["a", "b"] and model.b.bias.requires_grad is False
    assert isinstance(built.averaged, torch.optim.swa_utils.AveragedModel)
    assert [id(p) for p in built.optimizer.param_groups[0]["params"]] == [id(model.a.weight), id(model.a.bias)]
    hand = torch.nn.Sequential()
    hand.add_module("a", torch.nn.Linear(4, 4))
    hand.add_module("act", torch.nn.ReLU())
    hand.add_module("b", torch.nn.Linear(4, 4))
    hand.load_state_dict(model.state_dict())
    hand.b.weight = hand.a.weight
    x = torch.randn(2, 4)
    model(x).sum().backward()
    hand(x).sum().backward()
    assert model.a.weight.grad is not None and hand.a.weight.grad is not None
    assert torch.allclose(model.a.weight.grad, hand.a.weight.grad)


def test_the_distributed_plan_reuses_the_read_time_training_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.training.activations as activations
    import netspec.training.average as average
    import netspec.training.setup as setup
    import netspec.training.tie as tie

    calls: list[str] = []
    counting = counter(calls)

    for module, name in ((setup, "_plan"), (tie, "check_ties"), (average, "check_average")):
        monkeypatch.setattr(module, name, counting(name, getattr(module, name)))
    monkeypatch.setattr(activations, "select_checkpointed", counting("select", activations.select_checkpointed))
    spec = netspec.read({**TIED, "distributed": {"strategy": "fsdp"}})
    calls.clear()
    plan = netspec.plan(spec, world_size=2)
    assert calls == [], f"netspec.plan resolved the training sections again: {calls}"
    # The tie counts once (a.weight + a.bias + b.bias: 24 float32 elements, half per rank) and the frozen
    # b.bias has no gradient; SGD without momentum keeps no state.
    per_rank = plan.to_dict()["per_rank"]
    assert (per_rank["parameters"], per_rank["gradients"], per_rank["optimizer_state"]) == (24 * 4 // 2, 20 * 4 // 2, 0)


def test_a_read_time_training_error_is_reported_by_read_only() -> None:
    # swa without an optimizer is found when the spec is read, located at average.type; build never sees it.
    bad = {k: v for k, v in TIED.items() if k not in ("optimizer", "freeze")}
    with pytest.raises(netspec.SpecError) as info:
        netspec.read(bad)
    (problem,) = info.value.problems
    assert problem.path == ("average", "type") and "the spec has no optimizer" in problem.message
    spec = netspec.read({k: v for k, v in bad.items() if k != "average"})
    assert spec.training_plan is not None and spec.training_plan.average is None
    assert netspec.build(spec).averaged is None


def test_a_plan_is_carried_out_on_the_real_model_with_the_real_tensors() -> None:
    spec = netspec.read(TRAINED)
    first, second = netspec.build(spec), netspec.build(spec)
    # The same seed and plan give the same weights; each build owns its optimizer over its own parameters.
    one, two = first.model.state_dict(), second.model.state_dict()
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
    mine = {id(p) for group in first.optimizer.param_groups for p in group["params"]}
    assert mine == {id(p) for p in first.model.parameters() if p.requires_grad}


def test_model_warnings_are_problems_and_print_like_them() -> None:
    class Loose(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = [torch.nn.Linear(2, 2)]  # a plain list: PyTorch does not register it

    (warning,) = netspec.lint(Loose())
    assert isinstance(warning, netspec.Problem) and isinstance(warning, netspec.ModelWarning)
    assert warning.severity == "warning" and warning.path == "layers"
    same = netspec.Problem(warning.message, ("layers",), hint=warning.hint, severity="warning")
    assert warning.format() == same.format()
    assert warning.format().startswith("layers: warning: Loose.layers holds")


def test_one_substitution_pass_vars_resolved_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from netspec.frontend import exprs

    calls: list[int] = []
    real = exprs.resolve_vars

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(exprs, "resolve_vars", counting)
    spec = netspec.read({**SPEC, "vars": {"c": 4}, "seed": "${c * 2}", "model": {**SPEC["model"]}})
    assert spec.document.seed == 8 and len(calls) == 1  # top-level sections and the model share one pass


def test_a_bad_var_used_by_a_top_level_section_is_reported_at_its_own_line(tmp_path: Any) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(
        "netspec: 1\nvars:\n  width: 4\n  bad: ${width // 0}\nseed: ${bad}\n"
        "model: {type: Linear, in_features: 2, out_features: 2}\n",
        encoding="utf-8",
    )
    with pytest.raises(netspec.SpecError) as info:
        netspec.read(path)
    (problem,) = info.value.problems
    assert problem.path == ("vars", "bad") and problem.location is not None and problem.location.line == 4
