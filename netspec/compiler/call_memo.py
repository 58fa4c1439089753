"""Layer calls inference has answered already: the same layer, arguments and inputs get the same answer.

In: a layer node about to be inferred (its catalogue entry, block, arguments as written) and the
tensors it is called with. Out: ``CallMemo.key`` — equal for two calls exactly when inference does
the same for both (None when it cannot say: a keyword argument or a non-tensor input, a module
argument, an argument that is not plain data, a lazy class) — and the ``Answer`` remembered for
it: the arguments inference added, the (shared) meta module, and the output, of which ``fresh``
makes new meta tensors of the same shapes and dtypes for each call.

Why: a 10,000-layer Graph of six kinds makes six distinct calls 10,000 times; each would fill in
its sizes, check its arguments and find and apply its shape rule again. Only an answer from a shape
rule (arithmetic on shapes: no module state, no side effect) that reported nothing is remembered,
and every call still gets its own output tensors, log entry and producer for messages.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin

from .calls import LayerCall
from .meta import META, typed_items
from .tree import RNode


def _template(value: Any, inputs: tuple[Any, ...]) -> bool:
    """An output made only of new tensors (none of them an input), None, and tuples of those."""
    if isinstance(value, torch.Tensor):
        return type(value) is torch.Tensor and all(value is not a for a in inputs)
    if type(value) is tuple:
        return all(_template(v, inputs) for v in value)
    return value is None


def _blank(value: Any) -> Any:
    """New (contiguous) meta tensors shaped like the ones in ``value``, in the same structure."""
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device=META)
    if isinstance(value, tuple):
        return tuple(_blank(v) for v in value)
    return None


def fresh(value: Any) -> Any:
    """New meta tensors like the ones in ``value`` (an answer's blank output), in the same structure: each a
    new tensor with the blank's shape, strides and dtype. ``detach`` makes one in a quarter of the time of
    ``torch.empty``; it shares the blank's storage, which a meta tensor has no data in, and its version
    counter, which inference (under ``no_grad``) never reads."""
    if type(value) is torch.Tensor:
        return value.detach()
    if type(value) is tuple:
        return tuple([fresh(v) for v in value])
    return None


@dataclass(frozen=True)
class Answer:
    added: dict[str, Any]  # the arguments inference filled in from the input
    module: nn.Module  # the meta module (layers with the same arguments share one)
    output: Any  # blank tensors shaped like the first call's output: the template for ``fresh``
    call: LayerCall  # the first call's record in the call log: each call answered logs the same


class CallMemo:
    """Answers by key, for one inference run."""

    def __init__(self) -> None:
        self._answers: dict[Hashable, Answer] = {}

    @staticmethod
    def key(node: RNode, args: tuple[Any, ...]) -> Hashable | None:
        layer = node.layer
        if layer is None or (isinstance(layer.cls, type) and issubclass(layer.cls, LazyModuleMixin)):
            return None
        inputs = []
        for a in args:
            if type(a) is not torch.Tensor:
                return None
            inputs.append((a.shape, a.dtype, a.stride()))
        try:
            written = typed_items(node.args)
        except TypeError:
            return None
        return (layer.name, layer.cls, node.block, written, tuple(inputs))

    def get(self, key: Hashable) -> Answer | None:
        return self._answers.get(key)

    def remember(
        self,
        key: Hashable,
        node: RNode,
        written: frozenset[str],
        module: nn.Module,
        out: Any,
        args: tuple[Any, ...],
        call: LayerCall,
    ) -> None:
        """Keep the answer of a call whose output came from a shape rule; ``written``: the arguments the
        document gave (inference only adds others); ``call``: the call's record in the log."""
        if _template(out, args):
            added = {k: v for k, v in node.args.items() if k not in written}
            self._answers[key] = Answer(added, module, _blank(out), call)


__all__ = ["Answer", "CallMemo", "fresh"]
