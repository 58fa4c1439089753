"""Which dimensions are the batch: the same shapes (or messages) at two probe batch sizes, told apart.

In: a shape (nested like a module's output) recorded at batch ``a`` and the same at batch ``b``; or
the problems inference reported at each. Out: the shape with every dim a string: a size that does
not change is its number (``"2"``, an LSTM's ``num_layers * directions``), one that changes is the
batch as an expression of ``B`` (``"B"``, ``"32B"`` where batch and heads were merged, ``"B+1"``);
shapes whose structure differs between the probes are returned as recorded at ``a``. Messages get
the same treatment number by number (``[7, B, 32]``, torch's ``(7Bx8 and 4x16)``); one that does
not line up with its twin keeps its numbers, with a leading ``[2,`` of a shape read as the batch.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

from ..errors import Problem, ProblemList, SpecError


def batch_dim(size_a: int, size_b: int, a: int, b: int) -> str:
    """One dim as text: its size, or ``kB+c`` when it follows the batch (exact for affine sizes)."""
    if size_a == size_b:
        return str(size_a)
    k, rest = divmod(size_b - size_a, b - a)
    if rest:
        return "?"  # not affine in the batch: no expression of B fits
    c = size_a - k * a
    term = "B" if k == 1 else f"{k}B"
    return term if c == 0 else f"{term}{c:+d}"


def label_batch(shape_a: Any, shape_b: Any, a: int, b: int) -> Any:
    """``shape_a`` with its dims labelled against ``shape_b`` (see the module docstring)."""
    if isinstance(shape_a, tuple) and isinstance(shape_b, tuple) and len(shape_a) == len(shape_b):
        if all(isinstance(d, int) for d in (*shape_a, *shape_b)):
            if not shape_a:
                return shape_a
            return tuple(batch_dim(x, y, a, b) for x, y in zip(shape_a, shape_b, strict=True))
        return tuple(label_batch(x, y, a, b) for x, y in zip(shape_a, shape_b, strict=True))
    if isinstance(shape_a, dict) and isinstance(shape_b, dict) and shape_a.keys() == shape_b.keys():
        return {k: label_batch(v, shape_b[k], a, b) for k, v in shape_a.items()}
    return shape_a


_NUMBER = re.compile(r"\d+")
_LEADING = re.compile(r"\[(\d+)(?=[,\]])")


def label_text(text_a: str, text_b: str, a: int, b: int) -> str | None:
    """``text_a`` with every number that differs in ``text_b`` written in terms of B; None when the two
    texts differ other than in numbers."""
    if _NUMBER.split(text_a) != _NUMBER.split(text_b):
        return None
    parts = _NUMBER.split(text_a)
    out = [parts[0]]
    for x, y, tail in zip(_NUMBER.findall(text_a), _NUMBER.findall(text_b), parts[1:], strict=True):
        out.append((x if x == y else batch_dim(int(x), int(y), a, b)) + tail)
    return "".join(out)


def _guess(text: str, a: int) -> str:
    return _LEADING.sub(lambda m: "[B" if int(m.group(1)) == a else m.group(0), text)


def label_problems(problems: ProblemList, rerun: Callable[[int], object], a: int, b: int) -> None:
    """Write the batch-dependent numbers of the errors found at batch ``a`` as B, from the errors ``rerun``
    (the same inference at batch ``b``) raises; an error without a twin at the same spec path keeps its
    numbers, a leading ``a`` in a shape taken for B."""
    twin: list[Problem] | None = None
    try:
        rerun(b)
    except SpecError as err:
        twin = [p for p in err.problems if p.severity == "error"]
    found = problems.errors
    paired = twin is not None and len(twin) == len(found)
    paired = paired and all(p.path == q.path for p, q in zip(found, twin or [], strict=True))
    labelled = []
    for k, p in enumerate(found):
        q = twin[k] if paired and twin is not None else None
        message = label_text(p.message, q.message, a, b) if q is not None else None
        hint = label_text(p.hint, q.hint, a, b) if q is not None and p.hint and q.hint else None
        labelled.append(
            dataclasses.replace(
                p,
                message=message if message is not None else _guess(p.message, a),
                hint=hint if hint is not None else (_guess(p.hint, a) if p.hint else p.hint),
            )
        )
    done = iter(labelled)
    problems.problems = [next(done) if p.severity == "error" else p for p in problems.problems]
