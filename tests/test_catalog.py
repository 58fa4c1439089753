"""The layer catalogue: every public torch.nn module class, derived from torch, plus registered classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

import netspec
from netspec import LAYERS, NetspecError, SpecError
from netspec.catalog.argtypes import ArgMismatch
from netspec.catalog.checks import check_layer
from netspec.catalog.registry import CONTAINER_TYPES, UnknownName

OWN_LAYERS = [name for name in LAYERS.names() if LAYERS.get(name).origin == "netspec"]
TORCH_LAYERS = [name for name in LAYERS.names() if LAYERS.get(name).origin == "torch.nn"]

# Public torch.nn Module classes that are not layer types, and why.
NOT_LAYERS = {
    "Module": "the base class",
    "Container": "deprecated base class",
    "RNNBase": "base class of RNN/LSTM/GRU (needs a mode)",
    "RNNCellBase": "base class of the RNN cells",
    "DataParallel": "wraps an existing module",
    **dict.fromkeys(CONTAINER_TYPES - {"Graph"}, "a netspec node kind"),
}

# Values for required constructor arguments, by argument name.
SAMPLE: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "kernel_size": 3,
    "in_features": 4,
    "out_features": 4,
    "in1_features": 4,
    "in2_features": 4,
    "num_features": 4,
    "normalized_shape": [4],
    "embed_dim": 4,
    "num_heads": 2,
    "d_model": 8,
    "nhead": 2,
    "input_size": 4,
    "hidden_size": 4,
    "num_embeddings": 10,
    "embedding_dim": 4,
    "num_groups": 2,
    "num_channels": 4,
    "output_size": 2,
    "n_classes": 10,
    "num_classes": 10,
    "cutoffs": [2, 5],
    "groups": 2,
    "padding": 1,
    "value": 0.0,
    "threshold": 0.1,
    "size": 3,
    "norm_type": 2.0,
    "upscale_factor": 2,
    "downscale_factor": 2,
    "dim": 1,
    "unflattened_size": [2, 2],
    "num_layers": 2,
    "encoder_layer": {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2},
    "decoder_layer": {"type": "TransformerDecoderLayer", "d_model": 8, "nhead": 2},
}
# Entries whose constructor needs an argument torch's signature marks optional.
EXTRA: dict[str, dict[str, Any]] = {
    "FractionalMaxPool2d": {"output_ratio": 0.5},  # needs output_size or output_ratio
    "FractionalMaxPool3d": {"output_ratio": 0.5},
}
# Entries whose required arguments the table cannot fill, and why. Empty today: keep it explicit.
UNFILLABLE: dict[str, str] = {}


def _build_params() -> list[Any]:
    return [pytest.param(name, id=name) for name in TORCH_LAYERS]


def test_catalogue_is_every_public_torch_nn_module_class() -> None:
    public = {
        name
        for name in dir(nn)
        if not name.startswith("_") and isinstance(getattr(nn, name), type) and issubclass(getattr(nn, name), nn.Module)
    }
    assert set(TORCH_LAYERS) == public - set(NOT_LAYERS)
    assert len(TORCH_LAYERS) > 100
    for name in ("Conv2d", "BatchNorm2d", "LSTM", "MultiheadAttention", "TransformerEncoderLayer", "GELU"):
        assert name in LAYERS


# What a spec may pass to some layers, written out by hand from torch's documentation:
# argument -> (accepted values as the error messages spell them, default; REQ for required).
REQ = "required"
EXPECTED_PARAMS: dict[str, dict[str, tuple[str, Any]]] = {
    "Linear": {"in_features": ("int", REQ), "out_features": ("int", REQ), "bias": ("bool", True)},
    "Conv2d": {
        "in_channels": ("int", REQ),
        "out_channels": ("int", REQ),
        "kernel_size": ("int or [int, int]", REQ),
        "stride": ("int or [int, int]", 1),
        "padding": ("str or int or [int, int]", 0),
        "dilation": ("int or [int, int]", 1),
        "groups": ("int", 1),
        "bias": ("bool", True),
        "padding_mode": ("one of 'zeros', 'reflect', 'replicate', 'circular'", "zeros"),
    },
    "ReLU": {"inplace": ("bool", False)},
    "Dropout": {"p": ("number", 0.5), "inplace": ("bool", False)},
    "Identity": {},
    "AvgPool1d": {
        "kernel_size": ("int or [int]", REQ),
        "stride": ("int or [int] or null", None),
        "padding": ("int or [int]", 0),
        "ceil_mode": ("bool", False),
        "count_include_pad": ("bool", True),
    },
    "RNN": {  # num_layers ... proj_size come from RNNBase; nonlinearity is taken through **kwargs
        "input_size": ("int", REQ),
        "hidden_size": ("int", REQ),
        "num_layers": ("int", 1),
        "bias": ("bool", True),
        "batch_first": ("bool", False),
        "dropout": ("number", 0.0),
        "bidirectional": ("bool", False),
        "proj_size": ("int", 0),
        "nonlinearity": ("one of 'tanh', 'relu'", "tanh"),
    },
    "MultiheadAttention": {  # torch leaves embed_dim/num_heads unannotated
        "embed_dim": ("int", REQ),
        "num_heads": ("int", REQ),
        "dropout": ("number", 0.0),
        "bias": ("bool", True),
        "add_bias_kv": ("bool", False),
        "add_zero_attn": ("bool", False),
        "kdim": ("int or null", None),
        "vdim": ("int or null", None),
        "batch_first": ("bool", False),
    },
    "Embedding": {
        "num_embeddings": ("int", REQ),
        "embedding_dim": ("int", REQ),
        "padding_idx": ("int or null", None),
        "max_norm": ("number or null", None),
        "norm_type": ("number", 2.0),
        "scale_grad_by_freq": ("bool", False),
        "sparse": ("bool", False),
    },
}
# Layers whose constructor takes device=/dtype= (built in place) and layers that take neither.
FACTORY_KWARGS = {"Linear": True, "Conv2d": True, "LSTM": True, "ReLU": False, "Dropout": False, "Upsample": False}


@pytest.mark.parametrize("name", sorted(EXPECTED_PARAMS))
def test_entry_has_the_arguments_torch_documents(name: str) -> None:
    layer = LAYERS.get(name)
    assert layer.name == name and layer.cls is getattr(nn, name) and layer.origin == "torch.nn"
    got = {p.name: (p.type.describe(), REQ if p.required else p.default) for p in layer.params.values()}
    assert got == EXPECTED_PARAMS[name]


@pytest.mark.parametrize(("name", "takes"), sorted(FACTORY_KWARGS.items()))
def test_entry_knows_whether_the_class_takes_device_and_dtype(name: str, takes: bool) -> None:
    assert LAYERS.get(name).takes_factory_kwargs is takes


@pytest.mark.parametrize("name", TORCH_LAYERS)
def test_every_torch_default_passes_its_own_argument_check(name: str) -> None:
    """Writing torch's default out (``stride: null`` on AvgPool1d) is accepted: the argument types
    derived from the signature admit every value the signature itself uses."""
    layer = LAYERS.get(name)
    for param in layer.params.values():
        if param.required or callable(param.default):  # Transformer's activation=F.relu: not spellable
            continue
        default = list(param.default) if isinstance(param.default, tuple) else param.default
        try:
            param.type.check(default)
        except ArgMismatch as err:
            pytest.fail(f"{name}.{param.name}: torch's default {param.default!r} is refused: {err}")


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("name", _build_params())
def test_every_entry_builds_on_meta_from_sample_arguments(name: str) -> None:
    layer = LAYERS.get(name)
    if name in UNFILLABLE:
        pytest.skip(UNFILLABLE[name])
    missing = [p.name for p in layer.params.values() if p.required and p.name not in SAMPLE]
    assert not missing, f"add sample values for {missing} to SAMPLE, or list {name} in UNFILLABLE with a reason"
    args = {p.name: SAMPLE[p.name] for p in layer.params.values() if p.required}
    args.update(EXTRA.get(name, {}))
    built = netspec.build({"netspec": 1, "model": {"type": name, **args}}, device="meta")
    assert type(built.model) is layer.cls
    assert all(t.device.type == "meta" for t in [*built.model.parameters(), *built.model.buffers()])


# -- lookups --------------------------------------------------------------------------------------


def test_get_suggests_close_names() -> None:
    with pytest.raises(UnknownName) as info:
        LAYERS.get("Conv2")
    assert isinstance(info.value, KeyError) and isinstance(info.value, NetspecError)
    assert "did you mean 'Conv2d'" in str(info.value)
    assert "Conv2" not in LAYERS


def test_names_glob() -> None:
    assert LAYERS.names("Conv?d") == ["Conv1d", "Conv2d", "Conv3d"]
    assert LAYERS.names("NoSuch*") == []


def test_argument_types_come_from_torch_annotations() -> None:
    conv = LAYERS.get("Conv2d")
    assert conv.params["kernel_size"].type.describe() == "int or [int, int]"
    assert conv.params["bias"].type.kind == "bool"
    assert conv.params["padding_mode"].type.kind == "literal"
    assert [p.name for p in conv.params.values() if p.required] == ["in_channels", "out_channels", "kernel_size"]
    lstm = LAYERS.get("LSTM")  # LSTM(*args, **kwargs) forwards to RNNBase: its real arguments are found there
    assert {"input_size", "hidden_size", "num_layers", "batch_first"} <= set(lstm.params)
    assert "mode" not in lstm.params
    assert LAYERS.get("ReLU").params.keys() == {"inplace"}


def test_argument_values_are_converted_for_torch() -> None:
    built = netspec.build(
        {
            "netspec": 1,
            "model": {
                "type": "Sequential",
                "layers": {
                    "conv": {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": [3, 5]},
                    "ln": {"type": "LayerNorm", "normalized_shape": 4},
                },
            },
            "loss": {"type": "CrossEntropyLoss", "weight": [1.0, 2.0], "label_smoothing": 0.1},
        }
    )
    assert built.model.conv.kernel_size == (3, 5)
    assert built.model.ln.normalized_shape == (4,)
    assert isinstance(built.loss, nn.CrossEntropyLoss)
    assert torch.equal(built.loss.weight, torch.tensor([1.0, 2.0]))


def test_argtype_checks() -> None:
    kernel = LAYERS.get("Conv2d").params["kernel_size"].type
    assert kernel.check(3) == 3
    assert kernel.check([3, 5]) == (3, 5)
    for bad in (True, 3.0, "3", [3], [3, 3, 3], [3, "3"]):
        with pytest.raises(ArgMismatch, match=r"expected int or \[int, int\], got"):
            kernel.check(bad)
    p = LAYERS.get("Dropout").params["p"].type
    assert p.check(0) == 0 and p.check(0.5) == 0.5
    with pytest.raises(ArgMismatch, match="got bool true"):
        p.check(True)


# -- semantic checks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "args", "arg", "words"),
    [
        ("Dropout", {"p": -0.1}, "p", "must be in [0, 1]"),
        ("GroupNorm", {"num_groups": 3, "num_channels": 16}, "num_groups", "does not divide"),
        ("Conv2d", {"padding": "same", "stride": [1, 2]}, "padding", "needs stride 1"),
        ("Conv2d", {"padding": "full"}, "padding", "'same', 'valid' or a size"),
        ("Conv1d", {"padding": -1}, "padding", "must not be negative"),
        ("MaxPool2d", {"kernel_size": 2, "stride": 0}, "stride", "must be positive"),
        ("Linear", {"in_features": 0}, "in_features", "must be positive"),
        ("TransformerEncoderLayer", {"d_model": 10, "nhead": 4}, "nhead", "not divisible"),
    ],
)
def test_check_layer_finds_impossible_values(name: str, args: dict[str, Any], arg: str, words: str) -> None:
    found = check_layer(LAYERS.get(name), args)
    assert [(a, words in message) for a, message, _ in found] == [(arg, True)]


@pytest.mark.parametrize(
    ("name", "args"),
    [
        ("Dropout", {"p": 0.0}),
        ("Dropout", {"p": 1.0}),
        ("GroupNorm", {"num_groups": 4, "num_channels": 16}),
        ("Conv2d", {"in_channels": 4, "out_channels": 8, "padding": "same", "stride": 1}),
        ("Conv2d", {"padding": "valid", "stride": 2}),
        ("MultiheadAttention", {"embed_dim": 8, "num_heads": 2}),
        ("ZeroPad2d", {"padding": [-1, 1, -1, 1]}),  # torch crops where a pad is negative (timm's NASNet)
        ("ConstantPad1d", {"padding": [-1, 2], "value": 0.5}),
    ],
)
def test_check_layer_accepts_possible_values(name: str, args: dict[str, Any]) -> None:
    assert check_layer(LAYERS.get(name), args) == []


# -- netspec.register -----------------------------------------------------------------------------


class Scale(nn.Module):
    def __init__(self, features: int, factor: float = 2.0, p: float = 0.5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(features))
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight * self.factor


class Other(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.usefixtures("clean_registry")
def test_register_makes_a_class_a_spec_type() -> None:
    assert netspec.register(Scale) is Scale
    entry = LAYERS.get("Scale")
    assert entry.origin == "registered" and entry.cls is Scale
    assert entry.params["features"].required and entry.params["factor"].default == 2.0
    spec = {
        "netspec": 1,
        "input": {"shape": [3]},
        "model": {"type": "Sequential", "layers": {"s": {"type": "Scale", "features": 3, "factor": 0.5, "p": 7.0}}},
    }
    built = netspec.build(spec)  # semantic checks are torch's layers' only: p=7.0 is this class's business
    assert isinstance(built.model.s, Scale)
    assert list(built.model.state_dict()) == ["s.weight"]
    assert torch.equal(built.model(torch.ones(1, 3)), torch.full((1, 3), 0.5))


@pytest.mark.usefixtures("clean_registry")
def test_registered_arguments_are_checked_before_building() -> None:
    netspec.register(Scale)
    with pytest.raises(SpecError) as info:
        netspec.build({"netspec": 1, "model": {"type": "Scale", "features": "x", "facter": 1.0}})
    text = str(info.value)
    assert "model.features: Scale.features: expected int, got str 'x'" in text
    assert "model.facter: Scale has no argument 'facter'" in text and "did you mean 'factor'" in text


@pytest.mark.usefixtures("clean_registry")
def test_register_refuses_duplicates_unless_replace() -> None:
    netspec.register(Scale)
    netspec.register(Scale)  # the same class again (a re-imported module) is harmless
    with pytest.raises(NetspecError, match="already registered; pass replace=True"):
        netspec.register(Other, name="Scale")
    assert LAYERS.get("Scale").cls is Scale
    netspec.register(Other, name="Scale", replace=True)
    assert LAYERS.get("Scale").cls is Other
    with pytest.raises(NetspecError, match="already registered"):
        netspec.register(Other, name="Conv2d")  # torch's own names are taken too
    assert LAYERS.get("Conv2d").cls is nn.Conv2d


@pytest.mark.usefixtures("clean_registry")
def test_register_as_decorator_with_a_name() -> None:
    @netspec.register(name="MyIdentity")
    class Ident(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    assert LAYERS.get("MyIdentity").cls is Ident
    assert isinstance(netspec.build({"netspec": 1, "model": "MyIdentity"}).model, Ident)


@pytest.mark.usefixtures("clean_registry")
def test_register_refuses_non_modules_and_node_kinds() -> None:
    with pytest.raises(NetspecError, match=r"expects an nn\.Module subclass"):
        netspec.register(int)  # type: ignore[arg-type]
    for kind in ("Sequential", "ModuleList", "Graph"):
        with pytest.raises(NetspecError, match="node kind"):
            netspec.register(Other, name=kind)


def test_registry_is_restored_after_registering_tests() -> None:
    assert "Scale" not in LAYERS and "MyIdentity" not in LAYERS


def test_registered_class_with_kwargs_accepts_any_keyword() -> None:
    class Configurable(nn.Module):
        def __init__(self, width: int = 2, **options: object) -> None:
            super().__init__()
            self.width, self.options = width, options

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    netspec.register(Configurable, name="ConfigurableForTest")
    model = netspec.build({"netspec": 1, "model": {"type": "ConfigurableForTest", "width": 3, "colour": "red"}}).model
    assert model.width == 3 and model.options == {"colour": "red"}
    with pytest.raises(netspec.SpecError, match="expected int"):
        netspec.build({"netspec": 1, "model": {"type": "ConfigurableForTest", "width": "wide"}})


# -- thread safety and the registry version --------------------------------------------------------

FIRST_LOOKUPS = """
import json, sys, threading
from netspec.catalog.registry import LAYERS

