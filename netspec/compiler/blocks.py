"""Block classes: one ``nn.Module`` subclass per (block name, base class).

In: a block's name and the class its body builds (``nn.Sequential``, a layer class, a
``GraphModule``). Out: a subclass of that class named after the block, so ``print(model)``
shows ``BasicBlock(...)``; asking twice gives the same class.

Pickling: a block class is made at run time, so it cannot be found by its name alone (one
name may stand for several bases: a block's body differs between specs). Its metaclass is
registered with ``copyreg``, so ``pickle``/``torch.save`` store a block class as the call
``block_class(name, base)`` (the base by reference) and ``pickle.load``/``torch.load``
recreate the same class in a fresh process. Instances pickle as the base's instances do.
"""

from __future__ import annotations

import copyreg
import threading

import torch.nn as nn

_BLOCK_CLASSES: dict[tuple[str, type], type] = {}
_METACLASSES: dict[type, type] = {}
_lock = threading.Lock()


def _reduce_block_class(cls: type) -> tuple[object, tuple[str, type]]:
    return block_class, (cls.__name__, cls.__bases__[0])


def _metaclass_for(meta: type) -> type:
    """A subclass of the base's metaclass (``type`` for nn.Module) that pickles through ``block_class``."""
    derived = _METACLASSES.get(meta)
    if derived is None:
        derived = type(f"Block{meta.__name__.capitalize()}", (meta,), {"__module__": __name__})
        copyreg.pickle(derived, _reduce_block_class)
        _METACLASSES[meta] = derived
    return derived


def block_class(name: str, base: type[nn.Module]) -> type[nn.Module]:
    """A subclass of ``base`` named after the block, so ``print(model)`` shows ``BasicBlock(...)``."""
    key = (name, base)
    cls = _BLOCK_CLASSES.get(key)
    if cls is None:
        with _lock:
            cls = _BLOCK_CLASSES.get(key)
            if cls is None:
                meta = _metaclass_for(type(base))
                cls = meta(name, (base,), {"__module__": __name__, "__qualname__": name})
                _BLOCK_CLASSES[key] = cls
    return cls


def is_block_class(cls: type) -> bool:
    """Whether ``cls`` was made by ``block_class``."""
    return type(cls) in _METACLASSES.values()


__all__ = ["block_class", "is_block_class"]
