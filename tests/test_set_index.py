"""Assignment into a part of a tensor (issue 12, item E: timm's MViTv2 and ConViT): the statement
``h[key] = v`` rebinds ``h`` to a copy of itself with that part set (values computed from ``h`` before stay
as they were), validated on meta, and emit writes a traced ``t[key] = v`` as that statement where no other
name sees the change (the tensor is new in forward, no view of it is read after). Compared with the same
steps written in PyTorch, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from zoo import round_trip

import netspec
from netspec.errors import EmitError, SpecError


def _graph(forward: list[str]) -> dict[str, object]:
    return {
        "netspec": 1,
        "input": {"shape": [4, 6]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {"fc": {"type": "Linear", "in_features": 6, "out_features": 6}},
            "forward": forward,
            "outputs": "out",
        },
    }


def test_the_statement_sets_a_part_of_a_copy_with_torchs_values_and_gradients() -> None:
    forward = [
        "h = fc(x)",
        "a = h[:, :, 0]",
        "h[:, 1:3] = relu(x[:, :2]) * 2",
        "h[0, ..., -1] = 5",
        "out = h * a[..., None]",
    ]
    model = netspec.build(_graph(forward)).model
    x = torch.randn(2, 4, 6, requires_grad=True)

    def reference(x: torch.Tensor) -> torch.Tensor:
        h = model.fc(x)
        a = h[:, :, 0].clone()  # computed before the assignment: the statement leaves it as it was
        h[:, 1:3] = torch.relu(x[:, :2]) * 2
        h[0, ..., -1] = 5
        return h * a[..., None]

    got, want = model(x), reference(x)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    grads = torch.autograd.grad(got.square().sum(), [x, model.fc.weight])
    wanted = torch.autograd.grad(want.square().sum(), [x, model.fc.weight])
    for g, w in zip(grads, wanted, strict=True):
        torch.testing.assert_close(g, w)


def test_the_statement_is_validated_on_meta() -> None:
    with pytest.raises(SpecError) as err:
        netspec.build(_graph(["h = fc(x)", "h[:, 0] = zeros(5)", "out = h"]))
    assert "model.forward.1" in str(err.value)
    assert "h[:, 0] = zeros(5)" in str(err.value)


@pytest.mark.parametrize(
    ("forward", "message"),
    [
        (["fc[0] = x", "out = x"], "'fc[...] = ...' assigns into 'fc', which is a layer or tensor of this Graph"),
        (["zz[0] = x", "out = x"], "assigns into 'zz', which is not a value computed earlier in forward"),
        (["n = 3", "n[0] = x", "out = x"], "assigns into 'n', which is the constant 3, not a tensor"),
    ],
)
def test_assigning_into_what_is_not_a_value_is_refused(forward: list[str], message: str) -> None:
    with pytest.raises(SpecError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        netspec.build(_graph(forward))


class _RelAttention(nn.Module):
    """MViTv2's relative position step: a part of a fresh attention map replaced by itself plus a bias."""

    def __init__(self) -> None:
        super().__init__()
        self.qk = nn.Linear(8, 16)
        self.bias = nn.Parameter(torch.randn(4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k = self.qk(x).chunk(2, dim=-1)
        attn = q @ k.transpose(-2, -1)
        attn[:, 1:, 1:] = attn[:, 1:, 1:] + self.bias
        return attn.softmax(-1) @ x


class _Table(nn.Module):
    """ConViT's relative indices: three channels of a zeros tensor set in turn, sized by the input."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        table = torch.zeros(1, n, n, 3)
        ind = torch.arange(n, dtype=torch.float32)
        table[:, :, :, 2] = (ind.view(1, -1) - ind.view(-1, 1)).unsqueeze(0)
        table[:, :, :, 1] = 1.0
        table[..., 0] = ind
        return self.proj(table).mean(2) + x


@pytest.mark.parametrize("make", [_RelAttention, _Table])
def test_an_assignment_into_a_new_tensor_round_trips(make: type[nn.Module]) -> None:
    outcome = round_trip(make.__name__, make, (5, 8))
    assert outcome.status == "exact", outcome.detail
    forward = netspec.emit(make().eval(), input_shape=(5, 8)).to_dict()["model"]["forward"]
    assert any("] = " in s and s.split("[")[0].isidentifier() for s in forward), forward


class _SeenByAView(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * 2
        first = h[:, 0]
        h[:, 0] = 0.0
        return first + h.sum(1)  # first is a view of h: torch shows it the assignment


class _IntoTheInput(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x[:, 0] = 0.0
        return x * 2


@pytest.mark.parametrize(
    ("make", "what"), [(_SeenByAView, "a value computed in forward"), (_IntoTheInput, "the input 'x'")]
)
def test_an_assignment_another_name_sees_is_refused(make: type[nn.Module], what: str) -> None:
    with pytest.raises(EmitError) as err:
        netspec.emit(make().eval(), input_shape=(5, 8))
    message = str(err.value)
    assert message.startswith(f"the model ({make.__name__}): assigns into a part of {what} (t[...] = v)")
    assert "another value sees the change" in message


class _Cache(nn.Module):
    """Stores a value in a buffer the first time it sees a size (ConViT's rel_indices), from data or not."""

    def __init__(self, from_data: bool) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.from_data = from_data
        self.register_buffer("cache", torch.zeros(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache.shape[0] != x.shape[-1]:
            self.cache = self.fc(x).mean(0) if self.from_data else torch.arange(x.shape[-1]).float() * 2
        return x + self.cache


def test_a_cache_of_sizes_alone_round_trips_and_one_of_data_is_refused() -> None:
    outcome = round_trip("cache", lambda: _Cache(from_data=False), (8,))
    assert outcome.status == "exact", outcome.detail
    with pytest.raises(EmitError) as err:
        netspec.emit(_Cache(from_data=True).eval(), input_shape=(8,))
    assert str(err.value).startswith(
        "the model (_Cache): forward stores a value computed from the values of the input 'x' in self.cache"
    )


class _ConstantFactory(nn.Module):
    """A factory with constant sizes in forward (ConViT's ``torch.arange(img_size)``): recorded as a call."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(8, dtype=torch.float32)
        grid = torch.zeros(2, 8)
        grid[1] = ramp * 2
        return self.fc(x) + grid.sum(0) + ramp


def test_a_factory_with_constant_sizes_is_written_as_a_call() -> None:
    outcome = round_trip("factory", _ConstantFactory, (8,))
    assert outcome.status == "exact", outcome.detail
    forward = netspec.emit(_ConstantFactory().eval(), input_shape=(8,)).to_dict()["model"]["forward"]
    assert "arange_out = arange(8).float()" in forward, forward
    assert any(s.startswith("zeros_out = zeros(2, 8)") for s in forward), forward


def test_the_emitted_assignment_has_the_originals_gradients() -> None:
    torch.manual_seed(0)
    model = _RelAttention()
    net = netspec.build(netspec.emit(model.eval(), input_shape=(5, 8))).model
    net.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, 5, 8, requires_grad=True)
    want = torch.autograd.grad(model(x).square().sum(), [x, model.bias, model.qk.weight])
    got = torch.autograd.grad(net(x).square().sum(), [x, net.bias, net.qk.weight])
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
