"""Lists of tensors crossing a Graph boundary: one Graph input per element, in order.

In: the example calls a traced child was recorded with (guarded tracing, see ``guards``), or the fx
arguments of its call in the parent's graph. Out, for the child: which forward arguments are lists (or
tuples) of tensors and their flat input names — ``forward(self, x: List[Tensor])`` called with two tensors
becomes a Graph with inputs ``x_0, x_1`` whose trace hands forward the Python list ``[x_0, x_1]``, so
``x[1]``, ``len(x)``, ``x.append(...)`` and ``x[i] = f(x[i])`` (timm's SelecSLS, VoVNet, HRNet, DLA) are
plain Python on that list; for the parent: the call's arguments with such a list spread into its elements
(``stage(a, b)``). The length of each list is fixed by the examples (a child called with lists of other
lengths is refused). A child that appends to a list its caller passed (VoVNet's ``SequentialAppendList``), or
assigns into it (HRNet's ``x[i] = branch(x[i])``), leaves the caller's list holding ``Changed`` placeholders
there: reading one in the caller is refused (its value lives in the child's Graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.fx as fx
from torch.fx.proxy import TraceError

from ..errors import EmitError

EXAMPLE_KEY = "netspec_example"  # node.meta: a value's example (``guards.EXAMPLE``, which is this key)


def tensor_list(value: Any) -> bool:
    """Whether an example value is a non-empty list or tuple of tensors (a flattened Graph argument)."""
    return (
        isinstance(value, (list, tuple))
        and not hasattr(value, "_fields")
        and bool(value)
        and all(isinstance(v, torch.Tensor) for v in value)
    )


def list_arguments(examples: Sequence[Mapping[str, Any]], names: Sequence[str], where: str) -> dict[str, int]:
    """The arguments among ``names`` that every example gives a list of tensors: name -> its length."""
    lengths: dict[str, int] = {}
    for name in names:
        values = [e[name] for e in examples if name in e]
        listed = [tensor_list(v) for v in values]
        if not any(listed):
            continue
        counts = {len(v) for v, is_list in zip(values, listed, strict=True) if is_list}
        if not all(listed) or len(counts) != 1:
            shown = ", ".join(str(len(v)) if tensor_list(v) else type(v).__name__ for v in values)
            raise EmitError(
                f"{where}: forward's {name!r} is called with lists of different lengths or with a list at one "
                f"call and something else at another ({shown}); its emitted Graph takes one input per element, "
                "so every call must pass a list of the same length"
            )
        lengths[name] = counts.pop()
    return lengths


def flat_names(names: Sequence[str], lengths: Mapping[str, int], taken: Sequence[str] = ()) -> list[str]:
    """``names`` with each list argument replaced by one name per element (``x_0, x_1``), clashing with none."""
    used = set(names) | set(taken)
    out: list[str] = []
    for name in names:
        if name not in lengths:
            out.append(name)
            continue
        for i in range(lengths[name]):
            flat = f"{name}_{i}"
            while flat in used:
                flat = f"{flat}_"
            used.add(flat)
            out.append(flat)
    return out


@dataclass(frozen=True)
class Flattened:
    """A traced forward's arguments with its list arguments flattened: ``names`` (forward's, in order),
    ``lengths`` and ``kinds`` (list or tuple) of the list ones, ``flat`` the Graph's input names."""

    names: tuple[str, ...]
    lengths: Mapping[str, int]
    kinds: Mapping[str, type]
    flat: tuple[str, ...]

    @classmethod
    def of(
        cls, names: Sequence[str], examples: Sequence[Mapping[str, Any]], where: str, taken: Sequence[str]
    ) -> Flattened | None:
        """None when no argument is a list of tensors in the examples."""
        lengths = list_arguments(examples, names, where)
        if not lengths:
            return None
        kinds = {n: tuple if isinstance(examples[0][n], tuple) else list for n in lengths}
        return cls(tuple(names), lengths, kinds, tuple(flat_names(names, lengths, taken)))

    def example(self, example: Mapping[str, Any]) -> dict[str, Any]:
        """An example call by argument name -> by flat input name."""
        flat = iter(self.flat)
        out: dict[str, Any] = {}
        for name in self.names:
            elements = list(example[name]) if name in self.lengths else [example.get(name, _ABSENT)]
            for element in elements:
                key = next(flat)
                if element is not _ABSENT:
                    out[key] = element
        return out

    def source(self) -> tuple[str, str]:
        """The generated forward's parameter text and the keyword arguments it calls the real forward with:
        ``", x_0, x_1, y"`` and ``"x=[x_0, x_1], y=y, "``."""
        flat = iter(self.flat)
        params, call = "", ""
        for name in self.names:
            count = self.lengths.get(name)
            elements = [next(flat) for _ in range(1 if count is None else count)]
            params += "".join(f", {e}" for e in elements)
            if count is None:
                call += f"{name}={elements[0]}, "
            elif self.kinds[name] is tuple:
                call += f"{name}=({', '.join(elements)},), "
            else:
                call += f"{name}=[{', '.join(elements)}], "
        return params, call


