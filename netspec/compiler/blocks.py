"""Block classes: one ``nn.Module`` subclass per (block name, base class).

In: a block's name and the class its body builds (``nn.Sequential``, a layer class, a
``GraphModule``). Out: a subclass of that class named after the block, so ``print(model)``
shows ``BasicBlock(...)``; asking twice gives the same class.
"""

from __future__ import annotations

import torch.nn as nn

_BLOCK_CLASSES: dict[tuple[str, type], type] = {}


def block_class(name: str, base: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``base`` named after the block, so ``print(model)`` shows ``BasicBlock(...)``."""
    key = (name, base)
    if key not in _BLOCK_CLASSES:
        _BLOCK_CLASSES[key] = type(name, (base,), {"__module__": __name__, "__qualname__": name})
    return _BLOCK_CLASSES[key]
