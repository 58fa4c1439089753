"""Hugging Face's attention masks traced by broadcasting instead of ``torch.vmap``.

In: a guarded trace of a forward that builds its mask with ``transformers.masking_utils`` (Llama,
Mistral, Qwen2, GPT-2, ...: ``create_causal_mask`` -> ``sdpa_mask`` / ``eager_mask``). Out: while the
trace runs (``broadcast_masks``), ``masking_utils._vmap_for_bhqkv(mask_function)`` called with traced
indices computes ``mask_function`` once on index tensors shaped to broadcast against each other
(``batch[:, None, None, None]``, ``head[None, :, None, None]``, ``q[None, None, :, None]``,
``kv[None, None, None, :]``) and expands the result to the full ``(batch, heads, q, kv)`` size, as
``transformers`` itself does in later releases (``_non_vmap_expansion_sdpa``) and optimum's ONNX export
does: fx cannot record ``torch.vmap``, and the broadcast steps are plain statements.

That is the same mask only for a function of the indices computed element by element (comparisons,
arithmetic, indexing a tensor by them). So it is done only when ``mask_function`` is built from
``masking_utils``' own index functions alone — the causal, sliding-window, chunked, padding and
packed-sequence masks and their ``and_masks``/``or_masks``/offset combinations, walked through their
closures — and only for traced arguments; any other function (a model's own mask function) keeps
``torch.vmap``, and the trace refuses it as before. ``transformers`` is never imported here: the patch
applies when the model's code has imported ``masking_utils``.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.fx as fx

_MODULE = "transformers.masking_utils"
# The index functions of masking_utils (by qualified name) whose values are computed element by element.
_INDEX_FUNCTIONS = frozenset(
    {
        "causal_mask_function",
        "and_masks.<locals>.and_mask",
        "or_masks.<locals>.or_mask",
        "sliding_window_overlay.<locals>.inner_mask",
        "chunked_overlay.<locals>.inner_mask",
        "_legacy_chunked_overlay.<locals>.inner_mask",
        "padding_mask_function.<locals>.inner_mask",
        "packed_sequence_mask_function.<locals>.inner_mask",
        "add_offsets_to_mask_function.<locals>.inner_mask",
    }
)
_LOCK = threading.Lock()


def index_only(fn: Any) -> bool:
    """Whether ``fn`` is one of masking_utils' index functions, every function it closes over one too, and
    every other value it closes over a tensor, a number, None or a tuple of such (its mask functions)."""
    if not isinstance(fn, types.FunctionType):
        return False
    if fn.__module__ != _MODULE or fn.__qualname__ not in _INDEX_FUNCTIONS:
        return False
    return all(_captured_ok(cell.cell_contents) for cell in fn.__closure__ or ())


def _captured_ok(value: Any) -> bool:
    if isinstance(value, types.FunctionType):
        return index_only(value)
    if isinstance(value, tuple):
        return all(_captured_ok(v) for v in value)
    return value is None or isinstance(value, (bool, int, float, torch.Tensor, fx.Proxy))


def _traced(*values: Any) -> bool:
    return any(isinstance(v, fx.Proxy) for v in values)


def _broadcasting(
    original: Callable[..., Callable[..., Any]],
) -> Callable[..., Callable[..., Any]]:
    """``_vmap_for_bhqkv`` computing an index-only mask function by broadcasting on traced indices."""

    def vmap_for_bhqkv(mask_function: Callable[..., Any], bh_indices: bool = True) -> Callable[..., Any]:
        vmapped = original(mask_function, bh_indices)
        if not index_only(mask_function):
            return vmapped

        def mask(batch: Any, head: Any, q: Any, kv: Any) -> Any:
            if not _traced(batch, head, q, kv):
                return vmapped(batch, head, q, kv)
            if bh_indices:
                b, h = batch[:, None, None, None], head[None, :, None, None]
                out = mask_function(b, h, q[None, None, :, None], kv[None, None, None, :])
                # vmap's result is a new tensor of the full size: so is this one
                return out.expand(batch.shape[0], head.shape[0], q.shape[0], kv.shape[0]).contiguous()
            out = mask_function(None, None, q[:, None], kv[None, :])
            return out.expand(q.shape[0], kv.shape[0]).contiguous()

        return mask

    return vmap_for_bhqkv


@contextlib.contextmanager
def broadcast_masks() -> Iterator[None]:
    """While a trace runs: masking_utils' ``_vmap_for_bhqkv`` broadcasts index-only mask functions on traced
    indices (above); nothing is patched when ``transformers.masking_utils`` is not imported."""
    module = sys.modules.get(_MODULE)
    original = getattr(module, "_vmap_for_bhqkv", None)
    if module is None or not callable(original):
        yield
        return
    with _LOCK:
        module._vmap_for_bhqkv = _broadcasting(original)  # type: ignore[attr-defined]
        try:
            yield
        finally:
            module._vmap_for_bhqkv = original  # type: ignore[attr-defined]


__all__ = ["broadcast_masks", "index_only"]
