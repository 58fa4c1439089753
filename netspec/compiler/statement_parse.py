"""Graph statement text -> its ``ast`` tree, parsed once per shape of statement.

In: a statement's text. Out: ``parse_shared(text)`` — the tree of the statement with its names
replaced by placeholders, shared by every statement of the same shape (``h = l0(h)`` and
``h = l7(h)`` are both ``h = ǂ0(ǂ1)``), and the map from each placeholder back to the name it
stands for; or None when the text is not one this handles (non-ASCII, quotes, comments,
line breaks, ``. name``), or its shape does not parse. Callers then parse the text itself.

Why: ``ast.parse`` costs 15-30 µs per statement, as much as the rest of compiling it to fx; a
10,000-layer Graph has a handful of shapes. The shared tree is never modified, so it can be
shared between reads and threads. Its column offsets are the shape's, not the statement's:
the statement compiler reports every problem from the statement's own tree (it compiles a
Graph again that way as soon as one statement fails).
"""

from __future__ import annotations

import ast
import keyword
import re
import threading

# A placeholder: a letter no ASCII text contains and that NFKC (which Python applies to identifiers)
# leaves as it is. The k-th name of a statement is ``ǂk`` in its shape's tree.
MARK = "ǂ"
_MAX_CHARS = 400
_MAX_SHAPES = 4096
_KEYWORDS = frozenset(keyword.kwlist)
# A name token: not part of a number (``1e5``, ``0x1f``) or an attribute (``h.view``), not followed by a
# single ``=`` (a keyword argument's or an assignment target's name stays as written).
_NAME = re.compile(r"(?<![\w.])[A-Za-z_]\w*(?!\w)(?!\s*=(?!=))")
# Text the token rule above does not read exactly: string literals, comments, continuation lines and
# ``h. view`` (an attribute after white space).
_UNSAFE = re.compile(r"['\"#\\\n\r]|\.\s")

_lock = threading.Lock()
_shapes: dict[str, ast.Module | None] = {}


def _keep_keywords(m: re.Match[str]) -> str:
    return m.group() if m.group() in _KEYWORDS else MARK


def shape_of(text: str) -> tuple[str, list[str]] | None:
    """``text`` with each name (not a keyword, not followed by ``=``) replaced by ``MARK``, and the names
    in order; None for text this does not read exactly."""
    if len(text) > _MAX_CHARS or not text.isascii() or _UNSAFE.search(text):
        return None
    names = _NAME.findall(text)
    if _KEYWORDS.isdisjoint(names):
        return _NAME.sub(MARK, text), names
    return _NAME.sub(_keep_keywords, text), [n for n in names if n not in _KEYWORDS]


def parse_shared(text: str) -> tuple[ast.Module, list[str]] | None:
    """The shared tree of ``text``'s shape (its k-th name written ``ǂk``) and the names, or None (parse
    ``text`` itself)."""
    found = shape_of(text)
    if found is None:
        return None
    shape, names = found
    with _lock:
        cached = _shapes.get(shape, _MISSING)
    if cached is _MISSING:
        count = iter(range(len(names)))
        numbered = re.sub(MARK, lambda _: f"{MARK}{next(count)}", shape)
        try:
            tree: ast.Module | None = ast.parse(numbered, mode="exec")
        except (SyntaxError, RecursionError, MemoryError, ValueError):
            tree = None  # the statement's own parse reports it, at its own column
        with _lock:
            if len(_shapes) >= _MAX_SHAPES:
                _shapes.clear()
            _shapes[shape] = tree
        cached = tree
    if cached is None:
        return None
    return cached, names


_MISSING: ast.Module = ast.Module(body=[], type_ignores=[])

__all__ = ["MARK", "parse_shared", "shape_of"]