names = sys.argv[1:]
assert LAYERS.version == 0, "the catalogue was scanned before the threads started"
barrier = threading.Barrier(len(names))
failures = []

def first_lookup(name):
    barrier.wait()  # every thread asks at the same moment, while the catalogue is still empty
    try:
        if name not in LAYERS:
            failures.append(f"{name}: not in the catalogue")
        elif LAYERS.get(name).cls.__name__ != name:
            failures.append(f"{name}: wrong class")
    except Exception as err:
        failures.append(f"{name}: {type(err).__name__}: {err}")

threads = [threading.Thread(target=first_lookup, args=(n,)) for n in names]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"failures": failures, "size": len(LAYERS)}))
"""

# Spread over dir(torch.nn), so that names late in the scan are asked for too.
SIXTEEN = [
    "AdaptiveAvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Embedding", "GELU", "GRU", "LayerNorm",
    "Linear", "LSTM", "MultiheadAttention", "ReLU", "Softmax", "TransformerEncoderLayer", "Upsample", "ZeroPad2d",
]  # fmt: skip


def test_sixteen_threads_doing_the_first_lookup_at_once_all_find_their_layer(tmp_path: Path) -> None:
    """The first scan of torch.nn is locked: no thread sees a half-filled catalogue ("unknown layer type")."""
    root = Path(__file__).resolve().parent.parent
    for _ in range(3):  # fresh interpreters: the scan really is the first each time
        proc = subprocess.run(
            [sys.executable, "-c", FIRST_LOOKUPS, *SIXTEEN],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        result = json.loads(proc.stdout.splitlines()[-1])
        assert result["failures"] == []
        assert result["size"] == len(TORCH_LAYERS) + len(OWN_LAYERS)  # torch.nn's and netspec's StochasticDepth


@pytest.mark.usefixtures("clean_registry")
def test_register_bumps_the_version_and_replace_reaches_the_class_lookup() -> None:
    from netspec.emitter.layers import catalogue_entry

    before = LAYERS.version
    netspec.register(Scale)
    assert LAYERS.version > before
    entry = catalogue_entry(Scale)
    assert entry is not None and entry.name == "Scale"
    at = LAYERS.version
    netspec.register(Other, name="Scale", replace=True)  # same name, same catalogue size
    assert LAYERS.version > at
    assert catalogue_entry(Scale) is None  # the old class is no longer a catalogue layer
    replaced = catalogue_entry(Other)
    assert replaced is not None and replaced.name == "Scale" and replaced.cls is Other
    assert catalogue_entry(nn.Conv2d) is LAYERS.get("Conv2d")


@pytest.mark.usefixtures("clean_registry")
def test_emit_follows_a_replaced_registration() -> None:
    class Before(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    netspec.register(Before, name="Custom")
    first = netspec.emit(nn.Sequential(Before()))  # fills the class table while Before is "Custom"
    assert first.to_dict()["model"]["layers"] == ["Custom"]
    netspec.register(Other, name="Custom", replace=True)
    spec = netspec.emit(nn.Sequential(Other()))
    assert spec.to_dict()["model"]["layers"] == ["Custom"]
