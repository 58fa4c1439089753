"""Library helpers marked ``@torch.fx.wrap``, traced through instead of recorded as one opaque call.

In: a ``call_function`` a tracer is about to record, and the tracer. Out: the proxy of the helper's own
code traced op by op (its ``torch.arange``/``meshgrid``/``stack`` ...), or None to record the call as
``torch.fx`` does.

``torch.fx.wrap`` (timm's ``_build_grid`` in ``timm/layers/pos_embed_sincos.py``, which builds the
coordinate grid of EVA's, DINOv3's, DeepSeek's and Qwen3's rotary embeddings) is a hint to fx: "do not
follow this function's Python, record a call of it". A spec cannot call a library's private helper, so
such a call could only be refused. What the helper computes does not change by being followed: its
Python runs with proxies as any forward does, and under guarded tracing (``guards``) the shape-dependent
branches inside it are guarded and checked at a second size like the forward's own. Nothing global is
changed: fx's table of wrapped functions stays as it is (the call is intercepted in ``create_proxy``).

Helpers netspec writes as statement functions (``equivalents``: timm's ``pad_same``, torchvision's
``_patch_merging_pad``) stay single calls, and torch's own functions are never followed. A helper whose
result is not a single traced value (a tuple, a number), or whose code the trace cannot follow, is recorded as
fx records it (and then refused by the renderer, naming it), with the nodes its followed code made removed.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch.fx as fx
from torch.fx._symbolic_trace import _wrapped_fns_to_patch

from .equivalents import function_equivalent


def is_wrapped_helper(target: Any) -> bool:
    """Whether ``target`` is a Python function outside torch that ``torch.fx.wrap`` marked (and that netspec
    has no statement function for)."""
    if not inspect.isfunction(target) or function_equivalent(target) is not None:
        return False
    module = getattr(target, "__module__", None) or ""
    if module == "torch" or module.startswith("torch."):
        return False
    return (id(target.__globals__), target.__name__) in _wrapped_fns_to_patch


def follow_wrapped(
    graph: fx.Graph, target: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> fx.Proxy | None:
    """Run the wrapped helper ``target`` on the traced arguments, so that its ops are recorded one by one;
    None (and nothing recorded) when its result is not one traced value or following it fails (Python control
    flow the trace cannot follow): then fx records its one call, as without this module, and the renderer
    refuses that call by name."""
    before = set(graph.nodes)
    try:
        result = target(*args, **kwargs)
    except Exception:  # noqa: BLE001 - its Python may raise anything on traced values: then fx's one call, as before
        result = None
    if isinstance(result, fx.Proxy):
        return result
    for node in reversed(list(graph.nodes)):
        if node not in before:
            graph.erase_node(node)
    return None


class FollowWrapped(fx.Tracer):
    """Mixed into a tracer: a call of a wrapped library helper is followed op by op (``follow_wrapped``)."""

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **more: Any) -> fx.Proxy:
        if kind == "call_function" and is_wrapped_helper(target):
            followed = follow_wrapped(self.graph, target, args, kwargs)
            if followed is not None:
                return followed
        return super().create_proxy(kind, target, args, kwargs, *rest, **more)


__all__ = ["FollowWrapped", "follow_wrapped", "is_wrapped_helper"]
