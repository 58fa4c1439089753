"""netspec: declarative PyTorch models.

Pipeline, one module per stage: ``source`` (text -> data with positions) -> ``spec``
(pydantic structure) -> ``resolve`` (vars, blocks, repeats) -> ``infer`` (shapes on meta
tensors) -> ``build`` (registered modules) and ``training`` (init, freeze, optimizer,
scheduler). ``api`` ties them together; ``cli`` is the command line.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # torch warns at import when NumPy is absent; netspec never uses NumPy, so the warning would only
    # be noise on every command. Scoped to this import: the caller's warning filters are untouched.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy")
    from .api import Built, build, load
from .catalog import LAYERS, register
from .checkpoint import load_checkpoint, save
from .document import Spec, read
from .emit import emit
from .errors import CheckpointError, EmitError, NetspecError, Problem, SpecError
from .lint import ModelWarning, lint

__version__ = "0.1.0"

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
