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
"""

from __future__ import annotations

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


_EQUIVALENTS: dict[str, Callable[[nn.Module, str], dict[str, Any]]] = {
    "torchvision.ops.stochastic_depth.StochasticDepth": _torchvision_stochastic_depth,
    "timm.layers.drop.DropPath": _timm_drop_path,
}


def has_equivalent(module: nn.Module) -> bool:
    """Whether ``equivalent_node`` writes ``module`` as a netspec node (rather than tracing it)."""
    cls = type(module)
    return f"{cls.__module__}.{cls.__qualname__}" in _EQUIVALENTS


def equivalent_node(module: nn.Module, path: str) -> dict[str, Any] | None:
    """The netspec node computing what ``module`` computes, for the classes listed above; else None."""
    cls = type(module)
    make = _EQUIVALENTS.get(f"{cls.__module__}.{cls.__qualname__}")
    return None if make is None else make(module, path)
