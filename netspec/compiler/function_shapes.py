"""Output shapes of common Graph-statement functions (``cat``, ``+``, ``relu``, attention, ...), without running them.

In: a function from the statement allow-list and its (meta) arguments. Out: the meta output
tensor, or None when no rule applies and the caller runs the function itself. torch's Python
decompositions cost about a millisecond per call on meta (and their first use imports
torch._dynamo, about a second); a wrong input raises ``ShapeError`` with torch's meaning, a
failing rule ``ShapeRuleBug``. ``statement_value`` is a whole statement's value on meta: the rule
when one applies, else the method or function run on meta (``device=`` and the tensor factories
forced to meta, ``.to``/``.cuda``/``.cpu`` staying there).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .allowlists import FACTORIES
from .shapes import NoRule, Shape, ShapeError, ShapeRuleBug, flat_shape, normal_dim


def _broadcast(shapes: Sequence[Shape]) -> Shape:
    rank = max(len(s) for s in shapes)
    out = []
    for dims in zip(*((1,) * (rank - len(s)) + tuple(s) for s in shapes), strict=True):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ShapeError(
                "the shapes " + ", ".join(str(list(s)) for s in shapes) + " cannot be broadcast together "
                f"(sizes {sorted(sizes)} at the same dim)"
            )
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def _binary(a: object, b: object) -> torch.Tensor:
    tensors = [t for t in (a, b) if isinstance(t, torch.Tensor)]
    shape = _broadcast([tuple(t.shape) for t in tensors])
    return torch.empty(shape, dtype=torch.result_type(a, b), device="meta")  # type: ignore[arg-type]


def _cat(tensors: Sequence[torch.Tensor], dim: object = 0) -> torch.Tensor:
    first = tuple(tensors[0].shape)
    axis = normal_dim(dim, len(first))
    for t in tensors[1:]:
        other = tuple(t.shape)
        if len(other) != len(first) or any(
            x != y for k, (x, y) in enumerate(zip(first, other, strict=True)) if k != axis
        ):
            raise ShapeError(f"cat needs equal sizes except in dim {dim}, got {list(first)} and {list(other)}")
    size = sum(t.shape[axis] for t in tensors)
    return torch.empty((*first[:axis], size, *first[axis + 1 :]), dtype=tensors[0].dtype, device="meta")


_ELEMENTWISE_BINARY = frozenset(
    {operator.add, operator.sub, operator.mul, operator.truediv, torch.add, torch.sub, torch.mul, torch.div}
)
_SAME_SHAPE_FUNCTIONS = frozenset(
    {
        F.relu,
        F.relu6,
        F.gelu,
        F.silu,
        F.mish,
        F.elu,
        F.selu,
        F.leaky_relu,
        F.hardswish,
        F.hardsigmoid,
        F.softplus,
        F.softmax,
        F.log_softmax,
        F.dropout,
        F.dropout1d,
        F.dropout2d,
        F.dropout3d,
        torch.sigmoid,
        torch.tanh,
        torch.relu,
        torch.sigmoid,
        F.sigmoid,
        F.tanh,
    }
)


def _floats(values: Sequence[object]) -> bool:
    return all(isinstance(v, torch.Tensor) and v.is_floating_point() for v in values)


_META = torch.device("meta")


def statement_value(op: str, target: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Any:
    """A ``call_method`` or ``call_function`` node's value on meta tensors (validation allocates nothing)."""
    if "device" in kwargs:  # every device= runs on meta
        kwargs = {**kwargs, "device": _META}
    if op == "call_method":
        if target in ("to", "cuda", "cpu"):  # moving between devices: the meta tensor stays on meta
            rest = [a for a in args[1:] if not isinstance(a, (str, torch.device, int))]
            kw = {k: v for k, v in kwargs.items() if k not in ("device", "non_blocking")}
            return args[0].to(*rest, **kw) if (rest or kw) and target == "to" else args[0]
        return getattr(args[0], str(target))(*args[1:], **kwargs)
    fn: Callable[..., Any] = target
    if fn in FACTORIES:
        kwargs = {**kwargs, "device": _META}
    fast = function_output(fn, args, kwargs if isinstance(kwargs, dict) else dict(kwargs))
    return fast if fast is not None else fn(*args, **kwargs)


def function_output(fn: object, args: Sequence[object], kwargs: dict[str, object]) -> torch.Tensor | None:
    """The meta output of a common statement function without running torch's Python decompositions
    (whose first use also imports torch._dynamo, about a second); None to run the function itself."""
    try:
        return _function_output(fn, args, kwargs)
    except NoRule:
        return None
    except ShapeError:
        raise
    except Exception as err:
        name = getattr(fn, "__name__", repr(fn))
        raise ShapeRuleBug(f"netspec's shape rule for {name} failed: {type(err).__name__}: {err}") from err


def _function_output(fn: object, args: Sequence[object], kwargs: dict[str, object]) -> torch.Tensor | None:
    first = args[0] if args else None
    if fn in (torch.cat, torch.concat) and isinstance(first, (list, tuple)) and first and _floats(first):
        return _cat(first, kwargs.get("dim", args[1] if len(args) > 1 else 0))  # type: ignore[arg-type]
    if not isinstance(first, torch.Tensor) or not first.is_floating_point():
        return None
    if fn in _ELEMENTWISE_BINARY and len(args) == 2 and not kwargs and isinstance(args[1], (torch.Tensor, int, float)):
        return _binary(first, args[1])
    if fn in _SAME_SHAPE_FUNCTIONS:
        if fn in (F.softmax, F.log_softmax) and len(args) + len(kwargs) > 1:
            normal_dim(kwargs.get("dim", args[1] if len(args) > 1 else None), first.dim())
        return torch.empty(tuple(first.shape), dtype=first.dtype, device="meta")
    if fn is F.scaled_dot_product_attention:
        return _attention(args, kwargs)
    if fn is torch.flatten and first.dim() > 0:
        start = kwargs.get("start_dim", args[1] if len(args) > 1 else 0)
        end = kwargs.get("end_dim", args[2] if len(args) > 2 else -1)
        return torch.empty(flat_shape(tuple(first.shape), start, end), dtype=first.dtype, device="meta")
    return None


def _attention(args: Sequence[object], kwargs: dict[str, object]) -> torch.Tensor:
    """``scaled_dot_product_attention(q, k, v)``: ``(*batch, L, Ev)``; a mask, GQA or scale go to torch."""
    if len(args) != 3 or set(kwargs) - {"is_causal", "dropout_p"} or not _floats(args):
        raise NoRule
    q, k, v = args  # type: ignore[misc]
    if min(q.dim(), k.dim(), v.dim()) < 2:  # type: ignore[attr-defined]
        raise NoRule
    if q.shape[-1] != k.shape[-1]:  # type: ignore[attr-defined]
        raise ShapeError(f"query and key need the same last dim, got {list(q.shape)} and {list(k.shape)}")  # type: ignore[attr-defined]
    if k.shape[-2] != v.shape[-2]:  # type: ignore[attr-defined]
        raise ShapeError(f"key and value need the same length (dim -2), got {list(k.shape)} and {list(v.shape)}")  # type: ignore[attr-defined]
    batch = _broadcast([tuple(t.shape[:-2]) for t in (q, k, v)])  # type: ignore[attr-defined]
    return torch.empty((*batch, q.shape[-2], v.shape[-1]), dtype=q.dtype, device="meta")  # type: ignore[attr-defined]


__all__ = ["function_output"]
