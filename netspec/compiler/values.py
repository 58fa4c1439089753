"""``init: {fn: values, ...}``: a tensor whose every element the spec writes out.

In: the ``init`` mapping of a Graph-owned tensor, its shape and buffer dtype. Out: problems
(``check``, at validation), the tensor itself (``make``, at build), or the ``init`` that holds a
given tensor (``written``, for emit). Two forms: ``data: [0.5, -1.0, ...]``, a flat row-major list
of one number per element (ints for an integer buffer, bools for a bool one); and, for large
tables, ``packed: <base64>`` with ``dtype:``, the base64 of the zlib-compressed little-endian bytes
of the row-major elements of that dtype (exact for any value, nan and inf included). Decompression
stops at the size the shape asks for, so a small spec cannot expand into a huge allocation.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import math
import sys
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from .tree import VALUES_INIT

# The element dtypes ``packed`` may hold (a spec's buffer dtype names).
PACKED_DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "bool")
# Elements emit writes as a list of numbers; larger tables are packed.
MAX_LISTED = 16_384


def _fits(value: object, dtype: str | None) -> bool:
    """Whether ``value`` is an element a tensor of ``dtype`` takes exactly: a bool for bool, an int for an
    integer dtype, an int or float for a floating one."""
    if dtype == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if dtype is not None and not dtype.startswith(("float", "bfloat")):
        return isinstance(value, int)
    return isinstance(value, (int, float))


def _unpack(init: Mapping[str, Any], count: int) -> tuple[bytes | None, str]:
    """The raw bytes of ``packed`` (exactly ``count`` elements of its dtype), or None and the reason."""
    dtype = init.get("dtype")
    if dtype not in PACKED_DTYPES:
        return None, f"init values with packed needs dtype: one of {', '.join(PACKED_DTYPES)}, got {dtype!r}"
    size = count * getattr(torch, dtype).itemsize
    text = init.get("packed")
    if not isinstance(text, str):
        return None, "init values packed is the base64 text of zlib-compressed little-endian bytes"
    try:
        compressed = base64.b64decode(text.encode("ascii"), validate=True)
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, size + 1)  # at most one byte past what the shape needs
    except (binascii.Error, UnicodeEncodeError, ValueError, zlib.error) as err:
        return None, f"init values packed does not decode (base64 of zlib-compressed bytes): {err}"
    if len(raw) != size or not inflater.eof:
        held = f"more than {size:,}" if len(raw) > size or not inflater.eof else f"{len(raw):,}"
        return None, f"init values packed holds {held} bytes; {count:,} {dtype} elements are {size:,}"
    return raw, ""


def check(init: Mapping[str, Any], shape: Sequence[int], dtype: str | None) -> tuple[str, tuple[Any, ...]] | None:
    """The problem with a ``values`` init (its message, and the keys below ``init`` it is at), or None."""
    count = math.prod(shape)
    keys = set(init) - {"fn"}
    if "packed" in keys:
        extra = sorted(keys - {"packed", "dtype"})
        if extra:
            return f"init values with packed takes only dtype besides, got {', '.join(extra)}", ()
        _, reason = _unpack(init, count)
        return (reason, ("packed",) if "dtype" not in reason else ()) if reason else None
    extra = sorted(keys - {"data"})
    if extra:
        return f"init values takes data (the numbers, row-major) or packed and dtype, got {', '.join(extra)}", ()
    data = init.get("data")
    if not isinstance(data, list) or any(isinstance(v, (list, dict)) for v in data):
        where = ("data",) if "data" in init else ()
        return f"init values needs data: a flat list of {count:,} numbers (row-major)", where
    if len(data) != count:
        return f"init values has {len(data):,} numbers for shape {list(shape)} ({count:,} elements)", ("data",)
    bad = next((k for k, v in enumerate(data) if not _fits(v, dtype)), None)
    if bad is not None:
        return f"init values of a {dtype or 'floating-point'} tensor: data[{bad}] is {data[bad]!r}", ("data", bad)
    return None


def make(init: Mapping[str, Any], shape: Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The tensor a checked ``values`` init holds, in ``dtype`` on ``device`` (empty on meta)."""
    if device.type == "meta":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    if "packed" not in init:
        return torch.tensor(init["data"], dtype=dtype, device=device).reshape(tuple(shape))
    raw, reason = _unpack(init, math.prod(shape))
    if raw is None:  # unreachable: resolve checked it
        raise ValueError(reason)
    if not raw:  # no elements
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    stored = torch.frombuffer(bytearray(raw), dtype=getattr(torch, init["dtype"]))
    if sys.byteorder == "big":  # the bytes are little-endian
        stored = _swapped(stored).view(stored.dtype)
    return stored.reshape(tuple(shape)).to(device=device, dtype=dtype)


def _swapped(flat: torch.Tensor) -> torch.Tensor:
    """The elements' bytes in the other byte order (as uint8s)."""
    return flat.view(torch.uint8).view(-1, flat.element_size()).flip(1).reshape(-1)


def _little_endian_bytes(flat: torch.Tensor) -> bytes:
    """The raw little-endian bytes of a contiguous CPU tensor (read through its pointer: no numpy)."""
    flat = flat.to(torch.uint8) if flat.dtype == torch.bool else flat
    raw = (_swapped(flat) if sys.byteorder == "big" else flat.view(torch.uint8)).contiguous()
    return ctypes.string_at(raw.data_ptr(), raw.numel()) if raw.numel() else b""


def written(tensor: torch.Tensor) -> dict[str, Any]:
    """The ``values`` init holding ``tensor`` exactly: a list of numbers up to ``MAX_LISTED`` finite elements
    (Python floats hold every float32, float16 and bfloat16 value, and float64's by ``repr``), else packed."""
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    finite = not flat.is_floating_point() or bool(torch.isfinite(flat).all())
    if flat.numel() <= MAX_LISTED and finite:
        return {"fn": VALUES_INIT, "data": flat.tolist()}
    data = _little_endian_bytes(flat)
    dtype = str(flat.dtype).removeprefix("torch.")
    return {"fn": VALUES_INIT, "packed": base64.b64encode(zlib.compress(data, 9)).decode("ascii"), "dtype": dtype}


__all__ = ["MAX_LISTED", "PACKED_DTYPES", "VALUES_INIT", "check", "make", "written"]