_ABSENT = object()


def node_list(value: Any) -> bool:
    """Whether a call argument in the parent's graph is a non-empty list or tuple of values whose examples
    are tensors (the child's trace got ``tensor_list`` examples for it)."""
    if not isinstance(value, (list, tuple)) or not value or hasattr(value, "_fields"):
        return False
    return all(isinstance(v, fx.Node) and isinstance(v.meta.get(EXAMPLE_KEY), torch.Tensor) for v in value)


def spread(args: Sequence[Any], kwargs: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A traced child's call with each list of tensor values spread into its elements (``flat_names``)."""
    flat_args: list[Any] = []
    for a in args:
        flat_args.extend(a if node_list(a) else [a])
    flat_kwargs: dict[str, Any] = {}
    for k, v in kwargs.items():
        if node_list(v):
            for name, element in zip(flat_names([k], {k: len(v)}, list(kwargs)), v, strict=True):
                flat_kwargs[name] = element
        else:
            flat_kwargs[k] = v
    return tuple(flat_args), flat_kwargs


class Changed:
    """What a child put into a list its caller passed it (``x.append(v)``, ``x[i] = v``): the value exists in
    the child's Graph only, so the caller reading it cannot be written (``Changed`` refuses every use)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def refuse(self) -> TraceError:
        return TraceError(
            f"reads a value that the child {self.target} put into a list passed to it; a Graph passes a list as "
            "one input per element, so what a child changes in it stays inside the child's Graph"
        )

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and hasattr probes: no such attribute
            raise AttributeError(name)
        raise self.refuse()

    def __bool__(self) -> bool:
        raise self.refuse()


def mirror(target: str, caller: list[Any], now: Sequence[Any], before: Sequence[Any]) -> None:
    """Make the caller's list ``caller`` follow what the child's example call did to its copy (``before`` ->
    ``now``, element by element the examples of ``caller``): an element still there (by identity) is the
    caller's value again, anything the child put there is a ``Changed`` placeholder."""
    if len(now) == len(before) and all(a is b for a, b in zip(now, before, strict=True)):
        return
    values = list(caller)
    changed: list[Any] = []
    for element in now:
        kept = [j for j, b in enumerate(before) if b is element]
        changed.append(values[kept[0]] if kept else Changed(target))
    caller[:] = changed


CHANGES = "netspec_list_changes"  # node.meta: the lists a child's example call got (key, list, before)


def own_lists(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any], list[tuple[int | str, list[Any], list[Any]]]]:
    """The call's top-level lists as new plain lists (fx's are immutable; a child may append to them), and
    (position or keyword, the list, a copy of it) for each."""
    lists: list[tuple[int | str, list[Any], list[Any]]] = []

    def own(key: int | str, value: Any) -> Any:
        if isinstance(value, list):
            value = list(value)
            lists.append((key, value, list(value)))
        return value

    new_args = tuple(own(i, a) for i, a in enumerate(args))
    new_kwargs = {k: own(k, v) for k, v in kwargs.items()}
    return new_args, new_kwargs, lists


def follow_changes(
    target: str, args: Any, kwargs: Any, lists: Sequence[tuple[int | str, list[Any], list[Any]]]
) -> None:
    """The child's example call changed a list its caller passed (appended, assigned into it): the caller's
    list changes alike, with ``Changed`` placeholders, which refuse to be read, for the child's values."""
    for key, now, before in lists:
        caller = args[key] if isinstance(key, int) else kwargs[key]
        if isinstance(caller, list):  # fx hands call_module the caller's own list
            mirror(target, caller, now, before)


__all__ = [
    "CHANGES",
    "Changed",
    "Flattened",
    "flat_names",
    "follow_changes",
    "list_arguments",
    "mirror",
    "node_list",
    "own_lists",
    "spread",
    "tensor_list",
]
