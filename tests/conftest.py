"""Shared fixtures: spec files in a temporary folder, SpecError checks, the CLI run in-process."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import netspec
from netspec.catalog.registry import LAYERS

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SPEC_FILES = sorted([*SPECS.glob("*.yaml"), *SPECS.glob("*.yml"), *SPECS.glob("*.json")])
SCHEMA_FILE = ROOT / "schemas" / "netspec.schema.json"

# A problem line as SpecError prints it: ``file:line:col: spec.path: message``.
PROBLEM_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<rest>.*)$")


def folder_state(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (hidden ones included) with its size: what "nothing was written" compares."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def write_spec(tmp_path: Path) -> Callable[..., Path]:
    """Write a (dedented) spec text into ``tmp_path`` and return its path."""

    def write(text: str, name: str = "spec.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


def problem_lines(err: netspec.SpecError) -> list[str]:
    """The ``file:line:col: path: message`` lines of an error (not the quoted source, caret or hint)."""
    return [line for line in str(err).splitlines() if PROBLEM_LINE.match(line)]


def assert_problem(
    err: netspec.SpecError,
    *,
    file: str | Path,
    line: int,
    path: str,
    words: tuple[str, ...] = (),
) -> str:
    """Some problem of ``err`` is at ``file:line`` with spec path ``path`` (``a.b*``: starting with ``a.b``),
    and its text (hint included) holds every one of ``words``.

    Returns that problem, formatted, for further checks.
    """
    name = str(file)
    text = str(err)
    for problem in err.problems:
        shown = problem.format()
        head = shown.splitlines()[0]
        where = f": {path.removesuffix('*')}" + ("" if path.endswith("*") else ": ")
        if head.startswith(f"{name}:{line}:") and where in head:
            assert shown in text, "every problem must appear in str(err)"
            for word in words:
                assert word in shown, f"{word!r} missing from:\n{shown}"
            return shown
    raise AssertionError(f"no problem at {name}:{line} with path {path!r} in:\n{text}")


@pytest.fixture
def expect_spec_error(tmp_path: Path) -> Callable[..., netspec.SpecError]:
    """Write a spec, read/build it, and check the SpecError it raises and that nothing else was written.

    ``line``, ``path`` and ``words`` locate one expected problem; ``count`` (optional) is the number of
    problems reported together. ``build=True`` calls ``netspec.build`` instead of ``netspec.read``;
    ``all_in_file=False`` allows problems located elsewhere (an override).
    """

    def run(
        text: str,
        *,
        line: int,
        path: str,
        words: tuple[str, ...] = (),
        name: str = "spec.yaml",
        count: int | None = None,
        overrides: Mapping[str, Any] | None = None,
        build: bool = False,
        all_in_file: bool = True,
    ) -> netspec.SpecError:
        spec_file = tmp_path / name
        spec_file.write_text(textwrap.dedent(text), encoding="utf-8")
        before = folder_state(tmp_path)
        with pytest.raises(netspec.SpecError) as info:
            if build:
                netspec.build(spec_file, overrides=overrides)
            else:
                netspec.read(spec_file, overrides)
        err = info.value
        assert isinstance(err, ValueError) and isinstance(err, netspec.NetspecError)
        assert_problem(err, file=spec_file, line=line, path=path, words=words)
        if count is not None:
            assert len(err.problems) == count, str(err)
        # Every problem is in the documented form and names this file.
        for problem in err.problems if all_in_file else ():
            assert problem.location is not None, problem
            assert str(problem).startswith(f"{spec_file}:"), problem
        assert folder_state(tmp_path) == before, "a failed read/build must not write anything"
        return err

    return run


@pytest.fixture
def clean_registry() -> Iterator[None]:
    """Undo ``netspec.register`` calls made by a test, so the catalogue is the same for every test."""
    saved = LAYERS.snapshot()
    try:
        yield
    finally:
        LAYERS.restore(saved)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., tuple[int, str, str]]:
    """Run ``netspec.cli.main(argv)`` in-process; returns (exit status, stdout, stderr).

    Whatever happens, no Python traceback may reach stderr.
    """
    from netspec.cli.main import main

    def run(*argv: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()  # drop anything printed before
        code = main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in err, err
        assert "internal error" not in err, err
        return code, out, err

    return run


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--zoo",
        action="store_true",
        default=False,
        help="round-trip every torchvision classifier (<=150M params) and every timm family through emit, "
        "not only the fast set",
    )
