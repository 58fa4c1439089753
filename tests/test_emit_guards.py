"""Guarded tracing in emit: a forward may branch on its input's rank, dtype and fixed sizes (the trace reads
them from an example input and records a guard); a branch on a size that varies is refused naming the line,
as is a branch on tensor data; the emitted Graph checks its input against what the trace assumed."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import netspec


def rebuilt(model: nn.Module, spec: netspec.Spec) -> nn.Module:
    out = netspec.build(spec).model
    out.load_state_dict(model.state_dict(), strict=True)
    return out.eval()


class ByRank(nn.Module):
    """Flattens a 3-d input, leaves a 2-d one: the branch depends on the rank alone."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.flatten(1)
        return self.fc(x)


def test_a_branch_on_the_rank_is_specialised_and_the_input_rank_checked() -> None:
    model = ByRank().eval()
    spec = netspec.emit(model, input_shape=(4,))
    forward = spec.to_dict()["model"]["forward"]
    # a Linear's features cannot vary, so the trace at other sizes fails and the whole shape is checked
    assert forward[0] == "x = expect_input(x, [-1, 4])"
    assert not any("flatten" in line for line in forward)  # the 2-d branch, as traced
    net = rebuilt(model, spec)
    x = torch.randn(5, 4)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    # the original would flatten a 3-d input; the rebuilt model refuses it instead of computing otherwise
    with pytest.raises(ValueError, match=r"emitted for an input of shape \[N, 4\] .*; got shape \[2, 2, 2\]"):
        net(torch.randn(2, 2, 2))


class ByLength(nn.Module):
    """Token ids: a branch on the sequence length, which varies."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        if ids.shape[1] == 7:
            return h * 2
        return h


def test_a_branch_on_a_varying_size_is_refused_naming_the_line() -> None:
    with pytest.raises(netspec.EmitError) as info:
        netspec.emit(ByLength(), input_shape=(7,), input_dtype="int64")
    message = str(info.value)
    assert message.startswith("the model (ByLength): forward specialises Python control flow on a size that varies")
    assert "test_emit_guards.py:" in message and "if ids.shape[1] == 7:" in message
    assert "True at one size and False at the other" in message
    assert "traced at input [2, 7] and [3, 8]" in message


class ByBatch(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2 if x.shape[0] == 2 else x


def test_a_branch_on_the_batch_size_is_refused() -> None:
    with pytest.raises(netspec.EmitError, match=r"if x.shape\[0\] == 2 else x.*traced at input \[2, 4\] and \[3, 4\]"):
        netspec.emit(ByBatch(), input_shape=(4,))


class ByWidth(nn.Module):
    """An image model padding its width to a multiple of 4 in Python (timm's "SAME" padding does so)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (4 - x.shape[-1] % 4) % 4
        return self.conv(torch.nn.functional.pad(x, (0, int(pad))))


def test_a_size_fixed_for_one_image_size_checks_the_whole_shape() -> None:
    model = ByWidth().eval()
    spec = netspec.emit(model, input_shape=(3, 10, 10))
    assert spec.to_dict()["model"]["forward"][0] == "x = expect_input(x, [-1, 3, 10, 10])"
    net = rebuilt(model, spec)
    x = torch.randn(3, 3, 10, 10)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"shape \[N, 3, 10, 10\] .*; got shape \[1, 3, 10, 9\]"):
        net(torch.randn(1, 3, 10, 9))


