"""One whole-spec budget: what a spec may make netspec build, counted before the work is done.

In: charges from the stages that expand a spec — modules after expansion (repeats, block instances,
torch count arguments such as ``num_layers``), and the values ``vars`` and ``${...}`` produce (their
elements summed over the whole spec, and their nesting depth). Out: ``BudgetExceeded`` with a message
that names what exceeded the limit, raised before the expensive step, never after it.

The limits are far above real models (a 10,000-layer spec uses 5% of the module budget) and far
below what would take minutes or gigabytes. ``Budget`` is created once per ``netspec.read``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import SpecPath

MAX_MODULES = 200_000  # modules after every repeat, block instance and num_layers is expanded
MAX_VALUE_ELEMENTS = 10_000_000  # list items, mapping entries and characters of ${} results, summed
MAX_VALUE_DEPTH = 64  # nesting of a value built through vars (deeper lists break pydantic, repr, json)


class BudgetExceeded(Exception):
    """The spec would cost more than its budget; ``path`` is where the charge was made."""

    def __init__(self, message: str, path: SpecPath = (), hint: str | None = None) -> None:
        super().__init__(message)
        self.message, self.path, self.hint = message, path, hint


def measure(value: object, limit: int) -> tuple[int, int]:
    """(elements, depth) of a JSON-like value, counted as a tree (shared sub-lists count every time),
    without recursion and stopping once ``limit`` elements are passed. A string counts its length."""
    sizes: dict[int, tuple[int, int]] = {}  # id -> (elements, depth) of containers already measured
    opened: set[int] = set()  # containers whose children are being measured (a cycle is not followed)
    todo: list[tuple[object, bool]] = [(value, False)]
    keep: list[object] = []  # measured containers stay alive, so their ids are not reused
    while todo:
        item, done = todo.pop()
        if isinstance(item, str):
            continue
        if not isinstance(item, (list, tuple, Mapping)) or id(item) in sizes:
            continue
        children = list(item.values()) if isinstance(item, Mapping) else list(item)
        if not done:
            if id(item) in opened:
                continue
            opened.add(id(item))
            todo.append((item, True))
            todo.extend((c, False) for c in children if isinstance(c, (list, tuple, Mapping)))
            continue
        count, depth = len(children), 0
        for child in children:
            if isinstance(child, str):
                count += len(child)
            elif id(child) in sizes:
                c_count, c_depth = sizes[id(child)]
                count, depth = count + c_count, max(depth, c_depth)
        sizes[id(item)] = (min(count, limit + 1), depth + 1)
        keep.append(item)
    if isinstance(value, str):
        return len(value), 0
    return sizes.get(id(value), (1, 0))


@dataclass
class Budget:
    """Counters for one spec; ``charge_*`` raise ``BudgetExceeded`` before the limit is passed."""

    max_modules: int = MAX_MODULES
    max_value_elements: int = MAX_VALUE_ELEMENTS
    max_value_depth: int = MAX_VALUE_DEPTH
    modules: int = 0
    value_elements: int = 0

    def check_modules(self, more: int, path: SpecPath, what: str) -> None:
        """Refuse ``more`` modules (not yet made) when they would pass the limit; ``what`` names the chain."""
        if self.modules + more > self.max_modules:
            raise BudgetExceeded(
                f"{what} expands to {more:,} modules; a spec may expand to at most {self.max_modules:,}",
                path,
                "lower the repeat counts or num_layers, or use a block fewer times",
            )

    def charge_modules(self, count: int, path: SpecPath) -> None:
        """Count ``count`` modules being made now."""
        self.modules += count
        if self.modules > self.max_modules:
            raise BudgetExceeded(
                f"the spec expands to more than {self.max_modules:,} modules (the limit was reached here)",
                path,
                "lower the repeat counts or num_layers, or use a block fewer times",
            )

    def charge_value(self, value: object, path: SpecPath) -> None:
        """Count a ``${}`` or var result: its elements add up over the spec; its depth is bounded."""
        if isinstance(value, (bool, int, float)) or value is None:
            return
        left = self.max_value_elements - self.value_elements
        elements, depth = measure(value, left)
        if depth > self.max_value_depth:
            raise BudgetExceeded(
                f"this value is nested {depth} levels deep; values built through vars may nest "
                f"at most {self.max_value_depth} levels",
                path,
            )
        if elements > left:
            raise BudgetExceeded(
                f"the values of vars and ${{...}} add up to more than {self.max_value_elements:,} elements "
                f"(list items, mapping entries and characters) by this one",
                path,
                "a value used many times counts every time it is used",
            )
        self.value_elements += elements


__all__ = ["MAX_MODULES", "MAX_VALUE_DEPTH", "MAX_VALUE_ELEMENTS", "Budget", "BudgetExceeded", "measure"]
