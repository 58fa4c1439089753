"""Submodules whose tensors a traced forward reads but whose own ``forward`` the model never calls.

In: such a submodule (timm's rotary embeddings in EVA, DINOv3, DeepSeek and Qwen3 ViTs: the parent calls
``self.rope.get_embed(shape)``, which reads ``rope.bands``, and never ``self.rope(x)``), its path, and why
its forward could not be traced on its own (with no caller, it has no example inputs). Out: the
``GraphBody`` of a Graph that keeps the submodule's place, parameters, buffers and children, and whose
forward is ``y = not_emitted('RotaryEmbeddingCat', x)``: calling it directly raises, naming the class,
instead of computing something else. The model's forward computes exactly what the original computes,
since no traced forward calls it (the walker checks that no ancestor's forward does).
"""

from __future__ import annotations

import inspect
import keyword

import torch.nn as nn

from ..compiler.allowlists import RESERVED_NAMES
from ..errors import EmitError, first_line
from .lint import ModelWarning
from .render import GraphBody


def uncalled_body(module: nn.Module, path: str, err: EmitError) -> GraphBody:
    """The Graph body standing for ``module``'s forward, which nothing in the model calls."""
    cls = type(module).__name__
    try:
        params = list(inspect.signature(module.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    taken = {n for n, _ in module.named_parameters(recurse=False)}
    taken |= {n for n, _ in module.named_buffers(recurse=False)} | set(module._modules) | set(RESERVED_NAMES)
    inputs: list[str] = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.default is not p.empty:
            continue
        name = p.name if p.name.isidentifier() and not keyword.iskeyword(p.name) else "x"
        while name in taken or name in inputs:
            name = f"{name}_in"
        inputs.append(name)
    out = "y"
    while out in taken or out in inputs:
        out = f"{out}_out"
    call = ", ".join([repr(cls), *inputs])
    note = ModelWarning(
        path,
        f"{cls}.forward is not emitted: the model's forward never calls it (only reads its tensors), and it "
        f"cannot be traced on its own ({first_line(err).split(': ', 1)[-1]}); the rebuilt {cls} keeps its "
        "tensors, and calling it raises",
        "call the module in forward, or keep the tensors in the module that uses them",
    )
    return GraphBody(inputs, [f"{out} = not_emitted({call})"], out, [note])


__all__ = ["uncalled_body"]
