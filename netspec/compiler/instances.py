"""Problems found in a shared place of the document — a block body, a repeated layer — said once.

In: problems added while ``resolve`` walks a block instance or a repeat copy (``InContext.inside``
names the place: ``Where.block``, ``Where.copy``, ``Where.note``). Out: a ``ProblemList`` in which a
problem met in every instance of a block (the same path, message and hint) is one problem that
names the instances: ``(in block Unit, used by layer1.0, layer1.1, layer2.0, layer2.1, … (33
instances))``; one met in a single instance says which one and where it is used. ``describe``
gives the chain of places a node is in, for the messages of later stages (``RNode.context``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

from ..errors import Problem, ProblemList, SpecPath, format_path

SHOWN = 4  # instances named in a message before "…"


def module_label(name: str) -> str:
    """A module path as messages say it: ``features.0``, ``layer 2``, ``the model``."""
    if not name:
        return "the model"
    return f"layer {name}" if name.isdigit() else name


@dataclass(frozen=True)
class Where:
    """One place problems are found in: ``group`` is what its instances share, ``member`` this one."""

    kind: str  # "block", "copy" or "note"
    group: str  # the block's name; the repeated node's module label; a note's text
    member: str = ""  # the instance's module label; the copy's index
    at: str = ""  # where a block instance is used (its document path)

    @classmethod
    def block(cls, block: str, name: str, use_path: SpecPath) -> Where:
        return cls("block", block, module_label(name), format_path(use_path))

    @classmethod
    def copy(cls, index: int, of: str) -> Where:
        return cls("copy", module_label(of), str(index))

    @classmethod
    def note(cls, text: str) -> Where:
        return cls("note", text)

    def one(self) -> str:
        """This place alone: ``block Unit, used by layer1.0 at model.layer1.layers.0``."""
        if self.kind == "block":
            return f"block {self.group}, used by {self.member} at {self.at}"
        if self.kind == "copy":
            return f"copy i={self.member} of {self.group}"
        return self.group

    def many(self, members: list[str], count: int) -> str:
        """Several instances of this place: ``block Unit, used by a, b, c, d, … (33 instances)``."""
        if count == 1:
            return self.one()
        shown = ", ".join(members[:SHOWN]) + (", …" if count > SHOWN else "")
        if self.kind == "block":
            return f"block {self.group}, used by {shown} ({count} instances)"
        if self.kind == "copy":
            return f"copies i={shown} of {self.group} ({count} copies)"
        return self.group


@dataclass
class _Group:
    index: int  # where the problem stands in the list
    first: Problem
    where: Where
    members: list[str] = field(default_factory=list)  # the first few, in order
    seen: set[str] = field(default_factory=set)


class InContext(ProblemList):
    """A ``ProblemList`` that says where in the instances of a shared place each problem was met,
    and reports a problem met in many instances once."""

    def __init__(self) -> None:
        super().__init__()
        self.context: list[Where] = []
        self._groups: dict[tuple[object, ...], _Group] = {}

    def add(self, problem: Problem) -> None:
        if not self.context or problem.severity != "error":
            super().add(problem)
            return
        where = self.context[-1]
        key = (where.kind, where.group, problem.path, problem.message, problem.hint)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(len(self.problems), problem, where)
            self.problems.append(problem)
        if where.member in group.seen:
            return
        group.seen.add(where.member)
        if len(group.members) < SHOWN + 1:
            group.members.append(where.member)
        text = group.where.many(group.members, len(group.seen))
        self.problems[group.index] = dataclasses.replace(group.first, message=f"{group.first.message} (in {text})")

    @contextlib.contextmanager
    def inside(self, where: Where) -> Iterator[None]:
        self.context.append(where)
        try:
            yield
        finally:
            self.context.pop()

    def describe(self) -> str:
        """The places the walk is in now, outermost first, for a node's own messages."""
        return "; ".join(where.one() for where in self.context)


__all__ = ["SHOWN", "InContext", "Where", "module_label"]
