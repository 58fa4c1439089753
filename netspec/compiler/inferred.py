"""What inference hands on: the ``Inferred`` record, and the containers it assembles only on demand.

In: what ``infer`` found (the completed tree, fx graphs, output shapes, tensor sizes, lazy layers'
inputs, the call log) and, for ``Later``, how to assemble a container from its built children.
Out: ``Inferred`` (with ``meta_model``, the whole model on meta, built on first use) and
``Later``/``real``: a container inference checked but did not assemble, and the module itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import Problem
from .calls import CallLog
from .construct import build_tree, copy_graphs
from .meta import META
from .shapes import SkipInit
from .tree import RNode


class Later:
    """A container (Sequential, ModuleList, ModuleDict, Graph) inference checked, assembled only if a module is
    needed: a second call of it, a layer taking it as an argument. Validation reads only shapes, and
    assembling a Graph generates and compiles its ``forward`` (a third of validating a 10,000-statement
    Graph); ``build`` and ``Inferred.meta_model`` assemble it from the same tree and graphs."""

    __slots__ = ("_make", "_module")

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        self._make: Callable[[], nn.Module] | None = make
        self._module: nn.Module | None = None

    def get(self) -> nn.Module:
        if self._module is None:
            if self._make is None:
                raise RuntimeError("a deferred module is assembled once")
            make, self._make = self._make, None
            self._module = make()
        return self._module


Built = nn.Module | Later  # a built layer, or a container assembled on demand


def real(module: Built) -> nn.Module:
    """The module itself (a deferred container is assembled now)."""
    return module.get() if isinstance(module, Later) else module


@dataclass
class Inferred:
    """What inference hands to the builder and the summary."""

    root: RNode
    graphs: dict[str, fx.Graph]
    shapes: dict[str, Any] = field(default_factory=dict)  # module name -> output shape(s)
    warnings: list[Problem] = field(default_factory=list)
    tensors: dict[str, list[tuple[int, torch.dtype]]] = field(default_factory=dict)  # module -> (numel, dtype)
    lazy_inputs: dict[str, tuple[torch.Size, ...]] = field(default_factory=dict)  # lazy layer -> its input shapes
    calls: CallLog = field(default_factory=CallLog)  # every layer call and Graph statement, with shapes
    _meta_model: nn.Module | None = field(default=None, repr=False)

    @property
    def meta_model(self) -> nn.Module:
        """The whole model on the meta device (built on first use: inference shares identical layers)."""
        if self._meta_model is None:
            with SkipInit():
                self._meta_model = build_tree(self.root, META, None, copy_graphs(self.graphs), self.lazy_inputs)
        return self._meta_model


__all__ = ["Built", "Inferred", "Later", "real"]
