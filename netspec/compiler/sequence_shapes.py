"""Outputs of the recurrent layers (RNN/LSTM/GRU) and MultiheadAttention computed from their arguments.

In: a constructed (meta) layer and the (meta) tensors it is called with. Out: meta tensors shaped
like the layer's real output (a tuple for the recurrent layers and attention), or None when no
rule applies (a mask, an initial state, a subclass with its own forward) and the caller runs the
layer on meta. Running these on meta goes through torch's Python decompositions, about a
millisecond per call; the formulas are the ones torch's docs give. An input the layer rejects
raises ``ShapeError``; any other failure is ``ShapeRuleBug``, netspec's own bug.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn as nn

from .shapes import NoRule, ShapeError, ShapeRuleBug

Rule = Callable[[nn.Module, Sequence[torch.Tensor], Mapping[str, object]], object]
_META = torch.device("meta")


def _meta(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    return torch.empty(tuple(shape), dtype=dtype, device=_META)


def _recurrent(m: nn.Module, args: Sequence[torch.Tensor], kwargs: Mapping[str, object]) -> object:
    """``out, h_n`` (RNN, GRU) or ``out, (h_n, c_n)`` (LSTM), batched or not, with no initial state."""
    if len(args) != 1 or kwargs:
        raise NoRule
    (x,) = args
    if not x.is_floating_point():
        raise NoRule
    name = type(m).__name__
    if x.dim() not in (2, 3):
        raise ShapeError(f"{name}: Expected input to be 2D or 3D, got {x.dim()}D instead")
    if x.shape[-1] != m.input_size:
        raise ShapeError(f"input.size(-1) must be equal to input_size. Expected {m.input_size}, got {x.shape[-1]}")
    directions = 2 if m.bidirectional else 1
    proj = getattr(m, "proj_size", 0)
    hidden_out = proj if proj > 0 else m.hidden_size
    layers = directions * m.num_layers  # type: ignore[operator]
    if x.dim() == 3:
        batch, length = (x.shape[0], x.shape[1]) if m.batch_first else (x.shape[1], x.shape[0])
        out_shape = (
            (batch, length, directions * hidden_out) if m.batch_first else (length, batch, directions * hidden_out)
        )
        h_shape: tuple[int, ...] = (layers, batch, hidden_out)  # type: ignore[assignment]
        c_shape: tuple[int, ...] = (layers, batch, m.hidden_size)  # type: ignore[assignment]
    else:
        out_shape = (x.shape[0], directions * hidden_out)
        h_shape, c_shape = (layers, hidden_out), (layers, m.hidden_size)  # type: ignore[assignment]
    if 0 in out_shape:
        raise NoRule  # empty sequences and batches: torch's own checks decide
    out, h = _meta(out_shape, x.dtype), _meta(h_shape, x.dtype)
    if isinstance(m, nn.LSTM):
        return out, (h, _meta(c_shape, x.dtype))
    return out, h


_ATTENTION_KWARGS = frozenset({"need_weights", "average_attn_weights"})


def _attention(m: nn.Module, args: Sequence[torch.Tensor], kwargs: Mapping[str, object]) -> object:
    """``attn(query, key, value)``: the output and the (head-averaged) weights, batched or not."""
    if len(args) != 3 or set(kwargs) - _ATTENTION_KWARGS or not all(isinstance(a, torch.Tensor) for a in args):
        raise NoRule
    q, k, v = args
    if not all(t.is_floating_point() for t in (q, k, v)):
        raise NoRule
    if q.dim() not in (2, 3) or k.dim() != q.dim() or v.dim() != q.dim():
        raise ShapeError(
            f"query, key and value must all be 2-D (unbatched) or 3-D (batched), got {q.dim()}-D, {k.dim()}-D "
            f"and {v.dim()}-D"
        )
    embed = m.embed_dim
    if q.shape[-1] != embed:
        raise ShapeError(f"was expecting embedding dimension of {embed}, but got {q.shape[-1]}")
    if m._qkv_same_embed_dim:
        if k.shape != v.shape:
            raise ShapeError(f"key shape {list(k.shape)} does not match value shape {list(v.shape)}")
    elif k.shape[:-1] != v.shape[:-1]:
        raise ShapeError(
            f"key's sequence and batch dims {list(k.shape[:-1])} do not match value's {list(v.shape[:-1])}"
        )
    if k.shape[-1] != m.kdim or v.shape[-1] != m.vdim:
        raise ShapeError(f"key and value need {m.kdim} and {m.vdim} features, got {k.shape[-1]} and {v.shape[-1]}")
    heads = m.num_heads
    if q.dim() == 3:
        if m.batch_first:
            batch, target, source = q.shape[0], q.shape[1], k.shape[1]
            key_batch = k.shape[0]
        else:
            batch, target, source = q.shape[1], q.shape[0], k.shape[0]
            key_batch = k.shape[1]
        if key_batch != batch:
            raise ShapeError(f"query and key need the same batch size, got {list(q.shape)} and {list(k.shape)}")
        out = _meta(q.shape, q.dtype)
        weights_shape: tuple[int, ...] = (batch, target, source)
        per_head: tuple[int, ...] = (batch, heads, target, source)
    else:
        target, source = q.shape[0], k.shape[0]
        out = _meta(q.shape, q.dtype)
        weights_shape, per_head = (target, source), (heads, target, source)
    if 0 in out.shape or source == 0:
        raise NoRule  # empty sequences and batches: torch's own checks decide
    source += (m.bias_k is not None) + bool(m.add_zero_attn)  # each appends one key (and value) position
    weights_shape, per_head = (*weights_shape[:-1], source), (*per_head[:-1], source)
    if not kwargs.get("need_weights", True):
        return out, None
    average = kwargs.get("average_attn_weights", True)
    return out, _meta(weights_shape if average else per_head, q.dtype)


_RULES: dict[type[nn.Module], Rule] = {
    nn.LSTM: _recurrent,
    nn.GRU: _recurrent,
    nn.RNN: _recurrent,
    nn.MultiheadAttention: _attention,
}


@functools.lru_cache(maxsize=1024)  # one answer per class, not per layer
def _forward_owner(kind: type[nn.Module]) -> type[nn.Module] | None:
    """The first class in ``kind``'s MRO that has a rule, if ``kind`` runs that class's forward."""
    klass = next((c for c in kind.__mro__ if c in _RULES), None)
    return klass if klass is not None and kind.forward is klass.forward else None


def sequence_output(module: nn.Module, args: Sequence[object], kwargs: Mapping[str, object]) -> object | None:
    """The meta output of a recurrent or attention layer's call, or None to run it on meta."""
    kind = type(module)
    klass = _forward_owner(kind)
    rule = _RULES.get(klass) if klass is not None else None
    if rule is None or not all(isinstance(a, torch.Tensor) for a in args):
        return None
    try:
        return rule(module, args, kwargs)  # type: ignore[arg-type]
    except NoRule:
        return None
    except ShapeError:
        raise
    except Exception as err:
        raise ShapeRuleBug(f"netspec's shape rule for {kind.__name__} failed: {type(err).__name__}: {err}") from err


__all__ = ["sequence_output"]
