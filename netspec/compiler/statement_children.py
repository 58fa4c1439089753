"""How a Graph statement names children and their tensors: ``blocks[2]``, ``heads['16']``, ``heads.cls``,
``self[0]``, ``qkv.weight``, ``scales[0]``.

In: the ``ast`` of a name, attribute or subscript, and the Graph's children (``callees.Child``). Out: the
child's dotted path and ``Child`` (or None when the expression names no child), an fx ``get_attr`` node
for a child's tensor, or a ``StatementError`` with the column and a "did you mean". ``ChildReferences``
is the part of ``statements.StatementBuilder`` that does this.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from typing import Any

import torch.fx as fx

from ..errors import did_you_mean
from .callees import Child, StatementError

SELF = "self"  # ``self[0](x)``: a Graph's own child by position or name (reserved as a variable name)


class ChildReferences:
    """Resolves references to children for ``StatementBuilder``, which provides the attributes below."""

    children: Mapping[str, Child]
    omitted: Mapping[str, str]  # children left out by a false ``if:`` -> where that ``if:`` is
    env: dict[str, Any]
    used: set[str]
    ident: Callable[[ast.Name], str]
    index: Callable[[ast.expr], Any]
    attr: Callable[[str], fx.Node]

    def child_tensor(self, owner: tuple[str, Child], attr: str, col: int) -> fx.Node:
        """``qkv.weight``, ``blocks[0].rel_pos.table``: a child's own parameter or buffer, read in place.

        A Graph's or container's tensors are checked here; a layer's are known once it is built (``infer``)."""
        path, child = owner
        if attr in child.children:
            raise StatementError(f"layer {path}.{attr} must be called, e.g. {path}.{attr}(h)", col)
        if child.tensors is not None and attr not in child.tensors:
            raise StatementError(
                f"{path} ({child.kind}) has no parameter or buffer {attr!r}"
                + (f"; it has {', '.join(sorted(child.tensors))}" if child.tensors else ""),
                col,
                did_you_mean(attr, child.tensors) or None,
            )
        self.used.add(path.split(".")[0])
        return self.attr(f"{path}.{attr}")

    def parameter_entry(self, e: ast.Subscript) -> fx.Node | None:
        """``scales[0]``, ``tables['a']``: an entry of a ParameterList (by position) or ParameterDict (by name)."""
        if isinstance(e.value, ast.Name) and self.ident(e.value) in self.env:
            return None
        try:  # a path that names no child is left to expr, which reports it (or reads a child's tensor)
            owner = self.child_path(e.value) if isinstance(e.value, (ast.Name, ast.Attribute)) else None
        except StatementError:
            return None
        if owner is None or owner[1].kind not in ("ParameterList", "ParameterDict"):
            return None
        key = self.index(e.slice)
        if owner[1].kind == "ParameterList" and isinstance(key, int) and not isinstance(key, bool):
            size = len(owner[1].tensors or ())
            if not -size <= key < size:
                raise StatementError(f"index {key} is out of range for {owner[0]} ({size} entries)", e.slice.col_offset)
            key = str(key % size)
        if not isinstance(key, str):
            raise StatementError(f"{owner[0]} is indexed by a constant position or name", e.slice.col_offset)
        return self.child_tensor(owner, key, e.slice.col_offset)

    def own(self, e: ast.expr) -> tuple[str, Child] | None:
        """``self`` as the base of a subscript: the Graph's own children, so ``self[0](x)`` and ``self['0'](x)``
        call a child whose name is not an identifier (a Sequential subclass's ``0, 1, ...``)."""
        if isinstance(e, ast.Name) and self.ident(e) == SELF:
            return "", Child("Graph", self.children)
        return None

    def child_path(self, e: ast.expr) -> tuple[str, Child] | None:
        """``blocks``, ``heads.cls``, ``blocks[2]``, ``blocks[-1]``, ``self[0]`` -> ("blocks.2", child) when it
        names a child."""
        if isinstance(e, ast.Name):
            n = self.ident(e)
            if n in self.omitted and n not in self.env:
                raise StatementError(f"layer {n!r} is left out: {self.omitted[n]}", e.col_offset)
            if n in self.children and n not in self.env:
                return n, self.children[n]
        if isinstance(e, ast.Attribute):
            parent = self.child_path(e.value)
            if parent and e.attr in parent[1].children:
                return f"{parent[0]}.{e.attr}", parent[1].children[e.attr]
            if parent and (parent[1].tensors is None or e.attr in parent[1].tensors):
                return None  # embeddings.token_type_ids[:, :n]: a child's tensor, indexed (see child_tensor)
            if parent:
                raise StatementError(
                    f"{parent[0]} has no child {e.attr!r}",
                    e.col_offset,
                    did_you_mean(e.attr, parent[1].children) or None,
                )
        if isinstance(e, ast.Subscript):
            parent = self.own(e.value) or self.child_path(e.value)
            if parent is None:
                return None
            key = self.index(e.slice)
            if isinstance(key, fx.Node):
                raise StatementError(
                    f"{parent[0]}[...] is indexed by a tensor computed in forward; index a child by a constant "
                    "position or name, or route by a forward input: heads[key](h)",
                    e.slice.col_offset,
                )
            return self.child_key(parent, key, e.slice.col_offset)
        return None

    def child_key(self, parent: tuple[str, Child], key: Any, col: int) -> tuple[str, Child]:
        """``blocks[2]``, ``blocks[-1]``, ``seq['conv']``, ``heads['16']`` with a constant (folded) key."""
        path, child = parent
        shown_path = path or SELF
        keys = list(child.children)
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(keys) <= key < len(keys):
                shown = str(key) if len(str(key)) <= 20 else str(key)[:8] + "…"
                raise StatementError(
                    f"index {shown} is out of range for {shown_path} ({len(keys)} children: positions "
                    f"{-len(keys)}..{len(keys) - 1})",
                    col,
                )
            key = keys[key]
        elif not isinstance(key, str):
            raise StatementError(
                f"{shown_path} is indexed by {type(key).__name__} {key!r}; a child is indexed by its position "
                "(int) or its name (str)",
                col,
            )
        if key in self.omitted and not path:
            raise StatementError(f"layer {key!r} is left out: {self.omitted[key]}", col)
        if key not in child.children:
            raise StatementError(f"{shown_path} has no child {key!r}", col, did_you_mean(key, keys) or None)
        return (f"{path}.{key}" if path else key), child.children[key]


__all__ = ["SELF", "ChildReferences"]
