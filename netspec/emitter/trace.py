"""Tracing custom modules for ``netspec.emit``: ``forward`` -> a ``torch.fx`` graph -> Graph statements.

In: an ``nn.Module`` whose class is not in the layer catalogue, and its path in the model (for
messages). Out: a ``GraphBody`` (inputs, forward statements, outputs, notes) made by
``emit_graph.render_graph`` from the module's fx graph: a ``GraphModule`` (netspec's own Graph
modules included) is read as it is; any other module is traced with ``torch.fx`` with every
submodule as a leaf, once in eval and once in training mode, so that a ``forward`` whose
computation depends on ``self.training`` is refused (only dropout may follow the mode; such a
dropout is written without ``training=``, as the Graph language adds it). Arguments with simple
defaults are fixed to them (and reported). A forward that cannot be traced — control flow on
tensor values, calls of unregistered modules — raises ``EmitError`` naming the module path, its
class and the reason.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..errors import EmitError, first_line
from .autocast import traced_autocast
from .bindings import bindings, bound_forward
from .buffers import take_buffer_updates
from .caches import check_stored
from .equivalents import leaf_functions
from .fakes import fake_tree
from .guards import (
    EXAMPLE,
    Guard,
    GuardMixin,
    GuardSession,
    GuardState,
    drop_unused_metadata,
    flatten_output,
)
from .layers import where
from .lint import ModelWarning
from .lists import Flattened
from .modes import CONSTANT_PREFIX, first_difference, merge_modes, mode_index, mode_value, signature_key
from .render import CONSTANT, GraphBody, render_graph
from .wrapped import FollowWrapped

_TORCH_DIR = str(Path(torch.__file__).parent)
_NETSPEC_DIR = str(Path(__file__).resolve().parents[1])

TRACE_HINT = (
    "netspec emits a custom module by symbolic tracing (torch.fx), which cannot follow Python control flow "
    "that depends on tensor values; register the class with netspec.register to emit it as a layer, or move "
    "the data-dependent part into a registered layer"
)


class _LeafTracer(FollowWrapped, fx.Tracer):
    """Every submodule is a leaf: the traced module's own forward is the only code followed. ``bind``, when
    set, replaces the forward that is traced (see ``_bound_forward``).

    Buffers are read as graph values (``get_attr``), as parameters are: arithmetic on them is recorded
    instead of folded into ``_tensor_constantN`` copies, and an in-place update (BatchNorm's
    ``num_batches_tracked.add_(1)``) becomes a node instead of running on the model's tensor."""

    bind: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None
    proxy_buffer_attributes = True

    def create_args_for_root(self, root_fn: Any, is_module: bool, concrete_args: Any = None) -> Any:
        own = vars(self.root).get("forward")
        if inspect.ismethod(own):  # a forward chosen per instance (``_check_own_forward`` vetted it)
            root_fn = own.__func__
        if self.bind is not None:
            root_fn = self.bind(root_fn)
        return super().create_args_for_root(root_fn, is_module, concrete_args)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True

    def get_fresh_qualname(self, prefix: str) -> str:
        """``_tensor_constant0``, ``1``, ... counted per trace (fx's own counter is shared by every tracer in
        the process), so the eval and train traces of one forward name their constants alike."""
        counter = vars(self).setdefault("_own_counter", {})
        i = counter.get(prefix, 0)
        while hasattr(self.root, f"{prefix}{i}"):
            i += 1
        counter[prefix] = i + 1
        return f"{prefix}{i}"


def own_forward(module: nn.Module) -> bool:
    """Whether ``forward`` is replaced on the instance (``self.forward = self.forward_split_cat``, as timm's
    FasterNet chooses its forward in ``__init__``): then that attribute, not the class's, is what runs."""
    return "forward" in vars(module) and not isinstance(module, fx.GraphModule)


