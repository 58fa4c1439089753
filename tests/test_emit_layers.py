"""netspec.emit on single catalogue layers: hyperparameters recovered from the instance, defaults left out."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import netspec
from netspec.emitter.walker import emit
from netspec.errors import EmitError


def node_of(layer: nn.Module) -> object:
    return emit(layer).to_dict()["model"]


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        (nn.Conv2d(3, 8, 3), {"type": "Conv2d", "in_channels": 3, "out_channels": 8, "kernel_size": 3}),
        (
            nn.Conv2d(3, 8, (1, 3), stride=2, padding=(0, 1), bias=False, padding_mode="reflect"),
            {
                "type": "Conv2d",
                "in_channels": 3,
                "out_channels": 8,
                "kernel_size": [1, 3],
                "stride": 2,
                "padding": [0, 1],
                "bias": False,
                "padding_mode": "reflect",
            },
        ),
        (
            nn.Conv1d(4, 4, 5, padding="same", groups=2),
            {"type": "Conv1d", "in_channels": 4, "out_channels": 4, "kernel_size": 5, "padding": "same", "groups": 2},
        ),
        (
            nn.ConvTranspose2d(8, 4, 2, stride=2, output_padding=1),
            {
                "type": "ConvTranspose2d",
                "in_channels": 8,
                "out_channels": 4,
                "kernel_size": 2,
                "stride": 2,
                "output_padding": 1,
            },
        ),
        (nn.Linear(5, 7, bias=False), {"type": "Linear", "in_features": 5, "out_features": 7, "bias": False}),
        (
            nn.BatchNorm2d(16, eps=1e-3, momentum=0.01, affine=False),
            {"type": "BatchNorm2d", "num_features": 16, "eps": 1e-3, "momentum": 0.01, "affine": False},
        ),
        (
            nn.LayerNorm((4, 8), elementwise_affine=False),
            {"type": "LayerNorm", "normalized_shape": [4, 8], "elementwise_affine": False},
        ),
        (nn.LayerNorm(8, bias=False), {"type": "LayerNorm", "normalized_shape": 8, "bias": False}),
        (nn.GroupNorm(4, 16, eps=1e-6), {"type": "GroupNorm", "num_groups": 4, "num_channels": 16, "eps": 1e-6}),
        (
            nn.Embedding(100, 16, padding_idx=-1),
            {"type": "Embedding", "num_embeddings": 100, "embedding_dim": 16, "padding_idx": 99},
        ),
        (nn.MaxPool2d(3, stride=2, padding=1), {"type": "MaxPool2d", "kernel_size": 3, "stride": 2, "padding": 1}),
        (nn.MaxPool2d(2), {"type": "MaxPool2d", "kernel_size": 2}),  # stride=None is stored as kernel_size
        (nn.AdaptiveAvgPool2d((1, 1)), {"type": "AdaptiveAvgPool2d", "output_size": 1}),
        (nn.Dropout(0.25), {"type": "Dropout", "p": 0.25}),
        (nn.LeakyReLU(0.2, inplace=True), {"type": "LeakyReLU", "negative_slope": 0.2, "inplace": True}),
        (nn.GELU(approximate="tanh"), {"type": "GELU", "approximate": "tanh"}),
        (nn.Softmax(dim=-1), {"type": "Softmax", "dim": -1}),
        (nn.Flatten(2), {"type": "Flatten", "start_dim": 2}),
        (
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            {"type": "Upsample", "scale_factor": 2.0, "mode": "bilinear", "align_corners": False},
        ),
        (nn.PReLU(8), {"type": "PReLU", "num_parameters": 8}),
        (nn.ZeroPad2d((1, 1, 2, 2)), {"type": "ZeroPad2d", "padding": [1, 1, 2, 2]}),
        (
            nn.GRU(4, 8, num_layers=2, dropout=0.1),
            {"type": "GRU", "input_size": 4, "hidden_size": 8, "num_layers": 2, "dropout": 0.1},
        ),
        (nn.ReLU(), "ReLU"),
        (nn.Identity(), "Identity"),
    ],
    ids=lambda v: v.__class__.__name__ if isinstance(v, nn.Module) else "",
)
def test_layer_arguments(layer: nn.Module, expected: object) -> None:
    assert node_of(layer) == expected
    rebuilt = netspec.build(emit(layer)).model
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in layer.state_dict().items()}
    if not isinstance(layer, nn.AdaptiveAvgPool2d):  # prints output_size=1 for (1, 1): the same layer
        assert repr(rebuilt) == repr(layer)


def test_transformer_layer_activation_function_becomes_its_name() -> None:
    layer = nn.TransformerEncoderLayer(
        16, 4, 32, dropout=0.2, activation="gelu", layer_norm_eps=1e-6, norm_first=True, bias=False
    )
    assert node_of(layer) == {
        "type": "TransformerEncoderLayer",
        "d_model": 16,
        "nhead": 4,
        "dim_feedforward": 32,
        "dropout": 0.2,
        "activation": "gelu",
        "layer_norm_eps": 1e-6,
        "norm_first": True,
        "bias": False,
    }
    # An activation module is written the same way when it computes the same function.
    assert node_of(nn.TransformerDecoderLayer(16, 4, 32, activation=nn.ReLU()))["type"] == "TransformerDecoderLayer"


def test_rnn_nonlinearity_round_trips() -> None:
    rnn = nn.RNN(3, 4, nonlinearity="relu")
    assert node_of(rnn) == {"type": "RNN", "input_size": 3, "hidden_size": 4, "nonlinearity": "relu"}
    rebuilt = netspec.build(emit(rnn)).model
    assert rebuilt.nonlinearity == "relu"


def test_unexpressible_hyperparameters_are_errors_naming_the_module() -> None:
    with pytest.raises(EmitError, match=r"activation .*cannot be written in a spec"):
        emit(nn.TransformerEncoderLayer(8, 2, activation=torch.tanh))


def test_registered_class_is_emitted_as_a_layer() -> None:
    class Scale(nn.Module):
        def __init__(self, features: int, init: float = 1.0) -> None:
            super().__init__()
            self.features = features
            self.init = init
            self.weight = nn.Parameter(torch.full((features,), init))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * self.weight

    netspec.register(Scale, name="EmitTestScale")
    spec = emit(nn.Sequential(nn.Linear(3, 3), Scale(3, init=0.5)))
    assert spec.to_dict()["model"]["layers"][1] == {"type": "EmitTestScale", "features": 3, "init": 0.5}


def test_mismatch_between_arguments_and_weights_is_caught() -> None:
    class Odd(nn.Module):  # an attribute that lies about the constructor argument
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)
            self.fc.in_features = 5

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)

    with pytest.raises(EmitError, match=r"fc \(Linear\): rebuilding it .* gives a different state_dict"):
        emit(Odd())


def test_lazy_layers_must_be_materialised() -> None:
    with pytest.raises(EmitError):
        emit(nn.Sequential(nn.LazyLinear(3)))
    lazy = nn.Sequential(nn.LazyLinear(3))
    lazy(torch.randn(2, 5))  # after one forward it is an ordinary Linear
    assert emit(lazy).to_dict()["model"]["layers"][0] == {"type": "Linear", "in_features": 5, "out_features": 3}


def test_containers() -> None:
    from collections import OrderedDict

    named = nn.Sequential(OrderedDict(conv=nn.Conv2d(1, 2, 3), act=nn.ReLU()))
    assert node_of(named) == {
        "type": "Sequential",
        "layers": {"conv": {"type": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3}, "act": "ReLU"},
    }
    listed = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 3)])
    assert node_of(listed)["layers"][1] == {"type": "Linear", "in_features": 2, "out_features": 3}  # type: ignore[index]
    same = nn.Sequential(*[nn.Linear(4, 4) for _ in range(5)])
    assert node_of(same) == {
        "type": "Sequential",
        "repeat": 5,
        "layer": {"type": "Linear", "in_features": 4, "out_features": 4},
    }
    heads = nn.ModuleDict({"a": nn.Linear(2, 1), "b": nn.Identity()})
    assert node_of(heads) == {
        "type": "ModuleDict",
        "layers": {"a": {"type": "Linear", "in_features": 2, "out_features": 1}, "b": "Identity"},
    }
    params = nn.ParameterList([nn.Parameter(torch.zeros(2, 3)), nn.Parameter(torch.ones(4))])
    assert node_of(params) == {
        "type": "ParameterList",
        "parameters": [{"shape": [2, 3], "init": "zeros"}, {"shape": [4], "init": "ones"}],
    }
    rebuilt = netspec.build(emit(nn.ModuleDict({"p": nn.ParameterDict({"w": nn.Parameter(torch.ones(3))})}))).model
    assert list(rebuilt.state_dict()) == ["p.w"]


class LayerNormNoBias(nn.LayerNorm):
    """timm's kind of subclass: other defaults, the parent's forward."""

    def __init__(self, normalized_shape: int, eps: float = 1e-5) -> None:
        super().__init__(normalized_shape, eps=eps, bias=False)


@pytest.mark.parametrize(
    "layer",
    [
        LayerNormNoBias(8),
        nn.MaxPool2d(kernel_size=[2, 2], stride=[2, 2]),  # lists where torch documents tuples
        nn.Unfold(kernel_size=[2, 3], stride=[1, 1]),
    ],
    ids=["default-only-subclass", "maxpool-lists", "unfold-lists"],
)
def test_equivalent_layers_are_compared_by_arguments_not_repr_text(layer: nn.Module) -> None:
    """The emitted layer is rebuilt and compared argument by argument: a list where torch prints a tuple,
    or a subclass that only changes defaults, is the same layer (the repr text differs)."""
    model = nn.Sequential(layer).eval()
    spec = emit(model)
    rebuilt = netspec.build(spec).model.eval()
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 8) if isinstance(layer, nn.LayerNorm) else torch.randn(1, 2, 6, 6)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_a_changed_argument_is_still_refused() -> None:
    """Comparing arguments stays strict: an eps the emitted arguments cannot reproduce is an EmitError."""
    from netspec.emitter.layers import LayerVerifier

    with pytest.raises(EmitError, match=r"eps=1e-05.*eps=0\.1|eps=0\.1.*eps=1e-05"):
        LayerVerifier().verify(nn.LayerNorm(4, eps=0.1), {"type": "LayerNorm", "normalized_shape": [4]}, "norm")
