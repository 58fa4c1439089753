"""Module construction, shared by ``infer`` (on meta) and ``build`` (on the target device).

In: ``RNode``s, a device and a dtype (and, for Graph nodes, their compiled fx graphs). Out:
modules in which every child, parameter and buffer is registered exactly as hand-written
PyTorch would register them (``nn.Sequential`` with its names, ``nn.ModuleList``,
``nn.ModuleDict``, ``GraphModule`` with generated forward code), block instances carrying the
block's name as their class name (``blocks.block_class``). One layer (``construct_layer``),
one owned tensor (``make_tensor``), one container (``assemble``) or a whole tree
(``build_tree``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.modules.lazy import LazyModuleMixin

from ..catalog.windows import INTEGER_INITS
from ..errors import did_you_mean
from . import values
from .blocks import block_class
from .fill import build_dtype, fill
from .graph_module import make_graph_module
from .tree import VALUES_INIT, RNode, RTensor


def sinusoidal(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The fixed Transformer position encoding over the last two dims (positions, features)."""
    if len(shape) < 2:
        raise ValueError(f"sinusoidal needs at least 2 dims (positions, features), got shape {list(shape)}")
    positions, dim = shape[-2], shape[-1]
    pos = torch.arange(positions, dtype=torch.float32, device=device).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(positions, dim, dtype=torch.float32, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table.expand(shape).to(dtype).clone()


def _tril(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A causal mask: ones on and below the diagonal of the last two dims (nanoGPT's ``bias`` buffer)."""
    if len(shape) < 2:
        raise ValueError(f"tril needs at least 2 dims, got shape {list(shape)}")
    return torch.ones(shape, dtype=dtype, device=device).tril()


def _sinusoidal_or_meta(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if device.type == "meta":
        if len(shape) < 2:
            raise ValueError(f"sinusoidal needs at least 2 dims (positions, features), got shape {list(shape)}")
        return torch.empty(shape, dtype=dtype, device=device)
    return sinusoidal(shape, dtype, device)


# Initialisers beyond torch.nn.init for tensors a Graph owns.
TENSOR_INITS = {"sinusoidal": _sinusoidal_or_meta, "tril": _tril, **INTEGER_INITS}


def init_fn_name(init: str | Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    if isinstance(init, str):
        return init, {}
    args = dict(init)
    return str(args.pop("fn", "")), args


def make_tensor(spec: RTensor, device: torch.device, dtype: torch.dtype | None) -> torch.Tensor:
    """Allocate and initialise a Graph-owned tensor (``init`` names are torch.nn.init's, plus sinusoidal)."""
    dtype = getattr(torch, spec.dtype) if spec.dtype is not None else dtype or torch.get_default_dtype()
    name, args = init_fn_name(spec.init)
    if name == VALUES_INIT:
        tensor = values.make(args, spec.shape, dtype, device)  # every element written out (checked by resolve)
    elif name in TENSOR_INITS:
        if args:
            raise ValueError(f"init {name!r} takes no arguments, got {', '.join(args)}")
        tensor = TENSOR_INITS[name](spec.shape, dtype, device)
    else:
        fn = getattr(nn.init, name + "_", None)
        if fn is None or name.startswith("_"):
            known = sorted(
                {n[:-1] for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")}
                | set(TENSOR_INITS)
                | {VALUES_INIT}
            )
            raise ValueError(
                f"unknown init {name!r}; " + (did_you_mean(name, known) or "expected one of " + ", ".join(known))
            )
        tensor = torch.empty(spec.shape, dtype=dtype, device=device)
        fill(fn, tensor, args)  # on meta: every check, no computing; other float dtypes: drawn in float32
    if spec.is_buffer:
        return tensor
    return nn.Parameter(tensor, requires_grad=spec.trainable)


def construct_layer(
    node: RNode, device: torch.device, dtype: torch.dtype | None, nested: Mapping[str, nn.Module]
) -> nn.Module:
    """Instantiate one catalogue layer; ``nested`` holds already-built module arguments."""
    if node.layer is None:
        raise ValueError(f"{node.name}: not a layer node")
    kwargs = {k: nested.get(k, v) for k, v in node.args.items()}
    module = node.layer.construct(kwargs, device, dtype)
    if node.block:
        module.__class__ = block_class(node.block, type(module))
    return module


def assemble(
    node: RNode, children: Mapping[str, nn.Module], tensors: Mapping[str, torch.Tensor], graph: fx.Graph | None
) -> nn.Module:
    """Put built children (and owned tensors) into the container ``node`` describes."""
    module: nn.Module
    if node.kind == "Sequential":
        module = nn.Sequential(OrderedDict(children))
    elif node.kind == "ModuleList":
        module = nn.ModuleList(children.values())
    elif node.kind == "ModuleDict":
        module = nn.ModuleDict(children)
    elif node.kind == "ParameterList":
        module = nn.ParameterList(tensors.values())
    elif node.kind == "ParameterDict":
        module = nn.ParameterDict(tensors)
    elif node.kind == "Graph":
        if graph is None:
            raise ValueError(f"{node.name}: Graph without compiled statements")
        persistent = {k: t.persistent for k, t in node.tensors.items()}
        return make_graph_module(children, tensors, persistent, graph, node.block or "Graph")
    else:
        raise ValueError(f"{node.name}: cannot assemble a {node.kind}")
    if node.block:
        module.__class__ = block_class(node.block, type(module))
    return module


def copy_graphs(graphs: Mapping[str, fx.Graph]) -> dict[str, fx.Graph]:
    """Fresh copies, so the meta model and every real build own their graph (fx graphs have one owner)."""
    copies: dict[str, fx.Graph] = {}
    for name, graph in graphs.items():
        new = fx.Graph()
        new.output(new.graph_copy(graph, {}))
        copies[name] = new
    return copies


def materialize_lazy(module: nn.Module, input_shapes: tuple[torch.Size, ...]) -> None:
    """Give a lazy module (``LazyLinear``, ...) the sizes its first input gave it during inference, now,
    so that the seed fixes its weights and the optimizer sees real parameters (torch's own first-forward
    step, run on meta inputs of the recorded shapes: only their shapes are read)."""
    if isinstance(module, LazyModuleMixin) and module.has_uninitialized_params():
        module._infer_parameters(module, tuple(torch.empty(s, device="meta") for s in input_shapes))


def build_tree(
    node: RNode,
    device: torch.device,
    dtype: torch.dtype | None,
    graphs: Mapping[str, fx.Graph],
    lazy_inputs: Mapping[str, tuple[torch.Size, ...]] | None = None,
) -> nn.Module:
    """Build ``node`` and everything below it, in document order (so a seed fixes every weight, and
    fixes the same weights for float32, float64, bfloat16 and float16 builds up to their rounding).

    ``lazy_inputs``: the input shapes inference saw for each lazy layer, which is materialised with them."""
    lazy = lazy_inputs or {}
    if node.kind == "layer":
        nested = {k: build_tree(v, device, dtype, graphs, lazy) for k, v in node.args.items() if isinstance(v, RNode)}
        # Weights are drawn in float32 and cast: one seed, the same weights in every floating dtype.
        module = construct_layer(node, device, build_dtype(dtype), nested)
        if node.name in lazy:
            materialize_lazy(module, lazy[node.name])
        return module.to(dtype) if dtype is not None and build_dtype(dtype) != dtype else module
    children = {k: build_tree(c, device, dtype, graphs, lazy) for k, c in node.children.items()}
    tensors = {k: make_tensor(t, device, dtype) for k, t in node.tensors.items()}
    return assemble(node, children, tensors, graphs.get(node.name))