def _check_own_forward(module: nn.Module, path: str) -> None:
    """An instance's own ``forward`` is traced in place of the class's when it is a method of the module
    itself; anything else assigned there (a lambda, another module's method, a ``functools.partial``) is
    refused: tracing the class's forward would emit what does not run."""
    own = vars(module).get("forward") if own_forward(module) else None
    if own is None or (inspect.ismethod(own) and own.__self__ is module):
        return
    raise EmitError(
        f"{where(path, module)}: forward is replaced on this instance by {type(own).__name__} {own!r}, which is "
        "not a method of the module itself, so its computation cannot be traced as the module's"
        "\n    hint: assign one of the module's own methods (self.forward = self.forward_fast), or define forward"
    )


class _GuardTracer(GuardMixin, _LeafTracer):
    """The leaf tracer with example values and guards (see ``guards``)."""


def _named(signature: inspect.Signature) -> list[str]:
    return [p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _examples(
    session: GuardSession | None, module: nn.Module, path: str, names: Sequence[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The example inputs to trace ``module`` at (the first is the traced one), or none (plain tracing)."""
    if session is None:
        return []
    if not path:
        return session.root_examples(names[0]) if len(names) == 1 else []
    return session.child_examples(module, path)


def _run_trace(
    module: nn.Module,
    path: str,
    training: bool,
    bound: Sequence[str] | None,
    concrete: Mapping[str, Any],
    example: Mapping[str, Any] | None,
    session: GuardSession | None,
    lists: Flattened | None = None,
) -> tuple[fx.Graph, GuardState | None]:
    """One trace of ``module.forward`` in one mode (with examples when ``example`` is given); ``lists``: its
    list arguments, each traced as one input per element (``lists.Flattened``)."""
    copied = _tracing_copy(module)
    copied.training = training
    try:
        tracer: _LeafTracer
        # a guarded trace installs the recording autocast itself; without examples an autocast region is refused
        autocast: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if example is not None and session is not None:
            guarded = _GuardTracer(autowrap_functions=tuple(leaf_functions()))  # timm's pad_same: one step
            flat = path in session.called  # a traced parent reads its structured output by position
            guarded.guard_setup(example, session.fake, fake_tree(module, session.fake, training, session.fakes), flat)
            guarded.is_traced = session.traced
            tracer = guarded
        else:
            tracer = _LeafTracer(autowrap_functions=tuple(leaf_functions()))
            autocast = traced_autocast(tracer, examples=False)
        with autocast:
            if bound is not None or lists is not None:
                names, fixed = lists.names if lists is not None else bound, concrete
                tracer.bind = lambda fn, names=names, fixed=fixed: bound_forward(fn, names, fixed, lists)
                graph = tracer.trace(copied)
            else:
                graph = tracer.trace(copied, concrete_args=dict(concrete) or None)
    except Exception as err:  # the user's forward runs under the tracer and may raise anything
        reason = first_line(err)
        if "is not installed as a submodule" in reason:
            raise EmitError(
                f"{where(path, module)}: forward calls a module that is not registered ({reason}); "
                "modules kept in a plain list, dict or tuple are invisible to PyTorch"
                "\n    hint: keep them in nn.ModuleList / nn.ModuleDict "
                "(netspec check lists every such attribute)"
            ) from err
        raise EmitError(
            f"{where(path, module)}: forward cannot be traced: {reason}{_cache_note(reason)}{_user_line(err)}"
            f"\n    hint: {_cache_hint(reason) or TRACE_HINT}"
        ) from err
    check_stored(copied, module, path)  # a cache forward fills: the Graph computes it every call
    _drop_dead_reads(graph)
    for node in graph.nodes:  # constants fx stored on the traced copy (torch.tensor(1.0) in forward)
        if node.op == "get_attr" and str(node.target).startswith(CONSTANT_PREFIX):
            node.meta[CONSTANT] = getattr(copied, str(node.target), None)
    if isinstance(tracer, _GuardTracer):
        if tracer.flatten_records:
            flatten_output(graph)
        drop_unused_metadata(graph)
        return graph, tracer.state
    return graph, None


def _cache_note(reason: str) -> str:
    """What fx's "argument of type: <class ...>" means when the object is a Hugging Face KV cache."""
    return " (the model's KV cache object, made because use_cache is True)" if _cache_hint(reason) else ""


def _cache_hint(reason: str) -> str | None:
    """For a Hugging Face KV cache (``DynamicCache``) passed to a submodule: how to emit the model without it."""
    if not reason.startswith("argument of type:") or "transformers.cache_utils." not in reason:
        return None
    return (
        "a Graph passes tensors only, and a spec has no KV cache; emit the model built with use_cache=False "
        "(from_pretrained(..., use_cache=False), or config.use_cache = False), as for training: emit never changes "
        "the model's config itself"
    )


def _same_trace(a: fx.Graph, sa: GuardState, b: fx.Graph, sb: GuardState) -> str | None:
    """None when two guarded traces agree (graph and guard outcomes); else where they part."""
    failed = [t for t in sb.missing_calls if t not in sa.missing_calls]
    if failed:
        return f"{failed[0]} cannot run at that size"
    for ga, gb in zip(sa.guards, sb.guards, strict=False):
        if ga.key() != gb.key():
            if ga.line == gb.line and ga.what == gb.what:
                return f"at {ga.line}: {_what(ga)} is {ga.value!r} at one size and {gb.value!r} at the other"
            return f"at {ga.line}: the traces part ({_what(ga)} {ga.value!r}; the other trace: {gb.line})"
    if len(sa.guards) != len(sb.guards):
        extra = (sa.guards if len(sa.guards) > len(sb.guards) else sb.guards)[min(len(sa.guards), len(sb.guards))]
        return f"at {extra.line}: one trace reads {_what(extra)} and the other does not"
    if signature_key(a) != signature_key(b):
        return f"a size is written into the graph as a number ({first_difference(a, b)})"
    return None


def _what(guard: Guard) -> str:
    return {"bool": "the condition", "len": "the length", "int": "the number", "float": "the number"}.get(
        guard.what, f"the {guard.what}"
    )


def _check_sizes(
    module: nn.Module,
    path: str,
    bound: Sequence[str] | None,
    concrete: Mapping[str, Any],
    examples: Sequence[tuple[str, dict[str, Any]]],
    graph: fx.Graph,
    state: GuardState | None,
    session: GuardSession,
    lists: Flattened | None = None,
) -> GuardState | None:
    """Trace the eval-mode forward again at the other example sizes: the graph and every guard must come out
    the same, else the forward specialises on a size that varies and is refused, naming the line. The root
    is traced at other batch and per-sample sizes, and, if that fails or differs, at another batch size
    alone (then the emitted Graph checks the per-sample shape). Returns the accepted second trace's state."""
    if state is None:  # unreachable: examples make a guarded trace
        return None
    problems: list[str] = []
    accepted: GuardState | None = None
    for i, (shown, example) in enumerate(examples[1:]):
        try:
            other, other_state = _run_trace(module, path, False, bound, concrete, example, session, lists)
        except EmitError as err:
            difference: str | None = f"tracing fails ({str(err).split(': ', 2)[-1].splitlines()[0]})"
            other_state = None
        else:
            difference = _same_trace(graph, state, other, other_state) if other_state is not None else "no example"
        if path:  # a child: every recorded call must trace alike
            if difference is not None:
                problems.append(f"{difference} (traced with {examples[0][0]} and {shown})")
                break
            accepted = accepted or other_state
            continue
        if difference is None:  # the root: other sizes, or else another batch size with the shape checked
            session.pinned = i == 1
            return other_state
        problems.append(f"{difference} (traced at input {examples[0][0]} and {shown})")
    if not problems:
        return accepted
    raise EmitError(
        f"{where(path, module)}: forward specialises Python control flow on a size that varies: {problems[-1]}; "
        "the Graph would compute the traced branch for every input"
        f"\n    hint: {TRACE_HINT}"
    )


def _user_line(err: BaseException) -> str:
    """Where in the traced code an error was raised: `` (at file.py:123: source line)``, or ``""``.

    The innermost frame outside torch is the user's (or the model library's) line that the tracer could
    not follow; naming it turns "cannot be traced" into the line to change."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if not f.filename.startswith(_TORCH_DIR) and f.lineno]
    frames = [f for f in frames if not f.filename.startswith(_NETSPEC_DIR)]
    if not frames:
        return ""
    frame = frames[-1]
    parts = Path(frame.filename).parts
    shown = "/".join(parts[parts.index("site-packages") + 1 :]) if "site-packages" in parts else frame.filename
    line = (frame.line or "").strip()
    return f" (at {shown}:{frame.lineno}: {line[:160]})" if line else f" (at {shown}:{frame.lineno})"


def _tracing_copy(module: nn.Module) -> nn.Module:
    """A shallow copy of ``module`` to trace, so that tracing leaves the user's module exactly as it was:
    fx stores tensor constants as ``_tensor_constantN`` attributes on the module it traces, the mode is
    switched for the train-mode trace, and forward may assign attributes or fill a cache. The copy has its
    own attribute, parameter, buffer and child dicts and its own copy of every dict, list or set attribute
    (the tensors and children themselves are shared, and only ever read: the tracer hands forward proxies
    for them)."""
    clone = copy.copy(module)
    for name, value in vars(module).items():
        # the module's tables, and containers forward may fill (LeViT's eval-mode attention-bias cache)
        if isinstance(value, (dict, list, set)):
            vars(clone)[name] = copy.copy(value)
    return clone


def _drop_dead_reads(graph: fx.Graph) -> None:
    """Remove reads nothing uses: ``getattr(x, 'device')`` and ``get_attr`` nodes without users.

    fx creates an attribute node only when the attribute is used, and ``str(x.device)`` uses it: LeViT's and
    EfficientFormer's eval-mode bias cache keys on it, then computes what training mode computes. A read
    without users has no effect, so leaving it out cannot change what the graph computes."""
    changed = True
    while changed:
        changed = False
        for n in reversed(list(graph.nodes)):
            if n.users or not (n.op == "get_attr" or (n.op == "call_function" and n.target is getattr)):
                continue
            graph.erase_node(n)
            changed = True


def trace(
    module: nn.Module,
    path: str,
    inputs: Sequence[str] | None = None,
    passed: Sequence[str] = (),
    session: GuardSession | None = None,
) -> tuple[fx.Graph, dict[fx.Node, Any], list[ModelWarning], list[str]]:
    """Trace ``module.forward`` (eval and train mode); returns the graph, dropout ``training`` values, notes
    and the buffer-update statements (``num_batches_tracked.add_(1) if training else None``).

    A dropout whose ``training`` follows ``self.training`` maps to ``None`` (the Graph language adds it).
    ``inputs``: the forward arguments that become Graph inputs (the others are fixed to their defaults);
    ``passed``: defaulted arguments that stay inputs, because the parent passes them computed values.
    ``session``: guarded tracing (see ``guards``) when the model's input shape is known: Python may then
    branch on shapes and dtypes, provided the traces at other sizes agree (``_check_sizes``).
    """
    try:
        signature = inspect.signature(module.forward)
    except (TypeError, ValueError) as err:
        raise EmitError(f"{where(path, module)}: cannot read forward's signature: {err}") from None
    _check_own_forward(module, path)
    concrete, bound, notes = bindings(module, path, signature, inputs, passed)
    if session is not None and path in session.constants:  # the constants the parent's guarded trace passed
        if path in session.conflicts:
            raise EmitError(
                f"{where(path, module)}: is called at several places with different constant arguments; its "
                "emitted Graph can fix each to one value only"
            )
        # and the constants only **kwargs takes (GPT-2's blocks pass use_cache=False to their attention): the
        # generated forward passes them on, so the Graph computes what the parent's call computes
        takes_kwargs = bound is not None and any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
        concrete.update(
            {
                k: v
                for k, v in session.constants[path].items()
                if k in concrete or (takes_kwargs and k not in signature.parameters)
            }
        )
    names = bound if bound is not None else [n for n in _named(signature) if n not in concrete]
    examples = _examples(session, module, path, names)
    lists = Flattened.of(names, [e for _, e in examples], where(path, module), list(concrete)) if examples else None
    if lists is not None:  # a list of tensors: one Graph input per element (``lists``)
        examples = [(shown, lists.example(e)) for shown, e in examples]
    graphs: dict[bool, fx.Graph] = {}
    states: dict[bool, GuardState | None] = {}
    first = examples[0][1] if examples else None
    for training in (False, True):
        graphs[training], states[training] = _run_trace(module, path, training, bound, concrete, first, session, lists)
    if examples and session is not None:
        accepted = _check_sizes(module, path, bound, concrete, examples, graphs[False], states[False], session, lists)
        session.record(path, module, [s for s in (states[False], accepted) if s is not None])
    updates = {mode: take_buffer_updates(graph, module) for mode, graph in graphs.items()}
    modes: dict[fx.Node, Any] = {}
    pairs: list[tuple[fx.Node | None, fx.Node]]
    if signature_key(graphs[False]) == signature_key(graphs[True]):
        graph, same = graphs[False], True
        pairs = list(zip(graphs[False].nodes, graphs[True].nodes, strict=True))
    else:
        merged = merge_modes(graphs[False], graphs[True], mode_index)
        if merged is None:
            raise EmitError(
                f"{where(path, module)}: forward computes different things in training and eval mode "
                f"(it branches on self.training: {first_difference(graphs[False], graphs[True])}), which a Graph "
                "cannot express; only dropout, number arguments and steps computed in training mode alone "
                "(auxiliary outputs) may depend on the mode"
            )
        graph, same = merged.graph, False
        pairs = [*merged.counterpart.items(), *((None, t) for t in merged.training_only)]
        if merged.training_only:
            notes.append(
                ModelWarning(
                    path,
                    f"{type(module).__name__}.forward computes {len(merged.training_only)} step(s) in training "
                    "mode only (auxiliary outputs); the Graph writes them 'if training else None'",
                )
            )
    for evaluated, trained in pairs:
        index = mode_index(trained)
        if index is None:
            continue
        # a step computed in training mode only runs when training is True: its flag follows the mode
        e = mode_value(evaluated, index) if evaluated is not None else False
        t = mode_value(trained, index)
        modes[evaluated if same and evaluated is not None else trained] = None if (e is False and t is True) else e
    statements = [text if text in updates[False] else f"{text} if training else None" for text in updates[True]]
    statements += [f"{text} if not training else None" for text in updates[False] if text not in updates[True]]
    return graph, modes, notes, statements


def graph_body(
    module: nn.Module,
    path: str,
    traced: Callable[[nn.Module], bool] | None = None,
    inputs: Sequence[str] | None = None,
    passed: Sequence[str] = (),
    session: GuardSession | None = None,
) -> GraphBody:
    """Trace (or, for a GraphModule, read) ``module``'s forward and render it as Graph statements;
    ``traced(child)``: whether a child is itself emitted by tracing (see ``render_graph``); ``passed``: the
    defaulted arguments its parent passes computed values (``GraphBody.passed`` of the parent)."""
    if isinstance(module, fx.GraphModule):
        return render_graph(module.graph, module, path, traced=traced)
    graph, modes, notes, updates = trace(module, path, inputs, passed, session)
    guarded = any(EXAMPLE in n.meta for n in graph.nodes)
    body = render_graph(graph, module, path, modes, traced, passed, guarded=guarded)
    body.notes = notes + body.notes
    body.forward = updates + body.forward
    return body


__all__ = ["TRACE_HINT", "graph_body", "own_forward", "trace"]
