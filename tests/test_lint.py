"""netspec.lint: modules and tensors PyTorch silently does not register."""

from __future__ import annotations

import torch
import torch.nn as nn

import netspec
from netspec.emitter.lint import ModelWarning, lint
from netspec.emitter.walker import emit


class ListOfLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = [nn.Linear(4, 4), nn.Linear(4, 4)]  # the classic mistake
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class Loose(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)
        self.heads = {"a": nn.Linear(4, 1), "b": nn.Linear(4, 1)}
        self.pair = (nn.ReLU(), nn.Tanh())
        self.mask = torch.tril(torch.ones(4, 4))
        self.scale = torch.ones(4, requires_grad=True)
        self.tables = [torch.zeros(3), torch.zeros(5)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) @ self.mask * self.scale


def test_modules_in_a_plain_list_are_reported_with_the_fix() -> None:
    found = lint(ListOfLayers())
    assert len(found) == 1
    w = found[0]
    assert isinstance(w, ModelWarning) and w.path == "layers"
    assert "2 nn.Module(s) (Linear) in a plain list" in w.message and "not trained" in w.message
    assert w.hint == "self.layers = nn.ModuleList([...])"
    # The parameters really are missing: this is what the warning is about.
    assert "layers.0.weight" not in ListOfLayers().state_dict()


def test_every_kind_of_unregistered_attribute() -> None:
    found = {w.path: w for w in lint(Loose())}
    assert set(found) == {"heads", "pair", "mask", "scale", "tables"}
    assert "nn.ModuleDict" in (found["heads"].hint or "")
    assert "in a plain tuple" in found["pair"].message
    assert "register_buffer('mask'" in (found["mask"].hint or "")
    assert "nn.Parameter" in (found["scale"].hint or "")  # it wants gradients: it should be trained
    assert "nn.ParameterList" in (found["tables"].hint or "")
    assert found["mask"].format().startswith("mask: warning: Loose.mask holds a plain tensor of shape [4, 4]")


def test_nested_modules_are_named_by_their_path() -> None:
    outer = nn.Sequential(nn.Linear(2, 2), ListOfLayers())
    assert [w.path for w in lint(outer)] == ["1.layers"]


def test_correct_models_are_clean() -> None:
    lstm = nn.LSTM(4, 8, num_layers=2)  # keeps its weights in a private list too: no false alarm
    transformer = nn.TransformerEncoderLayer(8, 2)  # keeps F.relu as a plain attribute: not a module
    aliased = nn.Module()
    aliased.a = nn.Linear(2, 2)
    aliased.shortcut = [aliased.a]  # an alias of a registered module is harmless
    built = netspec.load(__import__("pathlib").Path(__file__).resolve().parents[1] / "specs" / "resnet18.yaml").model
    for model in (lstm, transformer, aliased, built, nn.Sequential(nn.Conv2d(3, 3, 3))):
        assert lint(model) == []


def test_emit_attaches_lint_warnings() -> None:
    class Cached(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.history = [torch.zeros(1)]  # bookkeeping the forward never reads

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    spec = emit(Cached())
    assert [w.path for w in spec.emit_warnings] == ["history"]


def test_emit_of_a_list_of_layers_fails_and_shows_the_lint_finding() -> None:
    import pytest

    from netspec.errors import EmitError

    with pytest.raises(EmitError, match=r"(?s)not registered.*nn.ModuleList.*registration lint also found.*layers"):
        emit(ListOfLayers())
