"""Unquoted ``${...}`` in YAML text: hidden from the YAML parser, put back in the values, positions kept.

In: YAML text. Out: a ``Masked`` text of exactly the same length and line breaks, in which every
``${...}`` (and ``$${...}``) written outside quotes, comments and block scalars is replaced by a run
of one private-use character, which PyYAML reads as part of a plain scalar. ``restore`` puts the
original characters back into a scalar's value, found by the scalar's character offsets.

Plain YAML refuses ``{type: Conv2d, out_channels: ${c * 2}}`` (``{``, ``}`` and ``,`` end a plain
scalar in a flow collection); masked, it reads as the string ``${c * 2}``. Since no character moves,
every line and column the parser reports is that of the original text. The scan is a best effort
that never raises: a ``${`` it misses is left to the parser as before, and a span it masks inside a
quoted or block scalar by mistake is restored all the same.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from .exprs import closing_brace

# The characters the scan acts on; everything else is skipped in one regex step.
_SPECIAL = re.compile("['\"#\\[\\]{}$|>\r\n\x85\u2028\u2029]")
_BREAKS = "\r\n\x85\u2028\u2029"
_BREAK = re.compile("[\r\n\x85\u2028\u2029]")
_PRIVATE_USE = range(0xE000, 0xF900)


@dataclass(frozen=True)
class Masked:
    """``text`` for the parser; ``spans`` are the ``[start, end)`` offsets of the masked ``${...}``."""

    original: str
    text: str
    spans: tuple[tuple[int, int], ...] = ()
    mark: str = ""

    def restore(self, value: str, start: int, end: int) -> str:
        """``value`` (a scalar read from ``text[start:end]``) with the masked characters put back."""
        if not self.mark or self.mark not in value:
            return value
        starts = [s for s, _ in self.spans]
        first = max(bisect.bisect_right(starts, start) - 1, 0)
        last = bisect.bisect_left(starts, end)
        chars = iter("".join(self.original[s:e] for s, e in self.spans[first:last] if e > start))
        return "".join(next(chars, c) if c == self.mark else c for c in value)


def _line_end(text: str, i: int) -> int:
    found = _BREAK.search(text, i)
    return found.start() if found is not None else len(text)


def _token_start(text: str, i: int, line_start: int, depth: int) -> bool:
    """Whether a node may begin at ``i``: a quote there opens a quoted scalar, ``|``/``>`` a block scalar."""
    j = i - 1
    while j >= line_start and text[j] in " \t":
        j -= 1
    if j < line_start:
        return True
    spaced, prev = j < i - 1, text[j]
    if prev in "[{,":
        return True
    if prev == ":":
        return spaced or depth > 0
    if prev in "-?":
        return spaced and (j == line_start or text[j - 1] in " \t")
    if spaced:  # after a tag or an anchor: `!!str 'x'`, `&a [1]`
        k = j
        while k > line_start and text[k - 1] not in " \t":
            k -= 1
        return text[k] in "!&"
    return False


def _quoted_end(text: str, i: int, quote: str) -> int:
    """Offset just after the quoted scalar opening at ``i`` (the end of the text when unterminated)."""
    j, n = i + 1, len(text)
    while j < n:
        char = text[j]
        if quote == '"' and char == "\\":
            j += 2
            continue
        if char == quote:
            if quote == "'" and text.startswith("''", j):
                j += 2
                continue
            return j + 1
        j += 1
    return n


def _block_parent_indent(text: str, i: int, line_start: int) -> int:
    """Indentation a block scalar's lines must exceed: its key's column, or its ``-``'s column."""
    k, dash = line_start, -1
    while k < i and text[k] in " \t":
        k += 1
    while k < i and text[k] == "-" and text[k + 1 : k + 2] in (" ", "\t"):
        dash, k = k - line_start, k + 1
        while k < i and text[k] in " \t":
            k += 1
    if k == i:  # `- |` or a bare `|`: the content belongs to the sequence entry / document
        return dash if dash >= 0 else k - line_start - 1
    return k - line_start


def _skip_block(text: str, i: int, parent: int) -> int:
    """From the start of a line after a block scalar header, skip its content lines; returns the next line."""
    n = len(text)
    while i < n:
        k = i
        while k < n and text[k] == " ":
            k += 1
        end = _line_end(text, k)
        blank = text[k:end].strip(" \t") == ""
        if not blank and k - i <= parent:
            return i
        i = end + (2 if text.startswith("\r\n", end) else 1)
    return n


def mask(text: str) -> Masked:
    """Mask the unquoted ``${...}`` spans of ``text``; the identity when it holds none."""
    if "${" not in text:
        return Masked(text, text)
    mark = next((chr(c) for c in _PRIVATE_USE if chr(c) not in text), "")
    if not mark:
        return Masked(text, text)
    spans: list[tuple[int, int]] = []
    n, i, line_start, depth = len(text), 0, 0, 0
    while i < n:
        found = _SPECIAL.search(text, i)
        if found is None:
            break
        i = found.start()
        char = text[i]
        if char in _BREAKS:
            i += 2 if text.startswith("\r\n", i) else 1
            line_start = i
        elif char == "#":
            i = _line_end(text, i) if i == line_start or text[i - 1] in " \t" else i + 1
        elif char in "'\"":
            i = _quoted_end(text, i, char) if _token_start(text, i, line_start, depth) else i + 1
        elif char in "[{":
            depth += depth > 0 or _token_start(text, i, line_start, depth)
            i += 1
        elif char in "]}":
            depth -= depth > 0
            i += 1
        elif char in "|>":
            if depth == 0 and _token_start(text, i, line_start, depth):
                parent = _block_parent_indent(text, i, line_start)
                end = _line_end(text, i)
                i = _skip_block(text, end + (2 if text.startswith("\r\n", end) else 1), parent)
                line_start = i
            else:
                i += 1
        elif text.startswith("${", i):
            end = closing_brace(text, i + 2, _line_end(text, i))
            if end < 0:
                i += 2
                continue
            start = i - 1 if i > line_start and text[i - 1] == "$" else i  # `$${...}`: the escape goes too
            spans.append((start, end + 1))
            i = end + 1
        else:
            i += 1
    if not spans:
        return Masked(text, text)
    pieces, at = [], 0
    for start, end in spans:
        pieces += [text[at:start], mark * (end - start)]
        at = end
    pieces.append(text[at:])
    return Masked(text, "".join(pieces), tuple(spans), mark)
