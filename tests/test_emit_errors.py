"""netspec.emit refuses what a spec cannot express, naming the module path, its class and the operation."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netspec
from netspec.emitter.walker import emit
from netspec.errors import EmitError


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # control flow on tensor data: fx cannot follow it
            return self.fc(x)
        return x


class Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(4, 4), DataDependent())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def test_untraceable_forward_names_path_class_and_reason() -> None:
    with pytest.raises(EmitError) as info:
        emit(Wrapper())
    text = str(info.value)
    assert text.startswith("body.1 (DataDependent): forward cannot be traced: ")
    assert "control flow" in text and "netspec.register" in text


def test_unsupported_operations_are_named() -> None:
    class Logit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.special.logit(self.fc(x))

    class Method(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.cosh()

    class ReachesIn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.fc.scale = torch.ones(4)  # a plain tensor attribute of the child (fc.weight would be written)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.linear(x, self.fc.weight) * self.fc.scale

    class Constant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mask = torch.ones(4)  # a plain tensor attribute, baked in as a constant by tracing

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.mask

    cases = [
        (Logit(), r"the model \(Logit\): calls torch\.special\.logit"),
        (nn.Sequential(nn.Linear(4, 4), Method()), r"1 \(Method\): calls the tensor method \.cosh\(\)"),
        (ReachesIn(), r"ReachesIn\): reads 'fc\.scale', which is not a parameter or buffer of a submodule"),
        (
            Constant(),
            r"(?s)forward reads self\.mask, a tensor that is not a registered parameter or buffer.*register_buffer",
        ),
    ]
    for model, pattern in cases:
        with pytest.raises(EmitError, match=pattern):
            emit(model)


def test_mode_dependent_forward_is_refused() -> None:
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.relu() if self.training else x.sigmoid()  # eval computes a step training does not

    with pytest.raises(EmitError, match=r"different things in training and eval mode"):
        emit(Noisy())


def test_a_training_only_step_before_the_output_is_emitted_as_a_run_time_branch() -> None:
    class Noisy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1 if self.training else x

    spec = emit(Noisy())
    assert spec.to_dict()["model"]["forward"] == [
        "add_train = x + 1 if training else None",
        "outputs = add_train if training else x",
    ]
    rebuilt = netspec.build(spec).model
    x = torch.randn(3)
    assert torch.equal(rebuilt.eval()(x), x) and torch.equal(rebuilt.train()(x), x + 1)


def test_always_on_dropout_keeps_its_training_flag() -> None:
    class MCDropout(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return F.dropout(self.fc(x), 0.5, training=True)  # Monte-Carlo dropout, also in eval

    spec = emit(MCDropout())
    assert any("training=True" in s for s in spec.to_dict()["model"]["forward"])
    rebuilt = netspec.build(spec).model.eval()
    x = torch.ones(64, 4)
    assert (rebuilt(x) == 0).any()  # still dropping in eval mode, like the original


def test_forward_signature_problems() -> None:
    class Star(nn.Module):
        def forward(self, *xs: torch.Tensor) -> torch.Tensor:
            return xs[0]

    with pytest.raises(EmitError, match=r"forward takes \*xs; a Graph needs named inputs"):
        emit(Star())

    class Optional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, scale: float = 2.0) -> torch.Tensor:
            if mask is not None:
                x = x * mask
            return self.fc(x) * scale

    spec = emit(Optional())
    assert spec.to_dict()["model"]["inputs"] == ["x"]
    assert {w.message.split("'")[1] for w in spec.emit_warnings} == {"mask", "scale"}
    rebuilt = netspec.build(spec).model
    rebuilt.load_state_dict(Optional().state_dict() | {})  # shapes agree
    model = Optional()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_integer_buffer_round_trips_with_its_dtype() -> None:
    class Indexed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("order", torch.tensor([3, 1, 0, 2]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x[:, self.order]

    model = Indexed()
    spec = emit(model)
    assert spec.to_dict()["model"]["buffers"] == {"order": {"shape": [4], "init": "zeros", "dtype": "int64"}}
    rebuilt = netspec.build(spec, dtype="float64").model  # the build's dtype is for floating point tensors
    assert rebuilt.order.dtype == torch.int64
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 4, dtype=torch.float64)
    assert torch.equal(rebuilt(x), x[:, [3, 1, 0, 2]])


def test_buffer_of_a_dtype_a_spec_cannot_hold_is_refused_with_a_fix() -> None:
    class Bytes(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("lut", torch.zeros(4, dtype=torch.uint8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.lut

    with pytest.raises(EmitError, match=r"lut \(Bytes\.lut\): a buffer of dtype torch\.uint8 cannot be written") as err:
        emit(Bytes())
    assert "int64, int32, bool" in str(err.value)


def test_non_persistent_buffer_that_init_cannot_reproduce_is_written_out() -> None:
    class Table(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("table", torch.randn(3, 4), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.table

    # its values are in no state_dict, so the spec carries them (tests/test_emit_buffers.py has the rest)
    model = Table()
    spec = emit(model)
    assert spec.to_dict()["model"]["buffers"]["table"]["init"] == {
        "fn": "values",
        "data": model.table.reshape(-1).tolist(),
    }
    assert torch.equal(netspec.build(spec).model.table, model.table)


def test_non_persistent_buffer_of_a_known_init_round_trips() -> None:
    class Mask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mask", torch.ones(4, dtype=torch.bool), persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.masked_fill(self.mask, 0.0)

    spec = emit(Mask())
    assert spec.to_dict()["model"]["buffers"]["mask"] == {
        "shape": [4],
        "init": "ones",
        "persistent": False,
        "dtype": "bool",
    }
    rebuilt = netspec.build(spec).model
    assert rebuilt.mask.dtype == torch.bool and bool(rebuilt.mask.all())
    assert "mask" not in rebuilt.state_dict()


def test_tied_parameters_are_written_as_tie() -> None:
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(10, 4)
            self.head = nn.Linear(4, 10, bias=False)
            self.head.weight = self.embed.weight

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.head(self.embed(t))

    spec = emit(Tied())
    assert spec.to_dict()["tie"] == {"head.weight": "embed.weight"}
    assert not any("head.weight" in w.path for w in spec.emit_warnings)
    rebuilt = netspec.build(spec).model
    assert list(rebuilt.state_dict()) == list(Tied().state_dict())
    assert rebuilt.head.weight is rebuilt.embed.weight


def test_not_a_module() -> None:
    with pytest.raises(EmitError, match=r"expects an nn\.Module, got function"):
        emit(lambda x: x)  # type: ignore[arg-type]
    with pytest.raises(EmitError, match="input_shape must be positive sizes"):
        emit(nn.Linear(2, 2), input_shape=(0, 3))


def test_wrong_input_shape_is_reported_as_such() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(EmitError, match=r"(?s)input_shape \[3, 10, 10\] does not fit the model:.*in_features"):
        emit(model, input_shape=(3, 10, 10))
    assert emit(model, input_shape=(3, 8, 8)).to_dict()["input"] == {"shape": [3, 8, 8]}


def test_wrappers_are_looked_through() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    spec = emit(nn.DataParallel(model))
    assert list(netspec.build(spec).model.state_dict()) == list(model.state_dict())
    assert "module." in spec.emit_warnings[0].message


def test_layers_pinned_to_eval_by_a_spec_emit_as_their_class() -> None:
    built = netspec.build(
        {
            "netspec": 1,
            "input": {"shape": [3, 8, 8]},
            "model": {
                "type": "Sequential",
                "layers": [{"type": "Conv2d", "out_channels": 4, "kernel_size": 3}, "BatchNorm2d", "ReLU"],
            },
            "freeze": [{"type": "BatchNorm2d", "eval": True}],
        }
    )
    spec = emit(built.model)
    data = spec.to_dict()
    assert data["model"]["layers"][1] == {"type": "BatchNorm2d", "num_features": 4}
    assert data["freeze"] == ["1"]


def test_a_submodule_shared_at_two_places_stays_shared() -> None:
    class Shared(nn.Module):  # CoaT-style: one module registered under two names
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)
            self.again = self.proj
            self.norm = nn.BatchNorm1d(4)
            self.norm2 = self.norm

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.norm2(self.again(self.norm(self.proj(x))))

    model = Shared()
    spec = emit(model)
    assert spec.to_dict()["tie"] == {
        "again.weight": "proj.weight",
        "again.bias": "proj.bias",
        "norm2.weight": "norm.weight",
        "norm2.bias": "norm.bias",
    }
    rebuilt = netspec.build(spec).model
    assert rebuilt.again.weight is rebuilt.proj.weight
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters()) == 28
    # the parameters are tied again; the BatchNorm's buffers cannot be, and that is said
    assert [w.path for w in spec.emit_warnings] == ["norm2"]
    assert "independent copies of its buffers" in spec.emit_warnings[0].message
