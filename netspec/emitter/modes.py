"""Train and eval traces of one forward -> one graph whose training-only steps follow the mode at run time.

In: the eval-mode and the train-mode ``torch.fx`` graphs of a module's forward (traced by ``trace``),
which differ beyond dropout's ``training`` flag, and a function giving a node's mode-argument index.
Out: a ``ModeMerge`` — the train graph, edited so that each step only training mode computes becomes
``mode_select(training, step, None)`` (written ``a = aux1(h) if training else None``: computed in
training only, in its original place, so random draws keep their order) and the output becomes
``mode_select(training, train_output, eval_output)``, with a namedtuple output (GoogLeNet's
``GoogLeNetOutputs``, Inception v3's ``InceptionOutputs``) written as a plain tuple — plus each eval
node's counterpart in the train graph. A number argument that differs by mode (``dropout_p=p if
self.training else 0.0``) is written ``a if training else b``. This is GoogLeNet's and Inception v3's auxiliary heads
(issue 12, A3). Anything else — the eval graph is not the train graph with steps left out, or a
training-only step feeds a step both modes compute — gives ``None``, and ``trace`` refuses the module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch.fx as fx

from ..compiler.allowlists import MODE_ARGUMENTS, mode_select
from .spelling import function_name, public_name


@dataclass
class ModeMerge:
    graph: fx.Graph  # the train graph, edited
    counterpart: dict[fx.Node, fx.Node]  # eval node -> train node
    training_only: list[fx.Node]  # train nodes eval mode does not compute (before wrapping)
    mode_constants: int = 0  # arguments written `a if training else b`


CONSTANT_PREFIX = "_tensor_constant"


def target_key(n: fx.Node) -> str:
    """What a node calls or reads, for comparing two traces: fx stores a tensor computed eagerly in forward
    (arithmetic on a plain tensor attribute, ``torch.tensor(...)``) as ``_tensor_constantN``, numbered from
    a counter that runs on between traces, so the two modes' traces of one computation name it differently;
    such a read compares as the same read (emit refuses it anyway: a spec cannot hold that tensor)."""
    target = str(n.target)
    return CONSTANT_PREFIX if n.op == "get_attr" and target.startswith(CONSTANT_PREFIX) else target


def _namedtuple(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, tuple) and hasattr(target, "_fields")


_Key = tuple[str, int | str]  # ("args", position) or ("kwargs", name)


def _same(
    e: fx.Node, t: fx.Node, counterpart: dict[fx.Node, fx.Node], mode_index: Callable[[fx.Node], int | None]
) -> list[tuple[_Key, Any]] | None:
    """Whether eval node ``e`` computes what train node ``t`` does (dropout's ``training`` flag aside): None
    if not; else the top-level number arguments whose value differs by mode, with their eval value
    (``dropout_p=0.1`` in training, ``0.0`` in eval: ``p if self.training else 0.0``)."""
    if e.op != t.op or len(e.args) != len(t.args) or set(e.kwargs) != set(t.kwargs):
        return None
    if (e.target != t.target) and not (e.op == "get_attr" and target_key(e) == target_key(t) == CONSTANT_PREFIX):
        return None
    at = mode_index(t)
    differing: list[tuple[_Key, Any]] = []
    pairs = [(("args", i), a, b) for i, (a, b) in enumerate(zip(e.args, t.args, strict=True)) if i != at]
    pairs += [(("kwargs", k), e.kwargs[k], t.kwargs[k]) for k in t.kwargs if k != "training"]
    for key, a, b in pairs:
        mapped = fx.node.map_arg(a, lambda n: counterpart.get(n, n))
        if repr(mapped) == repr(b):  # nodes print as their (unique) names
            continue
        numbers = (int, float)
        if type(a) is type(b) and isinstance(a, numbers) and not isinstance(a, bool):
            differing.append((key, a))
            continue
        return None
    return differing


def merge_modes(
    evaluated: fx.Graph, trained: fx.Graph, mode_index: Callable[[fx.Node], int | None]
) -> ModeMerge | None:
    """The merged graph (see the module docstring), or None when the two modes differ otherwise."""
    e_nodes = [n for n in evaluated.nodes if n.op != "output"]
    t_nodes = [n for n in trained.nodes if n.op != "output"]
    counterpart: dict[fx.Node, fx.Node] = {}
    only: list[fx.Node] = []
    constants: list[tuple[fx.Node, list[tuple[_Key, Any]]]] = []
    i = 0
    for t in t_nodes:
        differing = _same(e_nodes[i], t, counterpart, mode_index) if i < len(e_nodes) else None
        if differing is not None:
            counterpart[e_nodes[i]] = t
            if differing:
                constants.append((t, differing))
            i += 1
        else:
            only.append(t)
    if i != len(e_nodes) or not (only or constants) or any(n.op == "placeholder" for n in only):
        return None
    t_out = next(n for n in trained.nodes if n.op == "output")
    e_out = next(n for n in evaluated.nodes if n.op == "output")
    only_set = set(only)
    for n in only:  # a training-only step may feed only training-only steps and the output
        if any(u not in only_set and u is not t_out for u in n.users):
            return None
    train_value = t_out.args[0]
    if isinstance(train_value, fx.Node) and train_value in only_set and _namedtuple(train_value.target):
        # GoogLeNetOutputs(logits, aux2, aux1): the plain tuple of its fields
        fields = list(train_value.target._fields)  # type: ignore[union-attr]
        given = {**dict(zip(fields, train_value.args, strict=False)), **train_value.kwargs}
        if set(given) != set(fields):
            return None
        t_out.args = (tuple(given[f] for f in fields),)
        only.remove(train_value)
        trained.erase_node(train_value)
        train_value = t_out.args[0]
    if any(isinstance(n.target, type) for n in only):
        return None  # another object constructed in training only: not expressible
    eval_value = fx.node.map_arg(e_out.args[0], lambda n: counterpart[n])
    first = next(n for n in trained.nodes if n.op != "placeholder")
    with trained.inserting_before(first):
        flag = trained.get_attr("training")
    for t, differing in constants:  # `dropout_p=0.1 if training else 0.0`, a statement of its own
        args, kwargs = list(t.args), dict(t.kwargs)
        for (where, key), in_eval in differing:
            in_training = args[key] if where == "args" else kwargs[key]  # type: ignore[index]
            with trained.inserting_before(t):
                name = f"{t.name}_{key}" if where == "kwargs" else f"{t.name}_arg{key}"
                select = (flag, in_training, in_eval)
                chosen = trained.create_node("call_function", mode_select, select, {}, name=name)
            if where == "args":
                args[key] = chosen  # type: ignore[index]
            else:
                kwargs[key] = chosen  # type: ignore[index]
        t.args, t.kwargs = tuple(args), kwargs
    for n in only:
        with trained.inserting_after(n):
            chosen = trained.create_node("call_function", mode_select, (flag, n, None), {}, name=f"{n.name}_train")
        n.replace_all_uses_with(chosen, delete_user_cb=lambda user, chosen=chosen: user is not chosen)
    train_value = t_out.args[0]
    if repr(train_value) != repr(eval_value):
        with trained.inserting_before(t_out):
            out = trained.create_node("call_function", mode_select, (flag, train_value, eval_value), {}, name="outputs")
        t_out.args = (out,)
    trained.lint()
    return ModeMerge(trained, counterpart, only, sum(len(d) for _, d in constants))


def signature_key(graph: fx.Graph) -> list[tuple[Any, ...]]:
    """A comparable form of a graph, with dropout's ``training`` flag left out."""
    index = {n: i for i, n in enumerate(graph.nodes)}

    def norm(v: Any) -> Any:
        return fx.node.map_arg(v, lambda n: ("%", index[n]))

    key = []
    for n in graph.nodes:
        args, kwargs = n.args, dict(n.kwargs)
        at = mode_index(n)
        if at is not None:
            kwargs.pop("training", None)
            args = tuple(v for i, v in enumerate(args) if i != at)
        key.append((n.op, target_key(n), repr(norm(args)), repr(norm(kwargs))))
    return key


def describe_step(n: fx.Node) -> str:
    """One traced step in words: ``calls attn``, ``calls torch.nn.functional.pad``, ``reads attention_biases``."""
    if n.op == "call_module":
        return f"calls {n.target}"
    if n.op == "call_function":
        return f"calls {public_name(n.target)}"
    if n.op == "call_method":
        return f"calls .{n.target}()"
    if n.op == "get_attr":
        return f"reads {n.target}"
    return "returns" if n.op == "output" else f"takes {n.target}"


def first_difference(evaluated: fx.Graph, trained: fx.Graph) -> str:
    """Where the eval and train traces part (the real cause of a mode-dependent forward)."""
    e, t = signature_key(evaluated), signature_key(trained)
    e_nodes, t_nodes = list(evaluated.nodes), list(trained.nodes)
    at = next((i for i, (a, b) in enumerate(zip(e, t, strict=False)) if a != b), min(len(e), len(t)))
    if at >= len(e_nodes) or at >= len(t_nodes):  # unreachable: the traces differ and both end in output
        return f"eval mode has {len(e_nodes)} steps, training mode {len(t_nodes)}"
    a, b = describe_step(e_nodes[at]), describe_step(t_nodes[at])
    if a == b:
        return f"at step {at + 1} both {a}, with other arguments"
    return f"at step {at + 1} eval mode {a}, training mode {b}"


def mode_index(n: fx.Node) -> int | None:
    """Where a function with a ``training`` argument (dropout, batch_norm) takes it; None for other nodes."""
    if n.op != "call_function":
        return None
    return MODE_ARGUMENTS.get(function_name(n.target) or "")


def mode_value(n: fx.Node, index: int) -> Any:
    return n.kwargs.get("training", n.args[index] if len(n.args) > index else None)


__all__ = [
    "CONSTANT_PREFIX",
    "ModeMerge",
    "describe_step",
    "first_difference",
    "merge_modes",
    "mode_index",
    "mode_value",
    "signature_key",
    "target_key",
]
