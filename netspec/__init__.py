"""netspec: declarative PyTorch models.

The pipeline, one package per stage (see ``docs/architecture.md``):
``frontend`` (text -> source with positions -> pydantic document; torch-free) ->
``catalog`` (layer types, argument types, checks) -> ``compiler`` (resolve -> infer ->
build) -> ``training`` (init, freeze, optimizer, scheduler); ``emitter`` goes the other way
(module -> spec), ``io`` reads and writes files, ``cli`` is the command line.

The public names below are exported lazily (PEP 562): ``import netspec`` costs a few
milliseconds, and torch is imported only when something needs it.
"""

from __future__ import annotations

import importlib
import threading
import warnings
from typing import TYPE_CHECKING

from .version import __version__

if TYPE_CHECKING:
    from .api import Built, build, load, load_checkpoint
    from .catalog.registry import LAYERS, register
    from .comparison import diff
    from .emitter.lint import ModelWarning, lint
    from .emitter.walker import emit
    from .errors import CheckpointError, EmitError, NetspecError, Problem, SpecError
    from .io.checkpoint import save
    from .planning import plan
    from .spec import Spec, read
    from .viz import draw

# public name -> module that defines it
_EXPORTS = {
    "Built": "netspec.api",
    "build": "netspec.api",
    "load": "netspec.api",
    "diff": "netspec.comparison",
    "LAYERS": "netspec.catalog.registry",
    "register": "netspec.catalog.registry",
    "ModelWarning": "netspec.emitter.lint",
    "lint": "netspec.emitter.lint",
    "emit": "netspec.emitter.walker",
    "CheckpointError": "netspec.errors",
    "EmitError": "netspec.errors",
    "NetspecError": "netspec.errors",
    "Problem": "netspec.errors",
    "SpecError": "netspec.errors",
    "load_checkpoint": "netspec.api",
    "plan": "netspec.planning",
    "save": "netspec.io.checkpoint",
    "Spec": "netspec.spec",
    "read": "netspec.spec",
    "draw": "netspec.viz",
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
    "diff",
    "draw",
    "emit",
    "lint",
    "load",
    "load_checkpoint",
    "plan",
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
