"""``netspec.emit``: an existing ``nn.Module`` (and optimizer) -> a validated ``Spec``.

In: any composition of torch.nn modules — ``Sequential`` (list form when its children are
named 0..n-1, else the mapping form), ``ModuleList``, ``ModuleDict``, ``ParameterList``/``Dict``,
catalogue layers (hyperparameters recovered from the instance, see ``emit_layers``), custom
modules whose ``forward`` symbolic tracing can follow (written as ``Graph`` nodes with their own
parameters and buffers, see ``emit_trace`` and ``emit_graph``), netspec-built models — plus, optionally, an
optimizer and the per-sample input shape. Out: a ``Spec`` that has been through ``netspec.read``
(so it builds), whose model has exactly the original's state_dict names and shapes (checked on
the meta device before returning), with repeated custom submodules as ``blocks:`` (see
``emit_blocks``), frozen parameters as ``freeze:`` and the optimizer as ``optimizer:``.

What could not be expressed exactly (lint findings, arguments fixed to their
defaults, buffers whose values no ``init`` reproduces) is returned as ``ModelWarning``s in
``spec.emit_warnings``; what cannot be expressed at all raises ``EmitError`` naming the module
path, its class and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.nn.parameter import is_lazy

from ..errors import EmitError, SpecError, first_line
from ..frontend.models import DTYPE_NAMES
from ..spec import Spec, read
from .blocks import BlockTable
from .buffers import simple_init, written_values
from .equivalents import equivalent_node, has_equivalent
from .guards import GuardSession
from .layers import LayerVerifier, catalogue_entry, layer_args, where
from .lint import ModelWarning, lint
from .trace import graph_body, own_forward
from .training import freeze_section, optimizer_section
from .uncalled import uncalled_body

_PLAIN_GRAPH_NAMES = frozenset({"Graph", "GraphModule"})
BUFFER_DTYPES = DTYPE_NAMES  # what a spec's buffer ``dtype`` may be


def _unwrap(cls: type[nn.Module]) -> type[nn.Module]:
    """The class a netspec ``freeze: {eval: true}`` subclass stands for."""
    while getattr(cls, "_netspec_eval_base", None) is not None:
        cls = cls._netspec_eval_base  # type: ignore[attr-defined]
    return cls


def _traced(module: nn.Module) -> bool:
    """Whether ``node`` emits ``module`` by tracing its forward (not a container, equivalent or catalogue layer)."""
    cls = _unwrap(type(module))
    if own_forward(module):
        return True  # forward replaced on the instance: what runs is that method, whatever the class
    if isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        return cls.forward not in (nn.Sequential.forward, nn.Module.forward)
    if isinstance(module, (fx.GraphModule, nn.ParameterList, nn.ParameterDict)):
        return False
    return _layer_base(cls) is None and not has_equivalent(module)


def _layer_base(cls: type[nn.Module]) -> type[nn.Module] | None:
    """The catalogue class ``cls`` is, or subclasses without changing ``forward`` (netspec blocks)."""
    for klass in cls.__mro__:
        if not (isinstance(klass, type) and issubclass(klass, nn.Module)) or klass is nn.Module:
            return None
        if catalogue_entry(klass) is not None:
            return klass if getattr(cls, "forward", None) is getattr(klass, "forward", None) else None
    return None


class _Walker:
    """Turns modules into spec nodes, depth first, in registration order."""

    def __init__(self, inputs: Sequence[str] | None = None, session: GuardSession | None = None) -> None:
        self.session = session  # guarded tracing, when the input's shape is known
        self.inputs = list(inputs) if inputs is not None else None  # the root forward's Graph inputs
        self.blocks = BlockTable()
        self.verifier = LayerVerifier()
        self.notes: list[ModelWarning] = []
        self.dtypes: set[torch.dtype] = set()
        self.passed: dict[str, tuple[str, ...]] = {}  # traced child path -> defaulted arguments given values
        self.called: set[str] = set()  # submodule paths a traced forward calls
        self.read: set[str] = set()  # children of traced Graphs that their forward calls or reads

    def node(self, module: nn.Module, path: str) -> Any:
        cls = _unwrap(type(module))
        block: str | None = None
        node: Any
        if isinstance(module, fx.GraphModule):
            node = self.graph(module, path)
            block = None if cls.__name__ in _PLAIN_GRAPH_NAMES else cls.__name__
        elif own_forward(module):  # timm's Partial_conv3: self.forward = self.forward_split_cat
            node = self.graph(module, path)
            block = cls.__name__
        elif isinstance(module, nn.Sequential) and cls.forward is nn.Sequential.forward:
            node = self.sequence("Sequential", module, path)
            block = None if cls is nn.Sequential else cls.__name__
        elif isinstance(module, nn.ModuleList) and cls.forward is nn.Module.forward:
            node = self.sequence("ModuleList", module, path)
            block = None if cls is nn.ModuleList else cls.__name__
        elif isinstance(module, nn.ModuleDict) and cls.forward is nn.Module.forward:
            node = {"type": "ModuleDict", "layers": self.children(module, path)}
            block = None if cls is nn.ModuleDict else cls.__name__
        elif isinstance(module, (nn.ParameterList, nn.ParameterDict)):
            tensors = {
                k: self.tensor(v, f"{path}.{k}" if path else k, buffer=False, owner=module)
                for k, v in module.named_parameters(recurse=False)
            }
            listed = isinstance(module, nn.ParameterList)
            node = {
                "type": type(module).__name__ if not listed else "ParameterList",
                "parameters": list(tensors.values()) if listed else tensors,
            }
        elif (equivalent := equivalent_node(module, path)) is not None:
            node = equivalent  # torchvision's StochasticDepth, timm's DropPath: the same computation and draws
            block = None
        elif (base := _layer_base(cls)) is not None:
            entry = catalogue_entry(base)
            if entry is None:  # unreachable: _layer_base only returns catalogue classes
                raise EmitError(f"{where(path, module)}: not in the layer catalogue")
            node = {"type": entry.name, **layer_args(module, entry, path, self.node)}
            self.verifier.verify(module, node, path)
            self.record_dtypes(module)
            block = None if base is cls else cls.__name__
        else:
            node = self.graph(module, path)
            block = cls.__name__
        if block is not None and path:
            return self.blocks.add(block, node)
        return node

    def record_dtypes(self, module: nn.Module) -> None:
        for t in (*module.parameters(), *module.buffers()):
            if t.is_floating_point():
                self.dtypes.add(t.dtype)

    def children(self, module: nn.Module, path: str, used: set[str] | None = None) -> dict[str, Any]:
        """The spec nodes of ``module``'s children. ``used``: the children a traced forward calls or reads
        (None: all); a child outside it that holds no parameter or buffer and cannot be emitted is left out,
        with a note (timm's Hiera keeps a ``Reroll`` for ``forward_intermediates`` that ``forward`` never
        calls): the rebuilt model computes and stores the same without it."""
        out: dict[str, Any] = {}
        seen: dict[int, str] = {}
        for name, child in module._modules.items():
            if child is None:
                continue
            child_path = f"{path}.{name}" if path else name
            if id(child) in seen and any(True for _ in child.buffers()):
                # its parameters are shared again by ``tie:`` (see emit); buffers have no tie
                self.notes.append(
                    ModelWarning(
                        child_path,
                        f"is the same module as {seen[id(child)]}; the spec ties its parameters "
                        "but builds independent copies of its buffers (running statistics diverge in training)",
                        "call one layer twice in a Graph's forward to share it whole",
                    )
                )
            seen.setdefault(id(child), child_path)
            if used is None or name in used or any(True for _ in (*child.parameters(), *child.buffers())):
                out[name] = self.node(child, child_path)
                continue
            blocks, notes = len(self.blocks.instances), len(self.notes)
            try:
                out[name] = self.node(child, child_path)
            except EmitError as err:
                del self.blocks.instances[blocks:], self.notes[notes:]
                self.notes.append(
                    ModelWarning(
                        child_path,
                        f"{type(child).__name__} is left out of the spec: {type(module).__name__}.forward never "
                        f"calls it, it holds no parameters or buffers, and it cannot be emitted "
                        f"({first_line(err).split(': ', 1)[-1]})",
                    )
                )
        return out

    def sequence(self, kind: str, module: nn.Module, path: str) -> dict[str, Any]:
        layers = self.children(module, path)
        if list(layers) == [str(i) for i in range(len(layers))]:
            return {"type": kind, "layers": list(layers.values())}
        if kind == "ModuleList":  # unreachable: ModuleList names its children 0..n-1
            raise EmitError(f"{where(path, module)}: children are not named 0..{len(layers) - 1}")
        return {"type": kind, "layers": layers}

    def tensor(
        self, tensor: torch.Tensor, path: str, *, buffer: bool, owner: nn.Module, persistent: bool = True
    ) -> dict[str, Any]:
        where_ = f"{path} ({type(owner).__name__}.{path.rsplit('.', 1)[-1]})"
        dtype = str(tensor.dtype).removeprefix("torch.")
        if not tensor.is_floating_point() and (not buffer or dtype not in BUFFER_DTYPES):
            kinds = "parameter" if not buffer else "buffer"
            raise EmitError(
                f"{where_}: a {kinds} of dtype {tensor.dtype} cannot be written in a spec (Graph parameters are "
                f"floating point; buffers may also be {', '.join(d for d in BUFFER_DTYPES if 'float' not in d)})"
                "\n    hint: compute it in forward (e.g. arange), or keep it inside a registered layer"
            )
        if tensor.is_floating_point():
            self.dtypes.add(tensor.dtype)
        init = simple_init(tensor)
        if init is None and buffer and not persistent:
            init = written_values(tensor, where_)  # not in the state_dict: the spec carries the values
        if init is None:
            init = "zeros"  # the values come with the state_dict
        spec: dict[str, Any] = {"shape": list(tensor.shape), "init": init}
        if buffer and not persistent:
            spec["persistent"] = False
        if not tensor.is_floating_point():
            spec["dtype"] = dtype
        return spec

    def graph(self, module: nn.Module, path: str) -> dict[str, Any]:
        try:
            body = graph_body(
                module, path, _traced, self.inputs if not path else None, self.passed.get(path, ()), self.session
            )
        except EmitError as err:
            if self.session is None or path not in self.read or path in self.called:
                raise
            body = uncalled_body(module, path, err)  # only its tensors are read: it keeps them, and no forward
        self.notes += body.notes
        join_path = (lambda n: f"{path}.{n}") if path else (lambda n: n)
        self.called.update(join_path(t) for t in body.called)
        self.read.update(join_path(t) for t in body.used)
        self.passed.update({join_path(k): v for k, v in body.passed.items()})
        node: dict[str, Any] = {"type": "Graph", "inputs": body.inputs}
        layers = self.children(module, path, body.used)
        if layers:
            node["layers"] = layers
        join = (lambda n: f"{path}.{n}") if path else (lambda n: n)
        params = {
            n: self.tensor(p, join(n), buffer=False, owner=module) for n, p in module.named_parameters(recurse=False)
        }
        non_persistent = getattr(module, "_non_persistent_buffers_set", set())
        buffers = {
            n: self.tensor(b, join(n), buffer=True, owner=module, persistent=n not in non_persistent)
            for n, b in module.named_buffers(recurse=False)
        }
        if params:
            node["parameters"] = params
        if buffers:
            node["buffers"] = buffers
        node["forward"] = [s.replace("${", "$${") for s in body.forward]
        node["outputs"] = body.outputs
        return node


def _finalise(value: Any) -> Any:
    """Identical list children -> ``repeat``; argument-free layers -> the bare-string shorthand."""
    if isinstance(value, list):
        return [_finalise(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {
        k: (_finalise(v) if k not in ("parameters", "buffers", "forward", "outputs", "inputs") else v)
        for k, v in value.items()
    }
    kind = out.get("type")
    layers = out.get("layers")
    if kind in ("Sequential", "ModuleList") and isinstance(layers, list) and len(layers) >= 2:
        dumped = {json.dumps(v, sort_keys=True) for v in layers}
        if len(dumped) == 1:
            return {"type": kind, "repeat": len(layers), "layer": layers[0]}
    if (
        set(out) == {"type"}
        and isinstance(kind, str)
        and kind not in ("Graph", "Sequential", "ModuleList", "ModuleDict")
    ):
        return kind
    return out


def _state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}


def _owner(model: nn.Module, key: str) -> str:
    module_path = key.rsplit(".", 1)[0] if "." in key else ""
    try:
        module = model.get_submodule(module_path)
    except AttributeError:
        return module_path or "the model"
    return where(module_path, module)


def _verify(model: nn.Module, spec: Spec) -> None:
    """The spec's meta model must have the original's state_dict names and shapes, in order."""
    want = _state_shapes(model)
    got = _state_shapes(spec.inferred.meta_model)
    if want == got and list(want) == list(got):
        return
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    shaped = [k for k in want if k in got and want[k] != got[k]]
    if missing:
        detail = f"{missing[0]!r} of {_owner(model, missing[0])} is missing ({len(missing)} missing in all)"
    elif extra:
        detail = f"{extra[0]!r} is unexpected ({len(extra)} unexpected in all)"
    elif shaped:
        k = shaped[0]
        detail = f"{k!r} of {_owner(model, k)} has shape {list(got[k])} instead of {list(want[k])}"
    else:
        detail = "the state_dict entries come in another order"
    raise EmitError(f"the emitted spec does not rebuild the model's state_dict: {detail}")


def emit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    input_shape: Sequence[int] | None = None,
    *,
    name: str | None = None,
    inputs: Sequence[str] | None = None,
    input_dtype: str | None = None,
) -> Spec:
    """The spec of ``model`` (and ``optimizer``); ``spec.emit_warnings`` lists what it could not express.

    ``input_shape`` is the per-sample shape (no batch dimension), written as ``input.shape`` so that
    the spec's summary and shape checks work; ``input_dtype`` (``"int64"`` for token ids) is written as
    ``input.dtype``. ``inputs`` names the arguments of the model's forward that the spec takes (the
    others are fixed to their defaults, ``**kwargs`` to none): for forwards whose every argument has a
    default, as Hugging Face models' do (``inputs=["input_ids"]``). Raises ``EmitError`` for a module it
    cannot express.
    """
    if not isinstance(model, nn.Module):
        raise EmitError(f"netspec.emit expects an nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise EmitError(f"optimizer= expects a torch.optim.Optimizer, got {type(optimizer).__name__}")
    warnings: list[ModelWarning] = []
    inner = _wrapped(model)
    if inner is not None:
        warnings.append(
            ModelWarning(
                "",
                f"emitting the model inside {type(model).__name__}: its state_dict names lack the wrapper's "
                f"prefix ({next(iter(model.state_dict()), '').split('.')[0]}.)",
                "load weights saved from the wrapper with strip_prefix (netspec build --from-checkpoint does)",
            )
        )
        model = inner
    lazy = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if is_lazy(t)]
    if lazy:
        raise EmitError(
            f"{lazy[0]} is an uninitialised parameter of a lazy module (nn.LazyLinear, ...); its shape is not "
            "known yet\n    hint: run one forward pass with a real input before emitting"
        )
    warnings += lint(model)
    if inputs is not None:
        if isinstance(inputs, str) or not all(isinstance(n, str) for n in inputs) or not inputs:
            raise EmitError(f"inputs= expects a list of forward argument names, got {inputs!r}")
        if not _traced(model):
            raise EmitError(
                f"inputs= chooses the arguments of a traced forward; {type(model).__name__} is emitted as "
                "a layer or container, whose inputs are fixed"
            )
    session = _session(input_shape, input_dtype)
    walker = _Walker(inputs, session)
    try:
        root = walker.node(model, "")
        if session is not None and session.specialised:
            _check_input(root, session)
    except EmitError as err:
        if not warnings:
            raise
        found = "\n".join(w.format() for w in warnings)
        raise EmitError(f"{err}\nthe registration lint also found:\n{found}") from None
    blocks = walker.blocks.finish()
    cls = _unwrap(type(model))
    data: dict[str, Any] = {
        "netspec": 1,
        "name": name or ("model" if cls.__name__ in _PLAIN_GRAPH_NAMES else cls.__name__),
    }
    if input_shape is not None:
        shape = [int(d) for d in input_shape]
        if not shape or any(d <= 0 for d in shape):
            raise EmitError(f"input_shape must be positive sizes without the batch dimension, got {list(input_shape)}")
        data["input"] = {"shape": shape}
        if input_dtype is not None:
            data["input"]["dtype"] = input_dtype
    elif input_dtype is not None:
        raise EmitError("input_dtype= describes input_shape=; give both")
    if blocks:
        data["blocks"] = {k: {**v, "body": _finalise(v["body"])} for k, v in blocks.items()}
    data["model"] = _finalise(root)
    frozen = freeze_section(model)
    if frozen:
        data["freeze"] = frozen
    if optimizer is not None:
        section, notes = optimizer_section(model, optimizer)
        data["optimizer"] = section
        warnings += notes
    warnings += walker.notes
    tied = _tied(model)
    if tied:  # the later name becomes the first's, as the model's own __init__ did it
        data["tie"] = {later: first for first, later in tied}
    if len(walker.dtypes) > 1 or (walker.dtypes and torch.get_default_dtype() not in walker.dtypes):
        kinds = ", ".join(sorted(str(d).removeprefix("torch.") for d in walker.dtypes))
        warnings.append(
            ModelWarning(
                "",
                f"the model's floating point tensors are {kinds}; a spec builds one dtype",
                f"build it with netspec.build(spec, dtype=...) ({kinds})",
            )
        )
    try:
        spec = read(data)
    except SpecError as err:
        if "input" in data:
            try:
                read({k: v for k, v in data.items() if k != "input"})
            except SpecError:
                pass
            else:
                raise EmitError(f"input_shape {data['input']['shape']} does not fit the model:\n{err}") from None
        raise EmitError(
            f"the emitted spec of {type(model).__name__} does not validate; please report this, emit should only "
            f"write specs that build:\n{err}"
        ) from err
    _verify(model, spec)
    spec.emit_warnings = warnings  # type: ignore[attr-defined]
    return spec


def _session(input_shape: Sequence[int] | None, input_dtype: str | None) -> GuardSession | None:
    """Guarded tracing (Python may branch on shapes and dtypes) needs the input's shape; None without it."""
    if input_shape is None or not all(isinstance(d, int) and d > 0 for d in input_shape) or not input_shape:
        return None
    dtype = getattr(torch, input_dtype, None) if input_dtype is not None else torch.get_default_dtype()
    if not isinstance(dtype, torch.dtype):
        return None
    session = GuardSession(input_shape, dtype)
    session.traced = _traced
    return session


