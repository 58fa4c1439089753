"""Emit of forwards whose inputs all default to None or that take ``**kwargs`` (Hugging Face style, issue 12
items J and L): ``emit(inputs=[...])`` names the Graph's inputs and fixes the rest; a trace that fails names
the line it failed at. Each emitted spec is rebuilt from its YAML, loaded strictly and compared with the
original module in eval and train mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import yaml

import netspec
from netspec.errors import EmitError


class HFStyle(nn.Module):
    """Every input defaults to None; ``**kwargs`` as transformers' ``Unpack[TransformersKwargs]``."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(11, 4)
        self.fc = nn.Linear(4, 3)
        self.drop = nn.Dropout(0.5)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: object,
    ) -> torch.Tensor:
        h = self.embed(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1)
        return self.fc(self.drop(h))


def rebuilt_from_yaml(spec: netspec.Spec) -> nn.Module:
    return netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model


def test_inputs_names_the_graphs_input_and_the_round_trip_is_exact() -> None:
    model = HFStyle().eval()
    spec = netspec.emit(model, inputs=["input_ids"], input_shape=[5], input_dtype="int64")
    data = spec.to_dict()
    assert data["model"]["inputs"] == ["input_ids"]
    assert data["input"] == {"shape": [5], "dtype": "int64"}
    notes = [w.format() for w in spec.emit_warnings]
    assert any("attention_mask, return_dict are fixed to their defaults and **kwargs empty" in n for n in notes), notes
    rebuilt = rebuilt_from_yaml(spec)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    ids = torch.randint(0, 11, (2, 5), generator=torch.Generator().manual_seed(0))
    for training in (False, True):
        model.train(training)
        rebuilt.train(training)
        torch.manual_seed(1)
        want = model(ids)
        torch.manual_seed(1)
        torch.testing.assert_close(rebuilt(ids), want, rtol=0, atol=0)


def test_inputs_with_two_names_keeps_the_forward_order() -> None:
    model = HFStyle().eval()
    spec = netspec.emit(model, inputs=["attention_mask", "input_ids"])
    assert spec.to_dict()["model"]["inputs"] == ["input_ids", "attention_mask"]
    rebuilt = rebuilt_from_yaml(spec).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    ids, mask = torch.randint(0, 11, (2, 5)), torch.rand(2, 5)
    torch.testing.assert_close(rebuilt(ids, mask), model(ids, mask), rtol=0, atol=0)


def test_an_unknown_input_name_is_refused_with_the_closest_argument() -> None:
    with pytest.raises(
        EmitError,
        match=r"the model \(HFStyle\): inputs= names 'input_id', which is not an argument of HFStyle\.forward; "
        r"did you mean 'input_ids'\?",
    ):
        netspec.emit(HFStyle(), inputs=["input_id"])


def test_without_inputs_the_refusal_points_at_inputs() -> None:
    with pytest.raises(EmitError, match=r"every forward input has a default[\s\S]*emit\(model, inputs=\[\.\.\.\]\)"):
        netspec.emit(HFStyle())


def test_inputs_on_a_container_is_refused() -> None:
    with pytest.raises(EmitError, match=r"inputs= chooses the arguments of a traced forward; Sequential"):
        netspec.emit(nn.Sequential(nn.Linear(2, 2)), inputs=["input"])


def test_input_dtype_needs_input_shape() -> None:
    with pytest.raises(EmitError, match=r"input_dtype= describes input_shape=; give both"):
        netspec.emit(HFStyle(), inputs=["input_ids"], input_dtype="int64")


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # the line the refusal names
            return x
        return -x


def test_a_forward_that_cannot_be_traced_names_its_file_and_line() -> None:
    line = DataDependent.forward.__code__.co_firstlineno + 1
    with pytest.raises(EmitError) as info:
        netspec.emit(DataDependent())
    message = str(info.value).splitlines()[0]
    assert message.startswith("the model (DataDependent): forward cannot be traced: "), message
    assert f"test_emit_inputs.py:{line}: if x.sum() > 0:" in message, message


class KwargsChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, hidden: torch.Tensor, scale: float = 1.0, **kwargs: object) -> torch.Tensor:
        return self.fc(hidden) * scale


class KwargsParent(nn.Module):
    def __init__(self, extra: bool) -> None:
        super().__init__()
        self.extra = extra
        self.layer = KwargsChild()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x, output_attentions=False) if self.extra else self.layer(x)


def test_a_child_taking_kwargs_is_traced_with_them_empty() -> None:
    model = KwargsParent(extra=False).eval()
    spec = netspec.emit(model)
    assert any("KwargsChild.forward's **kwargs is traced empty" in w.format() for w in spec.emit_warnings)
    rebuilt = rebuilt_from_yaml(spec).eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3, 4)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_a_keyword_only_kwargs_would_take_is_refused() -> None:
    with pytest.raises(
        EmitError,
        match=r"the model \(KwargsParent\): calls layer \(KwargsChild\) with output_attentions=\.\.\., which only "
        r"its \*\*kwargs takes",
    ):
        netspec.emit(KwargsParent(extra=True))
