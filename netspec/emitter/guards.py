"""Guarded tracing: ``torch.fx`` tracing whose values carry an example, so Python may branch on shapes.

In: a module's forward and example inputs (fake tensors: a shape and dtype, no data). Out: the fx graph, as
``torch.fx`` records it, plus the *guards*: every place Python needed a concrete value of a traced one —
``if x.dim() == 2``, ``x.shape[1] == 1``, ``len(x.shape)``, ``range(x.size(1))``, ``x.dtype`` (read as
the example's dtype, so ``torch.finfo(x.dtype)`` works), iteration over a traced tuple — each with the
user's line and the value the example gave. Every recorded op is also run on the examples (under one
``FakeTensorMode``, on a copy of the module whose tensors are fake), so each node knows its example value
(``node.meta[EXAMPLE]``); a child's call records the example arguments it was called with
(``GuardedTrace.calls``), which become that child's examples when it is traced in turn.

Soundness is the caller's (``trace.trace``): a guard fixes a value for every later call of the rebuilt
model, so a forward is traced again at another batch and sequence size and must give the same graph and
the same guard outcomes; rank and dtype specialisations make the emitted Graph check its input
(``expect_input``). Branching on tensor *data* (``if mask.any()``) is refused here, with its line: no
example has data.
"""

from __future__ import annotations

import contextlib
import copy
import operator
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx._symbolic_trace import _maybe_revert_all_patches
from torch.fx.proxy import Attribute, TraceError
from torch.utils._pytree import tree_flatten

from .autocast import real_autocast, rewire_checks, traced_autocast
from .bindings import calls_by_name
from .factories import recorded_factories
from .fakes import FakeCopy, fake_input
from .hf_masks import broadcast_masks
from .lists import CHANGES, EXAMPLE_KEY, Changed, follow_changes, own_lists
from .spelling import passed_constants

EXAMPLE = EXAMPLE_KEY
_TORCH_DIR = str(Path(torch.__file__).parent)
_NETSPEC_DIR = str(Path(__file__).resolve().parents[1])


class _Missing:
    """No example value: computing the op on the examples failed (or there were none)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
# Tensor accessors whose result depends on the tensor's metadata only (shape, rank, dtype, device).
_META_METHODS = frozenset(
    {"size", "dim", "ndimension", "numel", "nelement", "is_floating_point", "is_complex", "element_size"}
)
_META_ATTRIBUTES = frozenset({"shape", "ndim", "dtype", "device", "is_cuda", "type"})


@dataclass(frozen=True)
class Guard:
    """One specialisation: at ``line`` Python read ``what`` of a traced value and got ``value``."""

    line: str
    what: str
    value: Any

    def key(self) -> tuple[str, str, str]:
        return (self.line, self.what, repr(self.value))


@dataclass
class GuardState:
    """What one guarded trace recorded: its guards and each child's example calls (target -> args)."""

    guards: list[Guard] = field(default_factory=list)
    calls: dict[str, list[tuple[tuple[Any, ...], dict[str, Any]]]] = field(default_factory=dict)
    missing_calls: list[str] = field(default_factory=list)  # children whose example output could not be made
    constants: dict[str, dict[str, Any]] = field(default_factory=dict)  # child -> the arguments given constants
    conflicts: list[str] = field(default_factory=list)  # children called with different constants
    direct: set[str] = field(default_factory=set)  # children this forward calls itself


