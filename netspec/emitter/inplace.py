"""In-place tensor methods whose result nobody else can see, made out of place before a graph is rendered.

In: a traced fx graph. Out: the same graph (changed in place) where each ``h.add_(p)`` (a method in
``spelling.IN_PLACE``) whose ``h`` is computed in this forward, is no view of another value and has no view
read after the change, has its later readers of ``h`` reading the method's result instead: ``h.add_(p);
cat([c, h])`` becomes ``h2 = h.add(p); cat([c, h2])`` (timm's NaFlexViT adds its position embedding with
``x.add_(...)`` and reads ``x`` on). An assignment into a part of a tensor, ``t[key] = v`` (traced as
``operator.setitem``), is made the statement ``t[key] = v`` (``set_index``: ``t`` rebound to a copy with that
part set) under the same conditions (MViTv2's ``attn[:, :, 1:, 1:] = ...``, ConViT's ``rel_indices[..., 2] =
...`` into a ``zeros``). Anything else is left as it is, for the renderer to refuse with its
reason (an input, parameter or buffer changed, a value that may be another one, or an alias that would see the
change). ``InPlaceWriting`` is the part of the renderer that writes them (or refuses, naming the reason).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from ..compiler.allowlists import set_index
from ..errors import EmitError
from .layers import where
from .spelling import IN_PLACE, VIEWS, Expr

# Calls whose result is a new tensor: never their input, a parameter or a buffer. A layer counts when its
# class runs one of these forwards (a subclass with its own forward might return its input).
_FRESH_FORWARDS = tuple(
    cls.forward
    for cls in (
        nn.Linear,
        nn.LayerNorm,
        nn.GroupNorm,
        nn.RMSNorm,
        nn.Conv1d,
        nn.Conv2d,
        nn.Conv3d,
        nn.BatchNorm1d,
        nn.BatchNorm2d,
        nn.BatchNorm3d,
        nn.Embedding,
    )
)
_FRESH_FUNCTIONS = frozenset(
    {
        operator.add,
        operator.sub,
        operator.mul,
        operator.truediv,
        operator.matmul,
        operator.neg,
        torch.cat,
        torch.stack,
        torch.matmul,
        torch.einsum,
        torch.add,
        torch.sub,
        torch.mul,
        torch.div,
        torch.zeros,  # the factories (recorded when a size is traced; torch.zeros(1, n, n, 3) in ConViT)
        torch.ones,
        torch.full,
        torch.empty,
        torch.arange,
        set_index,  # a copy: a second assignment into the same tensor (ConViT sets three channels in turn)
    }
)
# Tensor methods that always compute a new tensor (a cast such as ``x.float()`` may return ``x`` itself).
_FRESH_METHODS = frozenset(
    (
        "add sub mul div pow neg abs exp log sqrt rsqrt sigmoid tanh relu softmax log_softmax matmul bmm "
        "clone masked_fill sum mean square cumsum clamp clamp_min clamp_max repeat"
    ).split()
)


def _alias_of(n: fx.Node, module: nn.Module) -> fx.Node | None:
    """The value ``n`` shares storage with by construction: a view's input, an ``nn.Identity``'s argument."""
    if (n.op == "call_method" and str(n.target) in VIEWS) or (n.op == "call_function" and n.target is operator.getitem):
        return n.args[0] if isinstance(n.args[0], fx.Node) else None
    if n.op == "call_module" and n.args and isinstance(n.args[0], fx.Node):
        try:
            child = module.get_submodule(str(n.target))
        except AttributeError:
            return None
        if type(child).forward is nn.Identity.forward:
            return n.args[0]
    return None


def _fresh(n: fx.Node, module: nn.Module) -> bool:
    """Whether ``n`` computes a new tensor: never its input, a parameter or a buffer."""
    if n.op == "call_module":
        try:
            child = module.get_submodule(str(n.target))
        except AttributeError:
            return False
        return type(child).forward in _FRESH_FORWARDS
    if n.op == "call_method":
        return str(n.target) in _FRESH_METHODS
    return n.op == "call_function" and n.target in _FRESH_FUNCTIONS


def functionalise(graph: fx.Graph, module: nn.Module) -> None:
    """Redirect the later readers of a value changed by an in-place method to the method's result, where
    the storage it writes is a new tensor of this forward (``_fresh``) that no other value shares and reads
    after the change (views taken before it, the value an ``nn.Identity`` passed on)."""
    for n in list(graph.nodes):
        assigning = n.op == "call_function" and n.target is operator.setitem  # t[key] = v
        if not assigning and (n.op != "call_method" or str(n.target) not in IN_PLACE or not n.args):
            continue
        base = n.args[0]
        if not isinstance(base, fx.Node):
            continue
        order = {m: i for i, m in enumerate(graph.nodes)}
        later = [u for u in base.users if u is not n and order[u] > order[n]]
        if not later and not assigning:
            continue
        root = base
        while (up := _alias_of(root, module)) is not None:
            root = up
        if not _fresh(root, module):
            continue
        group, todo = {root}, [root]
        while todo:  # every value sharing the storage, made before the change
            for user in todo.pop().users:
                if user not in group and order[user] < order[n] and _alias_of(user, module) is not None:
                    group.add(user)
                    todo.append(user)
        if any(order[u] > order[n] for m in group - {base} for u in m.users):
            continue  # another name for the storage is read after the change: left for the renderer to refuse
        if assigning:  # the statement `t[key] = v`: t rebound to a copy with that part set
            n.target = set_index
        for user in later:
            user.replace_input_with(base, n)


class InPlaceWriting:
    """How ``render._Renderer`` writes what changes a value in place (it provides the attributes below): an
    in-place method left by ``functionalise`` is checked (``check_in_place``), a ``t[key] = v`` it made is the
    statement ``t[key] = v`` (``assign_index``)."""

    graph: fx.Graph
    module: nn.Module
    path: str
    expr: dict[fx.Node, Expr]
    statements: list[str]
    tensors: set[str]
    fail: Callable[[str], EmitError]
    index: Callable[[Any], str]
    value: Callable[[Any], Expr]

    def assign_index(self, n: fx.Node) -> None:
        """``t[key] = v`` (``set_index``, made by ``inplace.functionalise``): ``t`` is a name (flushed before)
        of a new value of this forward, which the statement rebinds; its later readers read ``n``."""
        base, key, value = n.args
        name = self.expr[base].text
        if not name.isidentifier() or name in self.tensors:  # unreachable: functionalise wants a new value
            raise self.fail(f"assigns into a part of {name}")
        self.statements.append(f"{name}[{self.index(key)}] = {self.value(value).text}")
        self.expr[n] = Expr(name)

    def changed(self, v: Any) -> str:
        if isinstance(v, fx.Node) and v.op in ("placeholder", "get_attr"):
            return f"the {'input' if v.op == 'placeholder' else 'tensor'} {v.target!r}"
        return "a value computed in forward"

    def check_in_place(self, n: fx.Node) -> None:
        """``h.mul_(2)`` may be written ``h.mul(2)`` only when no one else sees ``h`` changed: ``h`` (and what it
        is a view of) is computed in this forward, not an input, parameter or buffer, and is not read later."""
        order = {m: i for i, m in enumerate(self.graph.nodes)}
        base = n.args[0]
        while isinstance(base, fx.Node):
            later = [u for u in base.users if u is not n and order[u] > order[n]]
            if base.op in ("placeholder", "get_attr") or later:
                what = (
                    f"the {'input' if base.op == 'placeholder' else 'tensor'} {base.target!r}"
                    if base.op in ("placeholder", "get_attr")
                    else f"a value read again later ({later[0].name})"
                )
                raise EmitError(
                    f"{where(self.path, self.module)}: forward changes {what} in place with .{n.target}(), "
                    "which a Graph cannot express (statements compute new values)"
                    f"\n    hint: write the out-of-place .{str(n.target)[:-1]}() in forward"
                )
            views = (base.op == "call_method" and str(base.target) in VIEWS) or (
                base.op == "call_function" and base.target is operator.getitem
            )
            if not views:
                return
            base = base.args[0]


__all__ = ["InPlaceWriting", "functionalise"]
