"""How an emitted Graph statement calls a traced child: which arguments it passes, and which it may not.

In: the fx call of a child (its target, arguments and keywords) inside the forward being rendered. Out:
the arguments the child's emitted Graph takes — less those it fixes to their defaults — or an
``EmitError`` when a value would be lost (a computed value for a fixed default, a keyword only
``**kwargs`` would take, a list of computed values). ``ChildCalls`` is the part of
``render._Renderer`` that does this.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch.fx as fx
import torch.nn as nn

from ..errors import EmitError
from .layers import same_value, where
from .lists import node_list
from .spelling import fixed_inputs


class ChildCalls:
    """Checks and trims a traced child's call for ``_Renderer``, which provides the attributes below."""

    module: nn.Module
    path: str
    traced: Callable[[nn.Module], bool]
    guarded: bool
    passed: dict[str, tuple[str, ...]]

    def child_call(
        self, target: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments of a call of a traced child, less those its Graph fixes to their defaults (a caller
        passing another value is refused: the child's Graph would silently ignore it)."""
        child = self.module.get_submodule(target)
        beyond: list[str] = []  # computed values only its **kwargs takes: inputs of its generated forward
        if self.traced(child):
            self.check_keywords(target, child, kwargs)
            named = _named(child)
            if named is not None:  # the constants only its **kwargs took are fixed in its Graph
                kwargs = {k: v for k, v in kwargs.items() if k in named or k in self.passed.get(target, ())}
                beyond = [k for k in kwargs if k not in named]
        fixed = fixed_inputs(child) if self.traced(child) else {}
        if not fixed and not (self.guarded and beyond):
            return args, dict(kwargs)
        names = list(inspect.signature(child.forward).parameters)
        if len(fixed) == len(names) and not self.passed_here(target):
            return args, dict(kwargs)  # every input defaulted: the child's own trace refuses it, naming why
        passed = self.passed.get(target, ())
        fixed = {k: v for k, v in fixed.items() if k not in passed}
        given = {**{names[i]: v for i, v in enumerate(args) if i < len(names)}, **kwargs}
        for name in passed:
            if not computed(given.get(name)):
                raise EmitError(
                    f"{where(self.path, self.module)}: calls {target} ({type(child).__name__}) with {name}= a value "
                    f"computed in forward at one call and {given.get(name, fixed_inputs(child)[name][1])!r} at "
                    f"another; its emitted Graph takes {name} as an input, which every call must pass"
                    f"\n    hint: call {target} the same way everywhere, or register {type(child).__name__} as a layer"
                )
        for name, value in given.items():
            if name in fixed and not same_constant(value, fixed[name][1]) and self.guarded and not node_refs(value):
                continue  # a constant: the child's guarded trace fixes the argument to it (GuardSession.constants)
            if name in fixed and not same_constant(value, fixed[name][1]):
                shown = "a value computed in forward" if isinstance(value, fx.Node) else repr(value)
                if node_refs(value):  # a list or tuple holding computed values: no Graph input takes one
                    kind = "tuple" if isinstance(value, tuple) else "list"
                    raise EmitError(
                        f"{where(self.path, self.module)}: calls {target} ({type(child).__name__}) with "
                        f"{name}={value!r}, a {kind} of values computed in forward; a Graph input takes one value, "
                        f"so its emitted Graph cannot take {name} (and fixes it to the default {fixed[name][1]!r})"
                        "\n    hint: emit with input_shape= (a list of tensors then becomes one Graph input per "
                        "element), pass the tensors as separate arguments, or register "
                        f"{type(child).__name__} as a layer"
                    )
                raise EmitError(
                    f"{where(self.path, self.module)}: calls {target} ({type(child).__name__}) with {name}={shown}, "
                    f"but its emitted Graph fixes {name} to the default {fixed[name][1]!r} (Graph inputs have no "
                    "defaults), so the value would be lost"
                    f"\n    hint: give {type(child).__name__}.forward's {name!r} no default, "
                    "or pass it as a layer argument"
                )
        if not fixed and not (self.guarded and beyond):
            return args, dict(kwargs)
        params = inspect.signature(child.forward).parameters.values()
        inputs = [p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in fixed]
        inputs += [k for k in passed if k not in names]  # after forward's own: see bindings.bindings
        if self.guarded and all(n in given for n in inputs):
            # by position: the child's guarded Graph may rename an input that shares a buffer's name
            return tuple(given[n] for n in inputs), {}
        if beyond:  # unreachable: a guarded parent passes every input of its traced child
            raise EmitError(f"{where(self.path, self.module)}: calls {target} without all of its inputs")
        kept_args = args[: min(i for i, _ in fixed.values())]
        covered = set(names[: len(kept_args)])
        kept_kwargs = {k: v for k, v in given.items() if k not in fixed and k not in covered}
        return kept_args, kept_kwargs

    def passed_values(self, nodes: list[fx.Node]) -> dict[str, tuple[str, ...]]:
        """The defaulted forward arguments of traced children that some call here passes a computed value:
        their Graphs take them as inputs (timm's DLA passes ``shortcut``, GC ViT ``q_global``)."""
        out: dict[str, tuple[str, ...]] = {}
        for n in nodes:
            if n.op != "call_module":
                continue
            child = self.module.get_submodule(str(n.target))
            fixed = fixed_inputs(child) if self.traced(child) else {}
            params = list(inspect.signature(child.forward).parameters.values()) if self.traced(child) else []
            # a guarded trace also passes a computed value only **kwargs takes (Llama's decoder layer passes
            # position_ids on to its attention): the child's generated forward takes it as an input, after its own
            extra = self.guarded and any(p.kind is p.VAR_KEYWORD for p in params)
            if not fixed and not extra:
                continue
            names = [p.name for p in params]
            given = {**{names[i]: v for i, v in enumerate(n.args) if i < len(names)}, **n.kwargs}
            given_values = [k for k in names if k in fixed and computed(given.get(k))]
            beyond = [k for k in n.kwargs if k not in names and extra and computed(n.kwargs[k])]
            if (given_values and (len(fixed) < len(names) or self.guarded)) or beyond:  # guarded: T5Stack
                previous = out.get(str(n.target), ())
                named = tuple(k for k in names if k in given_values or k in previous)
                out[str(n.target)] = named + tuple(dict.fromkeys(k for k in (*previous, *beyond) if k not in names))
        return out

    def passed_here(self, target: str) -> bool:
        """Whether this forward passes ``target`` computed values for defaulted arguments (recorded so far)."""
        return bool(self.passed.get(target))

    def check_keywords(self, target: str, child: nn.Module, kwargs: Mapping[str, Any]) -> None:
        """A keyword that only a traced child's ``**kwargs`` would take is refused: its Graph is traced with
        ``**kwargs`` empty and has no input of that name."""
        try:
            params = inspect.signature(child.forward).parameters.values()
        except (TypeError, ValueError):
            return
        named = {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
        var_kw = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        # a guarded trace fixes a constant keyword in the child's Graph (GuardSession.constants), as it fixes
        # a named argument's, and makes a computed one an input of the child's generated forward (``passed``)
        extra = [
            k
            for k in kwargs
            if k not in named and (not self.guarded or node_refs(kwargs[k])) and k not in self.passed.get(target, ())
        ]
        if var_kw is not None and extra:
            raise EmitError(
                f"{where(self.path, self.module)}: calls {target} ({type(child).__name__}) with {extra[0]}=..., "
                f"which only its **{var_kw} takes; its emitted Graph is traced with **{var_kw} empty, so the value "
                f"would be lost\n    hint: give {type(child).__name__}.forward a named argument {extra[0]!r}"
            )


def _named(module: nn.Module) -> set[str] | None:
    """The names of ``module.forward``'s named arguments (not ``*args``/``**kwargs``), or None."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return None
    return {p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}


def computed(value: Any) -> bool:
    """A value computed in forward: a graph node, or a list of tensor values (one Graph input each)."""
    return isinstance(value, fx.Node) or node_list(value)


def node_refs(value: Any) -> list[fx.Node]:
    """The graph nodes in ``value``, in order."""
    found: list[fx.Node] = []
    fx.node.map_arg(value, lambda n: found.append(n) or n)  # type: ignore[func-returns-value]
    return found


def same_constant(a: Any, b: Any) -> bool:
    """Equal constants (``layers.same_value``); a graph node equals no constant."""
    return not isinstance(a, fx.Node) and not isinstance(b, fx.Node) and same_value(a, b)


__all__ = ["ChildCalls", "computed", "node_refs", "same_constant"]
