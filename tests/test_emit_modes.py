"""Emit of forwards whose training mode computes extra outputs (issue 12, A3: GoogLeNet's and Inception v3's
auxiliary heads): the steps only training computes are written ``a = aux(h) if training else None`` in their
original place and the output follows the mode. Each spec is rebuilt from its YAML, loaded strictly and
compared with the original in eval and train mode (same seed: the dropout draws come in the same order)."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

import netspec
from netspec.errors import EmitError


class Outputs(NamedTuple):
    logits: torch.Tensor
    aux: torch.Tensor


class AuxNet(nn.Module):
    """An auxiliary head in the middle (with dropout, so the order of random draws matters)."""

    def __init__(self, named: bool) -> None:
        super().__init__()
        self.named = named
        self.stem = nn.Linear(6, 8)
        self.aux = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 3))
        self.body = nn.Sequential(nn.Dropout(0.5), nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.stem(x)
        aux = self.aux(h) if self.training else None
        out = self.head(self.body(h))
        if self.training:
            return Outputs(out, aux) if self.named else (out, aux)
        return out


def rebuilt(model: nn.Module) -> tuple[nn.Module, netspec.Spec]:
    spec = netspec.emit(model.eval())
    built = netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model
    built.load_state_dict(model.state_dict(), strict=True)
    return built, spec


@pytest.mark.parametrize("named", [False, True], ids=["tuple", "namedtuple"])
def test_training_only_outputs_round_trip_in_both_modes(named: bool) -> None:
    torch.manual_seed(0)
    model = AuxNet(named)
    built, spec = rebuilt(model)
    forward = spec.to_dict()["model"]["forward"]
    assert "aux_train = aux(stem_out) if training else None" in forward, forward
    assert forward[-1].endswith("= (head_out, aux_train) if training else head_out"), forward
    assert any("1 step(s) in training mode only" in w.format() for w in spec.emit_warnings)
    x = torch.randn(4, 6)
    built.eval()
    torch.testing.assert_close(built(x), model.eval()(x), rtol=0, atol=0)
    model.train()
    built.train()
    torch.manual_seed(1)
    want = model(x)
    torch.manual_seed(1)
    got = built(x)
    assert isinstance(got, tuple) and len(got) == 2
    torch.testing.assert_close(tuple(got), tuple(want), rtol=0, atol=0)


def test_eval_mode_does_not_run_the_training_only_head() -> None:
    model = AuxNet(False)
    built, _ = rebuilt(model)
    calls: list[str] = []
    built.aux.register_forward_hook(lambda *_: calls.append("aux"))
    built.eval()(torch.randn(2, 6))
    assert calls == []
    built.train()(torch.randn(2, 6))
    assert calls == ["aux"]


class ModeArithmetic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) if self.training else torch.sigmoid(x)


def test_other_mode_dependent_computation_is_still_refused() -> None:
    with pytest.raises(
        EmitError,
        match=r"the model \(ModeArithmetic\): forward computes different things in training and eval mode",
    ) as err:
        netspec.emit(ModeArithmetic())
    # the real cause: where the two traces part, not a guess (x * 3 if training else x * 2 is now a number
    # argument that follows the mode, see below)
    assert (
        "(it branches on self.training: at step 2 eval mode calls torch.sigmoid, training mode calls torch.relu)"
        in (str(err.value))
    )


class ModeCall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x) + self.fc(x) if self.training else torch.sigmoid(x) + self.fc(x)


def test_mode_dependent_refusal_names_the_steps_that_differ() -> None:
    with pytest.raises(EmitError) as err:
        netspec.emit(ModeCall())
    message = str(err.value)
    assert message.startswith("the model (ModeCall): forward computes different things"), message
    assert "at step 2 eval mode calls torch.sigmoid, training mode calls torch.tanh" in message, message


class AuxFeedsBody(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            x = self.fc(x)  # both modes go on with a different x
        return x * 2


def test_a_training_only_step_feeding_the_rest_is_refused() -> None:
    with pytest.raises(EmitError, match=r"the model \(AuxFeedsBody\): forward computes different things"):
        netspec.emit(AuxFeedsBody())


class ModeDropout(nn.Module):
    """timm's and Hugging Face's attention: ``dropout_p=self.p if self.training else 0.0``."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.p = 0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.p if self.training else 0.0)


def test_a_number_argument_that_follows_the_mode_is_a_run_time_choice() -> None:
    torch.manual_seed(0)
    model = ModeDropout()
    built, spec = rebuilt(model)
    forward = spec.to_dict()["model"]["forward"]
    assert any(s.endswith("= 0.5 if training else 0.0") for s in forward), forward
    x = torch.randn(2, 5, 8)
    for training in (False, True):
        model.train(training)
        built.train(training)
        torch.manual_seed(4)
        want = model(x)
        torch.manual_seed(4)
        torch.testing.assert_close(built(x), want, rtol=0, atol=0)
