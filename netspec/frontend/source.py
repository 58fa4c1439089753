"""Stage 1 of the pipeline, the entry points: spec text in, a ``Source`` out.

In: YAML or JSON text (``load_text``), a ``.yaml``/``.yml``/``.json`` file (``load_file``) or a plain
mapping (``from_data``), plus ``--set`` style overrides (``apply_overrides``, ``parse_scalar``).
Out: a ``Source``: plain Python data (insertion-ordered dicts, lists, str, int, float, bool, None), the
original text, and the 1-based ``Location`` of every mapping key and sequence item keyed by spec path,
so that later stages can point at the exact line of whatever they reject. Each ``Location`` names its
file, so a spec merged from several files (``frontend.compose``) keeps, for every key and item, the file
and line it was written in; ``texts`` holds those other files' text for quoting.

YAML is read with the YAML 1.2 core schema (``yes`` stays a string, ``1e-3`` is a float) and plain tags
only. Size, nesting depth and alias expansion are bounded, and both parsers are iterative, so hostile or
broken files fail fast with a ``SpecError`` instead of exhausting memory or the recursion limit.
The readers are ``yaml_reader`` and ``json_reader``; ``Source`` itself lives in ``positions``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any, Literal

from ..errors import Location, Problem, SpecError, did_you_mean
from .gc_pause import gc_paused
from .json_reader import parse_json
from .positions import DEFAULT_LIMITS, Limits, Source, to_plain
from .scalars import kind_of, parse_scalar
from .yaml_reader import parse_yaml

_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}


def load_text(
    text: str,
    filename: str = "<string>",
    fmt: Literal["yaml", "json"] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Source:
    """Parse YAML or JSON ``text``; ``fmt`` defaults from the extension of ``filename`` (else YAML)."""
    if fmt is None:
        fmt = "json" if os.path.splitext(filename)[1].lower() == ".json" else "yaml"
    if fmt not in ("yaml", "json"):
        raise ValueError(f"fmt must be 'yaml', 'json' or None, not {fmt!r}")
    # Counting characters first avoids encoding a large text just to measure it.
    if len(text) > limits.max_bytes or (
        len(text) * 4 > limits.max_bytes and len(text.encode("utf-8", "surrogatepass")) > limits.max_bytes
    ):
        raise SpecError(Problem(f"{filename} is larger than the limit of {limits.max_bytes} bytes"))
    text = text.removeprefix("\ufeff")
    src = Source(None, filename, text, {})
    with gc_paused():
        (parse_json if fmt == "json" else parse_yaml)(src, limits)
    return src


def load_file(path: str | os.PathLike[str], limits: Limits = DEFAULT_LIMITS) -> Source:
    """Read and parse a ``.yaml``, ``.yml`` or ``.json`` spec file."""
    name = os.fsdecode(os.fspath(path))
    ext = os.path.splitext(name)[1].lower()
    if ext not in _EXTENSIONS:
        message = f"{name}: spec files must end in .yaml, .yml or .json, not {ext or 'nothing'}"
        raise SpecError(Problem(message, hint=did_you_mean(ext, _EXTENSIONS) or None))
    too_big = Problem(f"{name} is larger than the limit of {limits.max_bytes} bytes")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses anything but a file.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise SpecError(Problem(f"{name}: spec file not found")) from None
    except OSError as err:
        raise SpecError(Problem(f"cannot read spec file {name}: {err.strerror}")) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise SpecError(Problem(f"{name}: a spec must be a regular file, not {file_kind(info.st_mode)}"))
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > limits.max_bytes:
            raise SpecError(too_big)
        try:
            raw = fh.read(limits.max_bytes + 1)  # the file may have grown since fstat
        except OSError as err:
            raise SpecError(Problem(f"cannot read spec file {name}: {err.strerror}")) from None
    if len(raw) > limits.max_bytes:
        raise SpecError(too_big)
    try:
        text = raw.decode("utf-8")  # load_text drops a BOM; offsets stay exact
    except UnicodeDecodeError as err:
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        column = len(raw[line_start : err.start].decode("utf-8", "replace").removeprefix("\ufeff")) + 1
        loc = Location(name, raw.count(b"\n", 0, err.start) + 1, column)
        raise SpecError(
            Problem(f"invalid UTF-8 at byte offset {err.start}", location=loc, hint="save the file as UTF-8")
        ) from None
    return load_text(text, name, _EXTENSIONS[ext], limits)  # type: ignore[arg-type]


def file_kind(mode: int) -> str:
    """``"a folder"``, ``"a character device"``, ... for an ``st_mode`` that is not a regular file."""
    kinds = (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "a special file")


def from_data(data: Mapping[str, Any], filename: str = "<dict>") -> Source:
    """Wrap an in-memory mapping as a Source (deep-copied, validated, no positions)."""
    if not isinstance(data, Mapping):
        raise SpecError(Problem(f"a spec must be a mapping, not a {kind_of(data)}"))
    return Source(to_plain(data, (), DEFAULT_LIMITS), filename, None, {})


def apply_overrides(source: Source, overrides: Mapping[str, Any]) -> None:
    """Apply ``{"a.b": value}`` overrides in order, reporting every bad one together."""
    problems: list[Problem] = []
    for dotted, value in overrides.items():
        try:
            source.with_override(dotted, value)
        except SpecError as err:
            problems.extend(err.problems)
    if problems:
        raise SpecError(problems)


__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "Source",
    "apply_overrides",
    "file_kind",
    "from_data",
    "gc_paused",
    "load_file",
    "load_text",
    "parse_scalar",
]
