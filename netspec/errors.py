"""One error hierarchy for netspec.

In: a spec path (tuple of keys and indices), a message, and optionally the source
location it came from. Out: ``Problem`` records that format as
``file:line:col: spec.path: message`` followed by the offending source line and a caret,
and the exceptions that carry them (``SpecError`` for anything wrong with user input).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

SpecPath = tuple[str | int, ...]


# Terminal control characters (ESC starts colour and title sequences), DEL, C1 controls, line and
# paragraph separators and lone surrogates (which cannot even be encoded for printing) are shown escaped.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_UNPRINTABLE_OR_BREAK = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
MAX_SHOWN = 1000  # characters of one message or hint as printed; the rest is cut
MAX_PROBLEMS_SHOWN = 50  # problems listed by str(SpecError); err.problems keeps them all
_MAX_SUGGESTION_POOL = 2000  # did-you-mean compares against at most this many (length-filtered) names


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` safe to print on a terminal: control characters and lone surrogates escaped."""
    pattern = _UNPRINTABLE if keep_newlines else _UNPRINTABLE_OR_BREAK
    return pattern.sub(_escape, text) if pattern.search(text) else text


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to about ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit:,} more characters)"


def format_path(path: Sequence[str | int] | str) -> str:
    """``("model", "layers", 0, "kernel_size")`` -> ``model.layers.0.kernel_size``; a dotted string as it is."""
    if isinstance(path, str):
        return path
    return ".".join(str(part) for part in path)


def _suggestion_pool(name: str, pool: list[str]) -> list[str]:
    """At most ``_MAX_SUGGESTION_POOL`` candidates of about ``name``'s length: difflib costs per candidate,
    and a spec with tens of thousands of names must still answer at once."""
    if len(pool) <= _MAX_SUGGESTION_POOL:
        return pool
    slack = max(2, len(name) // 3)
    near = [c for c in pool if abs(len(c) - len(name)) <= slack]
    if len(near) > _MAX_SUGGESTION_POOL:  # keep names sharing the name's first and last three characters
        lowered = name.lower()
        head, tail = lowered[:3], lowered[-3:]
        pairs = [(c, c.lower()) for c in near]
        both = [c for c, low in pairs if head in low and tail in low]
        near = both or [c for c, low in pairs if head in low or tail in low] or near
    return near[:_MAX_SUGGESTION_POOL]


def did_you_mean(name: str, candidates: Iterable[str], n: int = 3) -> str:
    """A ``did you mean 'x'?`` suffix, or an empty string when nothing is close."""
    name = str(name)[:200]
    pool = _suggestion_pool(name, [c for c in candidates if isinstance(c, str)])
    close = difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in pool}
        close = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.6)]
    if not close:
        return ""
    return "did you mean " + " or ".join(repr(c) for c in close) + "?"


def first_line(err: BaseException) -> str:
    """The first non-blank line of an exception's message (its type name when it has none)."""
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0].strip() if lines else type(err).__name__


def all_lines(err: BaseException) -> str:
    """An exception's whole message on one line (its type name when it has none)."""
    return " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip()) or type(err).__name__


@dataclass(frozen=True)
class Location:
    """A 1-based line and column in a named file."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious, for warnings) with a spec."""

    message: str
    path: SpecPath | str = ()  # where in the spec; a dotted module path for a problem about a model
    location: Location | None = None
    source_line: str | None = None
    hint: str | None = None
    severity: Literal["error", "warning"] = "error"

    def format(self, *, show_source: bool = True) -> str:
        # A problem with no place in a file (a dict spec, a missing file) starts with its path, or the message.
        # Everything from the spec is escaped (no terminal control sequences) and bounded in length.
        parts = [printable(str(self.location), keep_newlines=False)] if self.location else []
        if self.path:
            parts.append(printable(shorten(format_path(self.path), 300), keep_newlines=False))
        head = "".join(f"{part}: " for part in parts)
        kind = "warning: " if self.severity == "warning" else ""
        lines = [head + kind + printable(shorten(self.message))]
        if show_source and self.source_line is not None and self.location is not None:
            text = printable(self.source_line.rstrip("\n").expandtabs(1), keep_newlines=False)
            lines.append("    " + text)
            lines.append("    " + " " * max(self.location.column - 1, 0) + "^")
        if self.hint:
            lines.append("    hint: " + printable(shorten(self.hint)))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


class NetspecError(Exception):
    """Base class of every error netspec raises on purpose."""


class SpecError(NetspecError, ValueError):
    """A spec (file, dict, override or emitted model) is invalid.

    ``problems`` holds every problem found, not only the first; ``str(err)`` shows them all.
    """

    def __init__(self, problems: Problem | Sequence[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        errors = [p for p in self.problems if p.severity == "error"]
        shown = errors or list(self.problems)
        body = "\n".join(p.format() for p in shown[:MAX_PROBLEMS_SHOWN])
        if len(shown) > MAX_PROBLEMS_SHOWN:
            body += f"\n... and {len(shown) - MAX_PROBLEMS_SHOWN:,} more (err.problems holds them all)"
        if len(errors) > 1:
            return f"{len(errors)} problems in spec:\n{body}"
        return body


class UsageError(NetspecError):
    """The command line was used wrongly (exit status 2), as opposed to a spec being invalid (1)."""


class CheckpointError(NetspecError, ValueError):
    """A checkpoint file is missing, truncated, tampered with or not a netspec checkpoint."""


class EmitError(NetspecError):
    """An existing ``nn.Module`` cannot be expressed as a spec."""


@dataclass
class ProblemList:
    """Collects problems so that all of them are reported together."""

    problems: list[Problem] = field(default_factory=list)

    def add(self, problem: Problem) -> None:
        self.problems.append(problem)

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def raise_if_errors(self) -> None:
        if self.errors:
            raise SpecError(self.errors)