def caller_line() -> str:
    """``file.py:123: source`` of the innermost frame outside torch and netspec (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_code.co_filename
        if not name.startswith(_TORCH_DIR) and not name.startswith(_NETSPEC_DIR) and not name.startswith("<"):
            break
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return "<unknown>"
    import linecache

    parts = Path(frame.f_code.co_filename).parts
    shown = (
        "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else frame.f_code.co_filename
    )
    text = linecache.getline(frame.f_code.co_filename, frame.f_lineno).strip()
    return f"{shown}:{frame.f_lineno}: {text[:160]}" if text else f"{shown}:{frame.f_lineno}"


def example_of(value: Any) -> Any:
    """The example value of a proxy (or node); other values are their own example."""
    if isinstance(value, fx.Proxy):
        value = value.node
    if isinstance(value, fx.Node):
        return value.meta.get(EXAMPLE, MISSING)
    return value


def is_record(value: Any) -> bool:
    """A mapping that is also read by attribute and position (Hugging Face's ``ModelOutput``): a traced
    child returning one has a Graph that returns its values as a tuple, in key order (its ``to_tuple()``)."""
    return isinstance(value, Mapping) and callable(getattr(value, "to_tuple", None))


class GuardProxy(fx.Proxy):
    """A proxy that answers Python's questions about its value from the example, recording a guard."""

    def __getattr__(self, k: str) -> Any:
        value = example_of(self)
        if k == "dtype" and isinstance(value, torch.Tensor):
            return self.tracer.specialise(self, "dtype", value.dtype)  # type: ignore[attr-defined]
        return GuardAttribute(self, k)

    def __len__(self) -> int:
        value = example_of(self)
        if value is MISSING or (isinstance(value, torch.Tensor) and value.dim() == 0):
            return super().__len__()
        return self.tracer.specialise(self, "len", len(value))  # type: ignore[attr-defined]

    def __setitem__(self, key: Any, value: Any) -> None:
        """``t[key] = v`` recorded as ``operator.setitem`` (``inplace.functionalise`` makes it out of place)."""
        self.tracer.create_proxy("call_function", operator.setitem, (self, key, value), {})

    def __index__(self) -> int:
        return self.tracer.specialise(self, "int", self.tracer.metadata_value(self, int))  # type: ignore[attr-defined]

    def __int__(self) -> int:
        return self.__index__()

    def __float__(self) -> float:
        return self.tracer.specialise(self, "float", self.tracer.metadata_value(self, float))  # type: ignore[attr-defined]


class GuardAttribute(GuardProxy, Attribute):
    """``x.shape``, ``x.ndim``, ... as a guarded proxy (fx makes its node only when it is used)."""


class GuardMixin:
    """Mixed into an ``fx.Tracer``: proxies with examples (``node.meta[EXAMPLE]``) and guards.

    ``guard_setup`` gives the examples of the placeholders (by argument name), the fake tensor mode and
    the fake copy of the traced module (``fake_tree``) on which ops run."""

    examples: Mapping[str, Any]
    fake: FakeTensorMode | None = None
    tree: nn.Module | None = None
    state: GuardState

    def trace(self, root: Any, concrete_args: Any = None) -> fx.Graph:
        if self.fake is None:
            return super().trace(root, concrete_args)  # type: ignore[misc]
        with recorded_factories(self), traced_autocast(self), broadcast_masks():
            return rewire_checks(super().trace(root, concrete_args))  # type: ignore[misc]

    flatten_records = True
    is_traced: Callable[[nn.Module], bool] = staticmethod(lambda m: False)  # type: ignore[assignment]

    def guard_setup(
        self, examples: Mapping[str, Any], fake: FakeTensorMode, tree: nn.Module, flatten_records: bool = True
    ) -> None:
        """``flatten_records``: a ``ModelOutput`` this forward returns becomes a tuple of its values (a child's
        Graph; its parent reads the fields by position) rather than a mapping (the model's own output)."""
        self.examples, self.fake, self.tree, self.state = dict(examples), fake, tree, GuardState()
        self.flatten_records = flatten_records

    def call_module(self, m: nn.Module, forward: Any, args: Any, kwargs: Any) -> Any:
        """A child's call; when its example output is a structure (a tuple, a ``ModelOutput``) the parent
        gets that structure, each tensor in it read by position from the child's flat tuple of tensors
        (``flatten_output``) and every other value (None, a number) as the constant the example holds."""
        result = super().call_module(m, forward, args, kwargs)  # type: ignore[misc]
        if isinstance(result, fx.Proxy) and result.node.meta.get(CHANGES):
            follow_changes(str(result.node.target), args, kwargs, result.node.meta.pop(CHANGES))
        value = example_of(result) if isinstance(result, fx.Proxy) else MISSING
        if value is MISSING or isinstance(value, torch.Tensor) or not self.is_traced(m):
            return result  # a layer's or container's output keeps its own structure (LSTM's (out, (h, c)))
        count = 0

        def rebuild(ex: Any) -> Any:
            nonlocal count
            if isinstance(ex, torch.Tensor):
                count += 1
                return result[count - 1]
            if is_record(ex):
                out = copy.copy(ex)
                for key in list(ex.keys()):
                    out[key] = rebuild(ex[key])
                return out
            if isinstance(ex, tuple) and hasattr(ex, "_fields"):
                return type(ex)(*(rebuild(e) for e in ex))
            if isinstance(ex, (tuple, list)):
                return type(ex)(rebuild(e) for e in ex)
            if isinstance(ex, dict):
                return {k: rebuild(v) for k, v in ex.items()}
            return ex if ex is None else self.specialise(result, "output", ex)

        return rebuild(value)

    def create_arg(self, a: Any) -> Any:
        if isinstance(a, Changed):
            raise a.refuse()
        if self.fake is not None and is_record(a):
            return super().create_arg(tuple(a.values()) if self.flatten_records else dict(a))  # type: ignore[misc]
        return super().create_arg(a)  # type: ignore[misc]

    # -- proxies carry examples ------------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return GuardProxy(node, self)  # type: ignore[arg-type]

    def create_node(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **more: Any) -> fx.Node:
        node = super().create_node(kind, target, args, kwargs, *rest, **more)  # type: ignore[misc]
        if self.fake is not None:
            node.meta[EXAMPLE] = self._run(node)
            node.meta["netspec_data"] = self._data_dependent(node)
        return node

    def _run(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            return self.examples.get(str(node.target).lstrip("*"), MISSING)
        if node.op == "output":
            return MISSING
        if node.op == "get_attr":  # the fake tree's tensor, or a constant fx stored on the traced copy
            for value in (self.tree, getattr(self, "root", None)):
                try:
                    for part in str(node.target).split("."):
                        value = getattr(value, part)
                except AttributeError:
                    continue
                if isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor):
                    value = self.fake.from_tensor(value)  # type: ignore[union-attr]
                return value
            return MISSING
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), example_of)  # type: ignore[misc]
        flat, _ = tree_flatten((args, kwargs))
        if any(v is MISSING for v in flat):
            return MISSING
        try:
            # fx's patches (Module.__call__ recording calls) are lifted while the examples run
            with _maybe_revert_all_patches(), real_autocast(), self.fake, self.examples_run():  # type: ignore[union-attr]
                if node.op == "call_function":
                    return node.target(*args, **kwargs)  # type: ignore[operator]
                if node.op == "call_method":
                    return getattr(args[0], str(node.target))(*args[1:], **kwargs)
                if node.op == "call_module":
                    child = self.tree.get_submodule(str(node.target))  # type: ignore[union-attr]
                    fixed = passed_constants(child, node.args, node.kwargs)
                    first = self.state.constants.setdefault(str(node.target), fixed)
                    if first is not fixed and repr(first) != repr(fixed):  # another call site, other constants
                        self.state.conflicts.append(str(node.target))
                    self.state.direct.add(str(node.target))  # called by this forward (not inside a Sequential)
                    args, kwargs, lists = own_lists(args, kwargs)
                    result = self._call(str(node.target), args, kwargs)
                    node.meta[CHANGES] = lists  # what the child did to lists passed to it: see call_module
                    return result
        except Exception:  # noqa: BLE001 - the op may fail on fake tensors as on real ones; then no example
            if node.op == "call_module":
                self.state.missing_calls.append(str(node.target))
            return MISSING
        return MISSING  # unreachable: every fx op kind is handled above

    running_examples = False

    @contextlib.contextmanager
    def examples_run(self) -> Iterator[None]:
        """While an op runs on the examples (a child's whole forward, on fake tensors)."""
        before, self.running_examples = self.running_examples, True
        try:
            yield
        finally:
            self.running_examples = before

    def _call(self, target: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the fake tree's child ``target``, recording the call; a plain Sequential runs its children one
        by one, each call recorded (``blocks.0``, ``blocks.1``, ...), so that the traced modules inside a
        Sequential (timm's stages of blocks) get examples too."""
        self.state.calls.setdefault(target, []).append(own_lists(args, kwargs)[:2])  # copies: it may append
        child = self.tree.get_submodule(target)  # type: ignore[union-attr]
        if type(child).forward is not nn.Sequential.forward or kwargs or len(args) != 1:
            return child(*args, **kwargs)
        value = args[0]
        for name, sub in child._modules.items():
            if sub is not None:
                value = self._call(f"{target}.{name}", (value,), {})
        return value

    def _data_dependent(self, node: fx.Node) -> bool:
        """Whether a non-tensor value was computed from tensor data (``.item()``, ``.tolist()``)."""
        if isinstance(node.meta.get(EXAMPLE), torch.Tensor):
            return False
        accessor = (node.op == "call_method" and node.target in _META_METHODS) or (
            node.op == "call_function"
            and (
                node.target is len
                or (node.target is getattr and len(node.args) > 1 and node.args[1] in _META_ATTRIBUTES)
            )
        )
        for n in node.all_input_nodes:
            if isinstance(n.meta.get(EXAMPLE), torch.Tensor):
                if not accessor:
                    return True
            elif n.meta.get("netspec_data", False):
                return True
        return False

    # -- concrete values -------------------------------------------------------------------------------
    def metadata_value(self, obj: fx.Proxy, kind: type) -> Any:
        """The example value of ``obj`` for Python (``int(...)``, ``bool(...)``), refusing tensor data."""
        value = example_of(obj)
        if value is MISSING:
            raise TraceError("symbolically traced variables cannot be used as inputs to control flow")
        if isinstance(value, torch.Tensor) or obj.node.meta.get("netspec_data", False):
            raise TraceError(
                "Python control flow on tensor data (a traced value's contents, not its shape or dtype), "
                "which a Graph cannot express"
            )
        return kind(value)

    def specialise(self, obj: fx.Proxy, what: str, value: Any) -> Any:
        self.state.guards.append(Guard(caller_line(), what, value))
        return value

    def to_bool(self, obj: fx.Proxy) -> bool:
        if self.fake is None:
            return super().to_bool(obj)  # type: ignore[misc]
        return self.specialise(obj, "bool", self.metadata_value(obj, bool))

    def iter(self, obj: fx.Proxy) -> Iterator[Any]:
        value = example_of(obj)
        if self.fake is None or value is MISSING or isinstance(value, torch.Tensor):
            return super().iter(obj)  # type: ignore[misc]
        n = self.specialise(obj, "len", len(value))
        return iter([obj[i] for i in range(n)])

    def keys(self, obj: fx.Proxy) -> Any:
        value = example_of(obj)
        if self.fake is None or not isinstance(value, Mapping):
            return super().keys(obj)  # type: ignore[misc]
        return self.specialise(obj, "keys", list(value.keys()))


def flatten_output(graph: fx.Graph) -> None:
    """A child's output structure -> the flat tuple of its tensors, in the order ``call_module`` reads them
    (tuples, lists and dicts in order; None and numbers left out); a bare tensor stays as it is."""
    output = next(n for n in graph.nodes if n.op == "output")
    result = output.args[0]
    if isinstance(result, fx.Node):
        return
    leaves: list[fx.Node] = []

    def walk(v: Any) -> None:
        if isinstance(v, fx.Node):
            ex = v.meta.get(EXAMPLE, MISSING)
            if ex is MISSING or isinstance(ex, torch.Tensor):
                leaves.append(v)
        elif isinstance(v, (tuple, list)):
            for e in v:
                walk(e)
        elif isinstance(v, dict):
            for e in v.values():
                walk(e)

    walk(result)
    output.args = (tuple(leaves),)


def drop_unused_metadata(graph: fx.Graph) -> None:
    """Remove the non-tensor nodes nothing uses any more: the ``x.dim() == 2`` a guard consumed."""
    for node in reversed(list(graph.nodes)):
        if node.users or node.op not in ("call_function", "call_method", "get_attr"):
            continue
        if node.op == "get_attr":  # a tensor read only for its dtype or shape (``weight.dtype``)
            graph.erase_node(node)
            continue
        value = node.meta.get(EXAMPLE, MISSING)
        if value is MISSING or isinstance(value, torch.Tensor) or node.target is operator.setitem:
            continue
        graph.erase_node(node)


class GuardSession:
    """One emit's guarded tracing: the fake tensor mode, the root's example inputs, and the examples each
    traced child was called with (recorded by its parent's accepted traces, by module path).

    ``specialised``: some traced forward recorded a guard (the emitted root Graph then checks its input's
    rank, and its dtype when ``dtype_read``); ``pinned``: the root's guards hold at another batch size but
    not at other per-sample sizes, so the input's whole per-sample shape is checked."""

    def __init__(self, input_shape: Sequence[int], dtype: torch.dtype) -> None:
        self.fake = FakeTensorMode(allow_non_fake_inputs=True)
        self.fakes: dict[int, FakeCopy] = {}  # each real tensor's fake in ``fake`` (fakes.fake_tree)
        self.input_shape, self.dtype = tuple(input_shape), dtype
        self.calls: dict[str, list[dict[str, Any]]] = {}
        self.constants: dict[str, dict[str, Any]] = {}
        self.conflicts: set[str] = set()
        self.traced: Callable[[nn.Module], bool] = lambda m: False  # which children are traced Graphs (walker)
        self.called: set[str] = set()  # children a traced parent calls (their structured outputs are flattened)
        self.specialised = False
        self.dtype_read = False
        self.pinned = False
        self.lines: list[str] = []

    def root_examples(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """The root input at the declared size (batch 2), at other sizes (batch 3, every per-sample size
        + 1), and — for a floating point input, whose per-sample sizes may be channels that cannot vary — at
        another batch size alone (then the per-sample shape is checked); each with its description."""
        sizes = [(2, *self.input_shape), (3, *(d + 1 for d in self.input_shape)), (3, *self.input_shape)]
        if not self.dtype.is_floating_point:  # token ids: every per-sample size is a sequence length
            sizes = sizes[:2]
        return [(str(list(s)), {name: fake_input(self.fake, s, self.dtype)}) for s in sizes]

    def child_examples(self, module: nn.Module, path: str) -> list[tuple[str, dict[str, Any]]]:
        return [(_describe_example(e), e) for e in self.calls.get(path, [])]

    def record(self, path: str, module: nn.Module, states: Sequence[GuardState]) -> None:
        """Keep what the accepted traces of ``module`` (at ``path``) called each child with."""
        for state in states:
            if state.guards:
                self.specialised = True
                self.dtype_read = self.dtype_read or any(g.what == "dtype" for g in state.guards)
                self.lines += [g.line for g in state.guards]
            for target, calls in state.calls.items():
                child = module.get_submodule(target)
                full = f"{path}.{target}" if path else target
                self.calls.setdefault(full, []).extend(calls_by_name(child, calls))
                if target in state.direct:
                    self.called.add(full)
            for target, fixed in state.constants.items():
                full = f"{path}.{target}" if path else target
                if repr(self.constants.setdefault(full, fixed)) != repr(fixed) or target in state.conflicts:
                    self.conflicts.add(full)

    def check_statement(self, name: str) -> str:
        """The root Graph's first statement: its input checked against what the traces assumed."""
        shape = [-1, *(self.input_shape if self.pinned else [-1] * len(self.input_shape))]
        dtype = str(self.dtype).removeprefix("torch.") if self.dtype_read or not self.dtype.is_floating_point else None
        return f"{name} = expect_input({name}, {shape}" + (f", {dtype!r})" if dtype else ")")


def _describe_example(example: Mapping[str, Any]) -> str:
    shown = [f"{k}: {list(v.shape)}" for k, v in example.items() if isinstance(v, torch.Tensor)]
    return "{" + ", ".join(shown) + "}"


__all__ = [
    "EXAMPLE",
    "MISSING",
    "Guard",
    "GuardMixin",
    "GuardProxy",
    "GuardSession",
    "GuardState",
    "drop_unused_metadata",
    "example_of",
    "flatten_output",
]