class ByData(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            return x * 2
        return x


def test_a_branch_on_tensor_data_is_refused_naming_the_line() -> None:
    with pytest.raises(netspec.EmitError) as info:
        netspec.emit(ByData(), input_shape=(4,))
    message = str(info.value)
    assert message.startswith("the model (ByData): forward cannot be traced: Python control flow on tensor data")
    assert "test_emit_guards.py:" in message and "if x.sum() > 0:" in message


class ByDtype(nn.Module):
    """Reads its input's dtype in Python (``torch.finfo``), as Hugging Face's attention masks do."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(min=torch.finfo(x.dtype).min / 2)


def test_a_dtype_read_in_python_checks_the_input_dtype() -> None:
    model = ByDtype()
    spec = netspec.emit(model, input_shape=(4,))
    assert spec.to_dict()["model"]["forward"][0] == "x = expect_input(x, [-1, -1], 'float32')"
    net = rebuilt(model, spec)
    x = torch.randn(2, 4)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"and dtype float32 .*got shape \[2, 4\] and dtype float64"):
        net(x.double())


class Inner(nn.Module):
    """A child whose branch depends on the rank of what its parent passes it."""

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.mean(1) if h.dim() == 3 else h


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.inner = Inner()

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.inner(self.embed(ids))


def test_a_child_is_traced_with_the_examples_its_parent_passes() -> None:
    model = Outer()
    spec = netspec.emit(model, input_shape=(5,), input_dtype="int64")
    data = spec.to_dict()
    assert data["model"]["forward"][0] == "ids = expect_input(ids, [-1, -1], 'int64')"
    net = rebuilt(model, spec)
    ids = torch.randint(0, 10, (3, 6))  # another sequence length: the trace checked it
    torch.testing.assert_close(net(ids), model(ids), rtol=0, atol=0)


def test_without_an_input_shape_tracing_stays_symbolic() -> None:
    with pytest.raises(netspec.EmitError, match="symbolically traced variables cannot be used as inputs to control"):
        netspec.emit(ByRank())


def test_emit_leaves_the_model_untouched_when_it_runs_examples() -> None:
    """The examples run on fake copies: a BatchNorm child's counter and statistics stay as they were."""

    class WithNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bn(x) if x.dim() == 2 else x

    model = WithNorm().train()
    netspec.emit(model, input_shape=(4,))
    assert int(model.bn.num_batches_tracked) == 0
    assert torch.equal(model.bn.running_mean, torch.zeros(4))


def round_trip(model: nn.Module, spec: netspec.Spec, x: torch.Tensor) -> nn.Module:
    net = rebuilt(model, spec)
    torch.testing.assert_close(net(x), model.eval()(x), rtol=0, atol=0)
    return net


class Pair(nn.Module):
    """Returns a structure with a None in it, as Hugging Face's attention layers do."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, h: torch.Tensor, scale: list[float] | None = None) -> tuple[torch.Tensor, None, torch.Tensor]:
        factor = 1.0 if scale is None else scale[0]
        return self.fc(h) * factor, None, h.sum(-1)


class UsesPair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self = Pair()  # a child named self, as BertAttention's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.self(x, scale=[3.0])
        extra = out[1:]
        if extra[0] is None:  # a field the child leaves out: known from the example
            return out[0] + out[2].unsqueeze(-1)
        return out[0]


def test_a_childs_tuple_output_with_none_and_a_constant_argument() -> None:
    """The child's Graph returns its tensors (the None left out, read back as the constant it is); the list
    the parent passes for a defaulted argument is fixed in the child's Graph; a child named self works."""
    model = UsesPair()
    spec = netspec.emit(model, input_shape=(4,))
    data = spec.to_dict()
    body = data["blocks"]["Pair"]["body"]
    assert body["outputs"] == ["mul_out", "sum_1"]  # (fc(h) * 3.0, None, h.sum(-1)) without the None
    assert body["forward"][0] == "mul_out = fc(h) * 3.0"  # scale=[3.0], fixed in the child's Graph
    assert data["model"]["forward"][0] == "self_out = self(x)"
    round_trip(model, spec, torch.randn(3, 4))


class Factories(nn.Module):
    """Tensors made in forward from traced sizes and device, and a 0-dim constant (HF's attention masks)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, n = ids.shape
        mask = torch.ones((b, n), device=ids.device)
        positions = torch.arange(n, dtype=torch.long, device=ids.device)
        inverted = torch.tensor(1.0) - mask
        return ids * positions + inverted.to(ids.device).long()


def test_factories_with_traced_sizes_dtype_and_device() -> None:
    model = Factories()
    spec = netspec.emit(model, input_shape=(5,), input_dtype="int64")
    forward = "\n".join(spec.to_dict()["model"]["forward"])
    assert "ones((" in forward and "device=ids.device" in forward
    assert "arange(" in forward  # an int arange: torch.long already, its dtype= left out
    assert "full((), 1.0).float()" in forward
    net = rebuilt(model, spec)
    ids = torch.randint(0, 9, (2, 6))  # another length than traced: the sizes are read at run time
    torch.testing.assert_close(net(ids), model(ids), rtol=0, atol=0)


class Positions(nn.Module):
    """A non-persistent ``arange`` buffer (Hugging Face's ``position_ids``)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 4)
        self.register_buffer("position_ids", torch.arange(16).expand((1, -1)), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids) + self.embed(self.position_ids[:, : ids.shape[1]])


def test_a_non_persistent_arange_buffer() -> None:
    model = Positions()
    spec = netspec.emit(model, input_shape=(5,), input_dtype="int64")
    buffer = spec.to_dict()["model"]["buffers"]["position_ids"]
    assert buffer == {"shape": [1, 16], "init": "arange", "persistent": False, "dtype": "int64"}
    round_trip(model, spec, torch.randint(0, 16, (2, 7)))
