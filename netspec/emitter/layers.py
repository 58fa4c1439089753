"""Catalogue layers -> spec layer nodes: hyperparameters recovered from a module instance.

In: an instance of a catalogue class (``nn.Conv2d``, ``nn.LSTM``, ``nn.TransformerEncoder``,
a ``netspec.register``-ed class ...) and its ``LayerType``. Out: the node's arguments, only
those that differ from the constructor's defaults, written the way a spec writes them (lists
for tuples, ``3`` for ``(3, 3)`` where an int is accepted, ``bias: false`` for a missing bias,
``activation: gelu`` for ``F.gelu``, nested nodes for module arguments).

Recovery is generic — each constructor parameter is read from the instance attribute of the
same name — plus a small table for what torch stores differently (``_SPECIAL``). Every emitted
layer is verified by rebuilding it on the meta device: its state_dict names and shapes and
every submodule's ``extra_repr`` must match the original, else ``EmitError`` names the module
path and class.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..catalog.argtypes import ArgMismatch, describe_value
from ..catalog.registry import LAYERS, LayerType
from ..errors import EmitError

META = torch.device("meta")
# "(3, 3)" and "(3,)" print differently from "3" but mean the same to every torch layer.
OMIT: Any = object()  # a special-table value meaning "leave the argument at its default"

# Activation functions torch's Transformer layers accept, by identity, and their spec names.
_ACTIVATIONS: dict[int, str] = {id(F.relu): "relu", id(torch.relu): "relu", id(F.gelu): "gelu"}
# Node-typed arguments: module values are emitted as nested nodes through this callback.
EmitNested = Callable[[nn.Module, str], Any]


def where(path: str, module: nn.Module) -> str:
    """How messages name a module: ``encoder.layers.0 (TransformerEncoderLayer)``."""
    return f"{path or 'the model'} ({type(module).__name__})"


def activation_name(value: Any, path: str, owner: nn.Module) -> str:
    """``F.relu``/``F.gelu``/``nn.ReLU()``/``nn.GELU()`` -> ``"relu"``/``"gelu"``, the names the spec takes."""
    if isinstance(value, str):
        return value
    if id(value) in _ACTIVATIONS:
        return _ACTIVATIONS[id(value)]
    if isinstance(value, nn.ReLU):
        return "relu"
    if isinstance(value, nn.GELU) and value.approximate == "none":
        return "gelu"
    raise EmitError(
        f"{where(path, owner)}: activation {value!r} cannot be written in a spec; expected F.relu or F.gelu "
        "(the spec takes activation: relu or gelu)"
    )


def _transformer_layer(m: Any, path: str) -> dict[str, Any]:
    return {
        "d_model": m.self_attn.embed_dim,
        "nhead": m.self_attn.num_heads,
        "dim_feedforward": m.linear1.out_features,
        "dropout": m.dropout.p,
        "activation": activation_name(m.activation, path, m),
        "layer_norm_eps": m.norm1.eps,
        "batch_first": m.self_attn.batch_first,
        "bias": m.linear1.bias is not None,
    }


def _transformer(m: Any, path: str) -> dict[str, Any]:
    first = m.encoder.layers[0] if len(m.encoder.layers) else None
    out: dict[str, Any] = {
        "num_encoder_layers": len(m.encoder.layers),
        "num_decoder_layers": len(m.decoder.layers),
    }
    if first is not None:
        out.update({k: v for k, v in _transformer_layer(first, f"{path}.encoder.layers.0").items() if k != "d_model"})
        out["norm_first"] = first.norm_first
    if isinstance(getattr(m.encoder, "norm", None), nn.LayerNorm):
        out["layer_norm_eps"] = m.encoder.norm.eps
    return out


def _attention(m: Any, path: str) -> dict[str, Any]:
    return {
        "bias": m.in_proj_bias is not None,
        "add_bias_kv": m.bias_k is not None,
        "kdim": OMIT if m.kdim == m.embed_dim else m.kdim,
        "vdim": OMIT if m.vdim == m.embed_dim else m.vdim,
    }


def _stack(layer_arg: str) -> Callable[[Any, str], dict[str, Any]]:
    def recover(m: Any, path: str) -> dict[str, Any]:
        if len(m.layers) == 0:
            raise EmitError(f"{where(path, m)}: has no layers, so its {layer_arg} cannot be recovered")
        return {layer_arg: m.layers[0], "num_layers": len(m.layers), "norm": m.norm}

    return recover


def _pool_stride(m: Any, path: str) -> dict[str, Any]:
    # torch stores stride=None as stride=kernel_size
    return {"stride": OMIT} if getattr(m, "stride", None) == getattr(m, "kernel_size", object()) else {}


_SPECIAL: dict[type[nn.Module], Callable[[Any, str], dict[str, Any]]] = {
    nn.TransformerEncoderLayer: _transformer_layer,
    nn.TransformerDecoderLayer: _transformer_layer,
    nn.Transformer: _transformer,
    nn.MultiheadAttention: _attention,
    nn.TransformerEncoder: _stack("encoder_layer"),
    nn.TransformerDecoder: _stack("decoder_layer"),
}
_POOLS = (
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._LPPoolNd,
)


def _special(module: nn.Module, path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(module, _POOLS):
        out.update(_pool_stride(module, path))
    for klass in type(module).__mro__:
        if klass in _SPECIAL:
            out.update(_SPECIAL[klass](module, path))
            break
    return out


def plain(value: Any, *, unwrap_scalars: bool = False) -> Any:
    """Tuples, torch.Size and tensors -> lists; scalars unchanged. ``unwrap_scalars``: a one-element
    tensor (an optimizer's tensor ``lr``) becomes its number."""
    if isinstance(value, torch.Tensor):
        if unwrap_scalars and value.numel() == 1:
            return value.item()
        return value.detach().cpu().tolist()
    if isinstance(value, (tuple, list)):
        return [plain(v, unwrap_scalars=unwrap_scalars) for v in value]
    return value


def same_value(a: Any, b: Any) -> bool:
    """Equality that keeps ``True`` apart from ``1`` and compares lists item by item."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, list) or isinstance(b, list):
        return False
    try:
        return bool(a == b)
    except (RuntimeError, ValueError, TypeError):  # a tensor's or array's == has no single truth value
        return a is b


def _collapse(value: Any, layer: LayerType, name: str) -> Any:
    """``[3, 3]`` -> ``3`` when every item is equal and the argument also accepts a single value."""
    if not isinstance(value, list) or not value or any(isinstance(v, list) for v in value):
        return value
    if any(not same_value(v, value[0]) for v in value):
        return value
    try:
        layer.params[name].type.check(value[0])
    except ArgMismatch:
        return value
    return value[0]


def _normalise(name: str, value: Any, layer: LayerType, module: nn.Module, path: str, nested: EmitNested) -> Any:
    if isinstance(value, nn.Module):
        if not layer.params[name].type.is_node:
            raise EmitError(
                f"{where(path, module)}: argument {name!r} holds a {type(value).__name__} module, which a spec "
                "can only give where the constructor takes a layer node"
            )
        return nested(value, f"{path}.{name}" if path else name)
    if callable(value) and not isinstance(value, (torch.Tensor, type)):
        return activation_name(value, path, module)
    return _collapse(plain(value), layer, name)


def _default(layer: LayerType, name: str) -> Any:
    default = layer.params[name].default
    if callable(default) and id(default) in _ACTIVATIONS:
        return _ACTIVATIONS[id(default)]
    return plain(default)


def layer_args(module: nn.Module, layer: LayerType, path: str, nested: EmitNested) -> dict[str, Any]:
    """The spec arguments of ``module`` (non-default values only), in constructor order."""
    special = _special(module, path)
    args: dict[str, Any] = {}
    for name, param in layer.params.items():
        if name in special:
            value = special[name]
            if value is OMIT:
                continue
        elif hasattr(module, name):
            value = getattr(module, name)
            if (
                param.default is not None
                and isinstance(param.default, bool)
                and (value is None or isinstance(value, torch.Tensor))
            ):
                # bias=False is stored as module.bias = None; without weights (affine=False) it means nothing.
                if getattr(module, "weight", None) is None:
                    continue
                value = value is not None
        elif param.required:
            raise EmitError(
                f"{where(path, module)}: cannot recover required argument {name!r}: the instance has no "
                f"attribute of that name; register the class with attributes named like its __init__ arguments"
            )
        else:
            continue
        if value is None and param.default is None:
            continue
        value = _normalise(name, value, layer, module, path, nested)
        if not isinstance(value, dict) and not param.required and same_value(value, _default(layer, name)):
            continue
        if not isinstance(value, dict):
            try:
                param.type.check(value)
            except ArgMismatch as err:
                raise EmitError(
                    f"{where(path, module)}: recovered {name}={describe_value(value)} does not fit the spec "
                    f"argument: {err}"
                ) from None
        args[name] = value
    return args


def catalogue_entry(cls: type[nn.Module]) -> LayerType | None:
    """The catalogue entry whose class is exactly ``cls`` (torch.nn or registered under any name), else None.

    The class table follows the catalogue's version: a ``netspec.register`` call, ``replace=True``
    included, is seen by the next lookup."""
    return LAYERS.by_class().get(cls)


# -- verification ---------------------------------------------------------------------------------------


def construct_meta(node: Any) -> nn.Module:
    """Build a layer node (with nested layer nodes as arguments) on the meta device."""
    if isinstance(node, str):
        node = {"type": node}
    layer = LAYERS.get(node["type"])
    raw = {k: v for k, v in node.items() if k != "type"}
    nested = {k: construct_meta(v) for k, v in raw.items() if layer.params[k].type.is_node and v is not None}
    kwargs, problems = layer.check_args({k: v for k, v in raw.items() if k not in nested})
    if problems:
        raise EmitError("; ".join(message for _, message, _ in problems))
    return layer.construct({**kwargs, **nested}, META, None)


def _forward_class(module: nn.Module) -> str:
    """The class whose ``forward`` runs: a subclass that only changes defaults (timm's ``LayerNormNoBias``)
    computes what its base computes, and compares equal to it."""
    for klass in type(module).__mro__:
        if "forward" in vars(klass):
            return klass.__qualname__
    return type(module).__qualname__


def _plain(value: object) -> object:
    """An attribute as a comparable value: lists and tuples alike (``kernel_size=[2, 2]`` is ``(2, 2)``),
    and ``(3, 3)`` the same as ``3`` where torch expands it."""
    if isinstance(value, (list, tuple)):
        items = tuple(_plain(v) for v in value)
        return items[0] if items and all(v == items[0] for v in items) else items
    if isinstance(value, (bool, int, float, str, type(None), torch.dtype, torch.device)):
        return value
    return repr(value)


def _arguments(module: nn.Module) -> tuple[str, tuple[tuple[str, object], ...]]:
    """What a layer computes with: the class that runs ``forward`` and every public attribute its
    constructor set (``in_features``, ``kernel_size``, ``eps``, ...), normalised."""
    attrs = tuple(
        sorted(
            (k, _plain(v))
            for k, v in vars(module).items()
            # functions (TransformerEncoderLayer.activation) are left to layer_args, which names them; an
            # activation module in the original and a function in the rebuilt layer compute the same
            if not k.startswith("_")
            and k != "training"
            and not isinstance(v, (torch.Tensor, nn.Module))
            and not (callable(v) and not isinstance(v, type))
        )
    )
    return _forward_class(module), attrs


def fingerprint(module: nn.Module) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[str, dict[str, object]]]]:
    """State names -> shapes, and submodule names -> (forward class, arguments): what verification compares
    (arguments, not ``repr`` text, so equivalent layers built with lists or a default-only subclass pass)."""
    shapes = {k: tuple(v.shape) for k, v in module.state_dict(keep_vars=True).items()}
    described = {}
    for name, m in module.named_modules():
        cls, attrs = _arguments(m)
        described[name] = (cls, dict(attrs))
    return shapes, described


def _described(cls: str, attrs: Mapping[str, object]) -> str:
    return f"{cls}(" + ", ".join(f"{k}={v!r}" for k, v in attrs.items()) + ")"


class LayerVerifier:
    """Rebuilds emitted layer nodes on meta and compares them with the originals (cached per node)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[dict[str, tuple[int, ...]], dict[str, tuple[str, dict[str, object]]]]] = {}

    def verify(self, module: nn.Module, node: Any, path: str) -> None:
        key = json.dumps(node, sort_keys=True, default=str)
        if key not in self._cache:
            try:
                rebuilt = construct_meta(node)
            except Exception as err:
                raise EmitError(
                    f"{where(path, module)}: the emitted arguments {node} cannot be rebuilt: {err}"
                ) from err
            self._cache[key] = fingerprint(rebuilt)
        want_shapes, want_reprs = self._cache[key]
        shapes, reprs = fingerprint(module)
        if shapes != want_shapes:
            diff = _first_difference(shapes, want_shapes)
            raise EmitError(
                f"{where(path, module)}: rebuilding it from the emitted arguments {node} gives a different "
                f"state_dict ({diff}); netspec cannot recover this layer's arguments"
            )
        for name, (cls, attrs) in reprs.items():
            if name not in want_reprs:
                continue
            want_cls, want_attrs = want_reprs[name]
            # Attributes the constructor does not set (torchvision's `fc.stddev = 0.001`, read by its weight
            # init only) are not arguments: the catalogue class's forward never reads them.
            kept = {k: v for k, v in attrs.items() if k in want_attrs}
            if want_cls != cls or want_attrs != kept:
                sub = f"{path}.{name}" if name and path else (name or path)
                raise EmitError(
                    f"{where(path, module)}: rebuilding it from the emitted arguments gives "
                    f"{_described(want_cls, want_attrs)} at {sub or 'the top'} but the module is "
                    f"{_described(cls, kept)}; an argument could not be recovered from the instance"
                )


def _first_difference(got: Mapping[str, tuple[int, ...]], want: Mapping[str, tuple[int, ...]]) -> str:
    missing = [k for k in got if k not in want]
    extra = [k for k in want if k not in got]
    if missing:
        return f"{missing[0]!r} is missing"
    if extra:
        return f"{extra[0]!r} is unexpected"
    key = next(k for k in got if got[k] != want[k])
    return f"{key!r} has shape {list(want[key])} instead of {list(got[key])}"


__all__ = ["LayerVerifier", "activation_name", "catalogue_entry", "construct_meta", "layer_args", "same_value", "where"]
