"""Layers of other libraries that compute exactly what a netspec layer type computes.

In: a module instance whose class is not in the catalogue. Out: the spec node of the netspec
layer that computes the same thing with the same random draws (or None when the class is not
one of these), or an ``EmitError`` when the class is known but set up in a way the netspec
layer does not reproduce. Classes are matched by their qualified name, so neither torchvision
nor timm is imported here.

| class | netspec node |
| --- | --- |
| ``torchvision.ops.StochasticDepth(p, mode)`` | ``{type: StochasticDepth, p, mode}`` |
| ``timm.layers.DropPath(drop_prob, scale_by_keep=True)`` | ``{type: StochasticDepth, p: drop_prob}`` (mode ``row``) |
| torchvision's ``ShiftedWindowAttention`` / ``...V2`` (Swin) | ``{type: ShiftedWindowAttention(V2), dim, ...}`` |
| torchvision's ``RelativePositionalMultiHeadAttention`` (MaxViT) | the netspec layer of that name |
| timm's ``Conv2dSame``, ``MaxPool2dSame``, ``AvgPool2dSame`` ("SAME" padding) | the netspec layers of those names |

A class is matched only as itself, and only when the instance keeps its class's ``forward`` (a subclass,
or a ``forward`` replaced on the instance, computes something else and is traced). Functions are matched
the same way (``function_equivalent``): torchvision's ``_patch_merging_pad`` is the statement function
``patch_merging_pad``, timm's ``pad_same`` (in ``StdConv2dSame``'s forward) the statement function
``pad_same``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from ..errors import EmitError
from .layers import where


def _torchvision_stochastic_depth(module: nn.Module, path: str) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "StochasticDepth", "p": float(module.p)}
    if module.mode != "row":
        node["mode"] = module.mode
    return node


def _timm_drop_path(module: nn.Module, path: str) -> dict[str, Any]:
    if not getattr(module, "scale_by_keep", True):
        raise EmitError(
            f"{where(path, module)}: DropPath(scale_by_keep=False) keeps unscaled values, which netspec's "
            "StochasticDepth (torchvision's and timm's default, scaled by 1/keep) does not compute"
        )
    return {"type": "StochasticDepth", "p": float(module.drop_prob)}


def _torchvision_window_attention(module: nn.Module, path: str) -> dict[str, Any]:
    """torchvision's Swin attention: netspec's copy has the same arguments, state_dict and computation."""
    kind = type(module).__name__
    node: dict[str, Any] = {
        "type": kind,
        "dim": int(module.qkv.in_features),
        "window_size": [int(v) for v in module.window_size],
        "shift_size": [int(v) for v in module.shift_size],
        "num_heads": int(module.num_heads),
    }
    if module.qkv.bias is None:
        node["qkv_bias"] = False
    if module.proj.bias is None:
        node["proj_bias"] = False
    if module.attention_dropout:
        node["attention_dropout"] = float(module.attention_dropout)
    if module.dropout:
        node["dropout"] = float(module.dropout)
    return node


def _torchvision_maxvit_attention(module: nn.Module, path: str) -> dict[str, Any]:
    """torchvision's MaxViT attention: netspec's copy has the same arguments, state_dict and computation."""
    return {
        "type": "RelativePositionalMultiHeadAttention",
        "feat_dim": int(module.to_qkv.in_features),
        "head_dim": int(module.head_dim),
        "max_seq_len": int(module.max_seq_len),
    }


def _pair(value: Any) -> int | list[int]:
    """``(3, 3)`` -> ``3``, ``(3, 1)`` -> ``[3, 1]``: how a spec writes a 2-d size."""
    items = [int(v) for v in value] if isinstance(value, (tuple, list)) else [int(value)] * 2
    return items[0] if items[0] == items[1] else items


def _timm_conv2d_same(module: nn.Module, path: str) -> dict[str, Any]:
    """timm's ``Conv2dSame``: its forward pads "SAME" and convolves with padding 0 whatever ``padding`` says."""
    node: dict[str, Any] = {
        "type": "Conv2dSame",
        "in_channels": int(module.in_channels),
        "out_channels": int(module.out_channels),
        "kernel_size": _pair(module.weight.shape[-2:]),
    }
    for name in ("stride", "dilation"):
        if _pair(getattr(module, name)) != 1:
            node[name] = _pair(getattr(module, name))
    if module.groups != 1:
        node["groups"] = int(module.groups)
    if module.bias is None:
        node["bias"] = False
    return node


