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

Functions are matched the same way (``function_equivalent``): torchvision's ``_patch_merging_pad`` is the
statement function ``patch_merging_pad``.
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


_EQUIVALENTS: dict[str, Callable[[nn.Module, str], dict[str, Any]]] = {
    "torchvision.ops.stochastic_depth.StochasticDepth": _torchvision_stochastic_depth,
    "timm.layers.drop.DropPath": _timm_drop_path,
    "torchvision.models.swin_transformer.ShiftedWindowAttention": _torchvision_window_attention,
    "torchvision.models.swin_transformer.ShiftedWindowAttentionV2": _torchvision_window_attention,
    "torchvision.models.maxvit.RelativePositionalMultiHeadAttention": _torchvision_maxvit_attention,
}
# Functions of other libraries (by qualified name) that compute exactly what a statement function does.
_FUNCTIONS: dict[str, str] = {"torchvision.models.swin_transformer._patch_merging_pad": "patch_merging_pad"}


def function_equivalent(fn: Any) -> str | None:
    """The statement function computing what ``fn`` computes (listed above), or None."""
    module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(name, str):
        return None
    found = _FUNCTIONS.get(f"{module}.{name}")
    if found is None or getattr(sys.modules.get(module), name, None) is not fn:
        return None
    return found


def has_equivalent(module: nn.Module) -> bool:
    """Whether ``equivalent_node`` writes ``module`` as a netspec node (rather than tracing it)."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}" in _EQUIVALENTS


def equivalent_node(module: nn.Module, path: str) -> dict[str, Any] | None:
    """The netspec node computing what ``module`` computes, for the classes listed above; else None."""
    cls = type(module)
    make = _EQUIVALENTS.get(f"{cls.__module__}.{cls.__qualname__}")
    return None if make is None else make(module, path)
