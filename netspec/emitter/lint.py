"""Registration lint: modules and tensors that PyTorch silently does not register.

In: an ``nn.Module``. Out: a list of ``ModelWarning`` records, one per attribute that holds
``nn.Module``s in a plain ``list``/``tuple``/``dict``, or a ``torch.Tensor`` as a plain
attribute (or in a plain container). PyTorch only registers modules assigned directly as
attributes and tensors that are ``nn.Parameter``s or registered buffers; anything else is not
trained, not saved in the ``state_dict`` and not moved by ``.to()``. Each warning names the
attribute path (``encoder.blocks``) and the fix (``nn.ModuleList``, ``nn.ModuleDict``,
``register_buffer``, ``nn.Parameter``).

``ModelWarning`` is also how ``netspec.emit`` reports what it could not express exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parameter import is_lazy

from ..errors import Problem
from ..training.patterns import join_name

# nn.Module's own bookkeeping attributes; never user state.
_MODULE_INTERNALS = frozenset(vars(nn.Module()).keys())
_MAX_DEPTH = 3  # how deep plain containers are searched (a list of lists of modules is still found)


class ModelWarning(Problem):
    """One thing about a model worth telling its author: where, what, and how to fix it.

    A ``Problem`` (severity ``warning``) about a model rather than a spec file: its ``path`` is the
    attribute or module path inside the model (``""`` for the model itself), and it formats as
    ``path: warning: message`` with the hint below, like every other problem.
    """

    def __init__(self, path: str, message: str, hint: str | None = None) -> None:
        super().__init__(message, path, hint=hint, severity="warning")


def _scan(value: Any, depth: int = 0) -> tuple[list[nn.Module], list[torch.Tensor]]:
    """Modules and tensors held by ``value`` (a plain container is searched a few levels deep)."""
    if isinstance(value, nn.Module):
        return [value], []
    if isinstance(value, torch.Tensor):
        return [], [value]
    if depth >= _MAX_DEPTH:
        return [], []
    items: Iterable[Any]
    if isinstance(value, Mapping):
        items = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return [], []
    modules: list[nn.Module] = []
    tensors: list[torch.Tensor] = []
    for item in items:
        m, t = _scan(item, depth + 1)
        modules += m
        tensors += t
    return modules, tensors


def _container_word(value: Any) -> str:
    if isinstance(value, Mapping):
        return "dict"
    return type(value).__name__


def _module_fix(attr: str, value: Any) -> str:
    if isinstance(value, Mapping):
        return f"self.{attr} = nn.ModuleDict({{...}}) (keys must be strings)"
    return f"self.{attr} = nn.ModuleList([...])"


def _tensor_fix(attr: str, tensors: list[torch.Tensor], value: Any) -> str:
    trainable = any(t.requires_grad for t in tensors)
    if isinstance(value, torch.Tensor):
        if trainable:
            return f"self.{attr} = nn.Parameter(tensor) to train it"
        return f"self.register_buffer({attr!r}, tensor) (persistent=False to keep it out of the state_dict)"
    if isinstance(value, Mapping):
        return f"self.{attr} = nn.ParameterDict({{...}}), or one register_buffer per tensor"
    return f"self.{attr} = nn.ParameterList([...]), or one register_buffer per tensor"


def _has_storage(t: torch.Tensor) -> bool:
    return not is_lazy(t) and t.device.type != "meta" and t.numel() > 0


def lint(model: nn.Module) -> list[ModelWarning]:
    """Every unregistered module or tensor attribute in ``model`` and its submodules, in model order."""
    registered_modules = {id(m) for m in model.modules()}
    registered_tensors = {id(t) for t in model.parameters()} | {id(t) for t in model.buffers()}
    # torch keeps views/aliases of registered tensors (LSTM's _flat_weights): compare storage too.
    registered_storage = {
        t.untyped_storage().data_ptr() for t in (*model.parameters(), *model.buffers()) if _has_storage(t)
    }
    found: list[ModelWarning] = []
    for prefix, module in model.named_modules():
        for attr, value in vars(module).items():
            if attr in _MODULE_INTERNALS or attr.startswith("__"):
                continue
            modules, tensors = _scan(value)
            loose_modules = [m for m in modules if id(m) not in registered_modules]
            loose_tensors = [
                t
                for t in tensors
                if id(t) not in registered_tensors
                and not (_has_storage(t) and t.untyped_storage().data_ptr() in registered_storage)
            ]
            path = join_name(prefix, attr)
            owner = type(module).__name__
            if loose_modules:
                kinds = sorted({type(m).__name__ for m in loose_modules})
                if isinstance(value, nn.Module):
                    what = f"a {kinds[0]} stored with object.__setattr__ or in __dict__"
                    fix = f"assign it normally: self.{attr} = module"
                else:
                    what = f"{len(loose_modules)} nn.Module(s) ({', '.join(kinds)}) in a plain {_container_word(value)}"
                    fix = _module_fix(attr, value)
                found.append(
                    ModelWarning(
                        path,
                        f"{owner}.{attr} holds {what}; PyTorch does not register them, so their parameters are "
                        "not trained, not saved in the state_dict and not moved by .to()",
                        fix,
                    )
                )
            if loose_tensors:
                shapes = ", ".join(str(list(t.shape)) for t in loose_tensors[:3])
                more = ", ..." if len(loose_tensors) > 3 else ""
                if isinstance(value, torch.Tensor):
                    what = f"a plain tensor of shape {shapes}"
                else:
                    what = f"{len(loose_tensors)} tensor(s) (shapes {shapes}{more}) in a plain {_container_word(value)}"
                found.append(
                    ModelWarning(
                        path,
                        f"{owner}.{attr} holds {what}; it is not a registered parameter or buffer, so it is not "
                        "saved in the state_dict and not moved by .to()",
                        _tensor_fix(attr, loose_tensors, value),
                    )
                )
    return found


__all__ = ["ModelWarning", "lint"]