def _timm_pool2d_same(module: nn.Module, path: str) -> dict[str, Any]:
    """timm's ``MaxPool2dSame``/``AvgPool2dSame``: "SAME" padding, then the pool with padding 0."""
    kind = type(module).__name__
    if kind == "AvgPool2dSame" and _pair(module.padding) != 0:  # its forward passes self.padding on
        raise EmitError(
            f"{where(path, module)}: AvgPool2dSame with padding={module.padding!r} pads twice, which netspec's "
            "AvgPool2dSame (padding 0 after the SAME padding, as timm builds it) does not compute"
        )
    node: dict[str, Any] = {"type": kind, "kernel_size": _pair(module.kernel_size)}
    if _pair(module.stride) != node["kernel_size"]:
        node["stride"] = _pair(module.stride)
    if kind == "MaxPool2dSame" and _pair(module.dilation) != 1:
        node["dilation"] = _pair(module.dilation)
    if module.ceil_mode:
        node["ceil_mode"] = True
    if kind == "AvgPool2dSame" and not module.count_include_pad:
        node["count_include_pad"] = False
    return node


_EQUIVALENTS: dict[str, Callable[[nn.Module, str], dict[str, Any]]] = {
    "torchvision.ops.stochastic_depth.StochasticDepth": _torchvision_stochastic_depth,
    "timm.layers.drop.DropPath": _timm_drop_path,
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _torchvision_window_attention,
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": _torchvision_window_attention,
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": _torchvision_maxvit_attention,
    "timm.layers.conv2d_same.Conv2dSame": _timm_conv2d_same,
    "timm.layers.pool2d_same.MaxPool2dSame": _timm_pool2d_same,
    "timm.layers.pool2d_same.AvgPool2dSame": _timm_pool2d_same,
}
# Functions of other libraries (by qualified name) that compute exactly what a statement function does.
_FUNCTIONS: dict[str, str] = {
    "torchvision.models.swin_transformer._patch_merging_pad": "patch_merging_pad",
    "timm.layers.padding.pad_same": "pad_same",
}


def function_equivalent(fn: Any) -> str | None:
    """The statement function computing what ``fn`` computes (listed above), or None."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str):
        return None
    found = _FUNCTIONS.get(f"{module}.{name}")
    if found is None or getattr(sys.modules.get(module), name, None) is not fn:
        return None
    return found


def leaf_functions() -> list[Callable[..., Any]]:
    """The functions of ``_FUNCTIONS`` whose libraries are imported: a tracer records a call of one as a
    single step (``torch.fx``'s ``autowrap_functions``) instead of following its Python code."""
    found = []
    for qualified in _FUNCTIONS:
        module, _, name = qualified.rpartition(".")
        fn = getattr(sys.modules.get(module), name, None)
        if callable(fn):
            found.append(fn)
    return found


def _maker(module: nn.Module) -> Callable[[nn.Module, str], dict[str, Any]] | None:
    cls = type(module)
    make = _EQUIVALENTS.get(f"{cls.__module__}.{cls.__qualname__}")
    if make is None or "forward" in vars(module) or "forward" not in vars(cls):
        return None  # a forward set on the instance (or inherited: a class that is not the library's own)
    return make


def has_equivalent(module: nn.Module) -> bool:
    """Whether ``equivalent_node`` writes ``module`` as a netspec node (rather than tracing it)."""
    return _maker(module) is not None


def equivalent_node(module: nn.Module, path: str) -> dict[str, Any] | None:
    """The netspec node computing what ``module`` computes, for the classes listed above; else None."""
    make = _maker(module)
    return None if make is None else make(module, path)
