"""netspec: declarative PyTorch models.

The pipeline, one package per stage (see ``docs/architecture.md``):
``frontend`` (text -> source with positions -> pydantic document; torch-free) ->
``catalog`` (layer types, argument types, checks) -> ``compiler`` (resolve -> infer ->
build) -> ``training`` (init, freeze, optimizer, scheduler); ``emit`` goes the other way
(module -> spec), ``io`` reads and writes files, ``cli`` is the command line.

The public names below are exported lazily (PEP 562): ``import netspec`` costs a few
milliseconds, and torch is imported only when something needs it.
"""

from __future__ import annotations

import importlib
import sys
import threading
import types
import warnings
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:
    from .api import Built, build, load, load_checkpoint
    from .catalog.registry import LAYERS, register
    from .emit.lint import ModelWarning, lint
    from .emit.walker import emit
    from .errors import CheckpointError, EmitError, NetspecError, Problem, SpecError
    from .io.checkpoint import save
    from .spec import Spec, read

# public name -> module that defines it
_EXPORTS = {
    "Built": "netspec.api",
    "build": "netspec.api",
    "load": "netspec.api",
    "LAYERS": "netspec.catalog.registry",
    "register": "netspec.catalog.registry",
    "ModelWarning": "netspec.emit.lint",
    "lint": "netspec.emit.lint",
    "emit": "netspec.emit.walker",
    "CheckpointError": "netspec.errors",
    "EmitError": "netspec.errors",
    "NetspecError": "netspec.errors",
    "Problem": "netspec.errors",
    "SpecError": "netspec.errors",
    "load_checkpoint": "netspec.api",
    "save": "netspec.io.checkpoint",
    "Spec": "netspec.spec",
    "read": "netspec.spec",
}
_import_lock = threading.Lock()

__all__ = [
    "LAYERS",
    "Built",
    "CheckpointError",
    "EmitError",
    "ModelWarning",
    "NetspecError",
    "Problem",
    "Spec",
    "SpecError",
    "__version__",
    "build",
    "emit",
    "lint",
    "load",
    "load_checkpoint",
    "read",
    "register",
    "save",
]


def _load(name: str) -> object:
    with _import_lock, warnings.catch_warnings():
        # torch warns at import when NumPy is absent; netspec never uses NumPy, so the warning would
        # only be noise. Scoped to this import: the caller's warning filters are untouched.
        warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
        return getattr(importlib.import_module(_EXPORTS[name]), name)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'netspec' has no attribute {name!r}")
    value = _load(name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


class _Netspec(types.ModuleType):
    """``netspec.emit`` is the function although a subpackage has the same name: the import system
    sets ``netspec.emit`` to the subpackage when it first imports it (``netspec.lint`` does), which
    would otherwise make ``netspec.emit(model)`` fail with "'module' object is not callable".
    The subpackage stays importable (``from netspec.emit.walker import emit``)."""

    @property
    def emit(self) -> object:
        override = self.__dict__.get("_emit_override")
        return override if override is not None else _load("emit")

    @emit.setter
    def emit(self, value: object) -> None:
        if isinstance(value, types.ModuleType) and value.__name__ == "netspec.emit":
            return  # the import system registering the subpackage: keep the function
        self.__dict__["_emit_override"] = value  # e.g. a test's monkeypatch

    @emit.deleter
    def emit(self) -> None:
        self.__dict__.pop("_emit_override", None)


sys.modules[__name__].__class__ = _Netspec