def _check_input(root: Any, session: GuardSession) -> None:
    """A traced forward specialised on its input's rank, dtype or per-sample shape: the root Graph checks
    its input first (``expect_input``), so another input is an error, never another computation."""
    inputs = root.get("inputs") if isinstance(root, dict) and root.get("type") == "Graph" else None
    if not inputs or len(inputs) != 1:
        lines = "; ".join(dict.fromkeys(session.lines))
        raise EmitError(
            f"the model ({type(root).__name__ if not isinstance(root, dict) else root.get('type')}): a traced forward "
            f"specialises on its input's shape or dtype (at {lines}), and the model's input cannot be checked "
            "(it is not a Graph with one input)"
        )
    root["forward"].insert(0, session.check_statement(inputs[0]))


def _wrapped(model: nn.Module) -> nn.Module | None:
    """The model inside nn.DataParallel / DistributedDataParallel / torch.compile, else None."""
    if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return model.module
    inner = getattr(model, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) and type(model).__name__ == "OptimizedModule" else None


def _tied(model: nn.Module) -> list[tuple[str, str]]:
    first: dict[int, str] = {}
    pairs: list[tuple[str, str]] = []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            pairs.append((first[id(p)], name))
        else:
            first[id(p)] = name
    return pairs


__all__ = ["emit"]
