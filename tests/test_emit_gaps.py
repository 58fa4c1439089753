"""Emit of constructs model zoos use (issue 12, blockers C, J, L): each hand-written module is emitted,
rebuilt from the spec's YAML, loaded strictly and compared with the original in eval and train mode;
what cannot be written exactly is refused with an EmitError naming the module path, class and reason."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import netspec
from netspec.emitter.walker import emit
from netspec.errors import EmitError


def round_trip(model: nn.Module, *inputs: torch.Tensor) -> list[str]:
    """Emit, rebuild from YAML, strict load, same outputs in eval and (same seed) train mode; the forward."""
    model.eval()
    spec = emit(model)
    rebuilt = netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    for training in (False, True):
        model.train(training)
        rebuilt.train(training)
        torch.manual_seed(0)
        want = model(*inputs)
        torch.manual_seed(0)
        got = rebuilt(*inputs)
        torch.testing.assert_close(got, want)
    torch.testing.assert_close(rebuilt.state_dict(), model.state_dict())  # running stats moved alike
    forward = spec.to_dict()["model"]["forward"]
    assert isinstance(forward, list)
    return forward


class Fused(nn.Module):
    """torch.conv2d, F.batch_norm(training=self.training), torch.addcmul, torch.addmm as timm/HF write them."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(4, 3, 3, 3) * 0.2)
        self.register_buffer("running_mean", torch.zeros(4))
        self.register_buffer("running_var", torch.ones(4))
        self.bn_weight = nn.Parameter(torch.rand(4) + 0.5)
        self.bn_bias = nn.Parameter(torch.randn(4))
        self.fc_weight = nn.Parameter(torch.randn(16, 5) * 0.3)
        self.fc_bias = nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.conv2d(x, self.weight, None, 1, 1)
        h = F.batch_norm(h, self.running_mean, self.running_var, self.bn_weight, self.bn_bias, self.training, 0.1, 1e-5)
        h = torch.addcmul(h, h, h, value=0.5)
        h = F.adaptive_avg_pool2d(h, 2).flatten(1)
        return torch.addmm(self.fc_bias, h, self.fc_weight)


def test_functional_conv_batch_norm_addcmul_addmm_round_trip() -> None:
    forward = round_trip(Fused(), torch.randn(2, 3, 8, 8))
    text = "\n".join(forward)
    assert "training=training" in text  # batch_norm follows the rebuilt module's mode, not a traced constant
    assert "conv2d(" in text and "addcmul(" in text and "addmm(" in text


class Windows(nn.Module):
    """math.ceil on a shape, Tensor.unfold, .to(dtype), and in-place .mul_/.add_ on a fresh value."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = math.ceil(x.shape[-1] / 3) * 3 - x.shape[-1]
        h = F.pad(self.proj(x), (0, pad))
        h = h.unfold(-1, 3, 3)
        h = h.mul_(2.0).add_(1.0)
        return h.to(torch.float64).sum(-1)


def test_ceil_unfold_to_dtype_and_in_place_methods_round_trip() -> None:
    x = torch.randn(2, 5, 4)
    model = Windows()
    forward = round_trip(model, x)
    assert model(x).dtype == torch.float64
    text = "\n".join(forward)
    assert "ceil(" in text and ".unfold(" in text and ".double()" in text
    assert ".mul(2.0).add(1.0)" in text and ".mul_(" not in text


def test_in_place_on_an_input_or_a_reused_value_is_refused() -> None:
    class OnInput(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul_(2)

    class Reused(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            g = h.view(-1)
            g.add_(1)  # changes h too
            return h

    cases = [
        (
            nn.Sequential(nn.Linear(4, 4), OnInput()),
            r"1 \(OnInput\): forward changes the input 'x' in place with \.mul_",
        ),
        (Reused(), r"the model \(Reused\): forward changes a value read again later .* in place with \.add_"),
    ]
    for model, pattern in cases:
        with pytest.raises(EmitError, match=pattern):
            emit(model)


def test_to_with_a_device_is_refused() -> None:
    class ToDevice(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.to("cpu")

    with pytest.raises(
        EmitError, match=r"the model \(ToDevice\): calls \.to\('cpu'\) with a fixed device or arguments other than"
    ):
        emit(ToDevice())


class Holder(nn.Module):
    def __init__(self, child: nn.Module) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.encoder = child

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x) + self.fc(x.float())


def test_all_inputs_defaulting_to_none_is_refused_not_emitted_without_inputs() -> None:
    class HFStyle(nn.Module):
        def forward(
            self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None
        ) -> torch.Tensor:
            return input_ids * 2

    with pytest.raises(
        EmitError,
        match=r"encoder \(HFStyle\): every forward input has a default \(input_ids=None, attention_mask=None\)",
    ):
        emit(Holder(HFStyle()))


def test_an_optional_mask_next_to_a_real_input_still_round_trips() -> None:
    class Masked(nn.Module):
        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            return x * 2 if mask is None else x * mask

    spec = emit(Holder(Masked()))
    assert spec.to_dict()["blocks"]["Masked"]["body"]["inputs"] == ["x"]
    round_trip(Holder(Masked()), torch.randn(2, 4))


def test_kwargs_forward_message_says_double_star() -> None:
    class Kw(nn.Module):
        def forward(self, **kwargs: torch.Tensor) -> torch.Tensor:
            return kwargs["x"]

    with pytest.raises(EmitError, match=r"encoder \(Kw\): forward takes \*\*kwargs; a Graph needs named inputs"):
        emit(Holder(Kw()))


class Scaled(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor, scale: float = 2.0, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.fc(x) * scale
        return h if mask is None else h * mask


def test_caller_passing_a_childs_default_round_trips() -> None:
    class Caller(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Scaled()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x, 2.0, None) + self.inner(x=x, scale=2.0)

    forward = round_trip(Caller(), torch.randn(3, 4))
    assert forward[0] == "inner_out = inner(x)" and "inner(x=x)" in forward[1]


def test_caller_passing_another_value_than_the_childs_fixed_default_is_refused() -> None:
    class Caller(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Scaled()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x, 3.0)

    with pytest.raises(
        EmitError,
        match=r"the model \(Caller\): calls inner \(Scaled\) with scale=3\.0, but its emitted Graph fixes scale "
        r"to the default 2\.0",
    ):
        emit(Caller())


def test_a_catalogue_layer_keeps_the_arguments_it_is_passed() -> None:
    class Attn(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mha = nn.MultiheadAttention(4, 2, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mha(x, x, x, need_weights=False)[0]

    forward = round_trip(Attn(), torch.randn(2, 3, 4))
    assert "need_weights=False" in "\n".join(forward)
