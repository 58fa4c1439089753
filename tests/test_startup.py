"""Fast start: the parser, ``--help`` and a ``validate`` that fails in the front end never import torch.

Each case runs in a fresh interpreter (a test process already holds torch), and reads the modules
that interpreter imported from ``python -X importtime``'s report on stderr.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )
    # lines look like "import time:       123 |        456 |   torch.nn"
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    return proc, names - {"imported package"}


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "yaml": "netspec: 1\nmodel: {type: [Linear\n",
        "structure": "netspec: 1\nmodel: {typo: Linear}\n",
        "version": "netspec: 7\nmodel: {type: Linear, in_features: 2, out_features: 3}\n",
    }
    out = {}
    for kind, text in files.items():
        out[kind] = tmp_path / f"{kind}.yaml"
        out[kind].write_text(text)
    return out


def subcommands() -> list[str]:
    """Every subcommand the parser knows (new command groups are covered without editing this file)."""
    from netspec.cli.main import make_parser

    parser = make_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sorted(action.choices)


def test_the_parser_has_the_documented_commands() -> None:
    assert {"build", "validate", "schema", "emit", "check"} <= set(subcommands())


@pytest.mark.parametrize(
    "argv",
    [["--help"], *([cmd, "--help"] for cmd in subcommands()), ["frobnicate"]],
    ids=lambda a: " ".join(a),
)
def test_help_and_usage_errors_never_import_torch(argv: list[str], tmp_path: Path) -> None:
    proc, names = imported_modules("-m", "netspec", *argv, cwd=tmp_path)
    assert proc.returncode == (2 if argv == ["frobnicate"] else 0), proc.stderr[-2000:]
    assert "netspec.cli.main" in names  # the report is real: it lists netspec's own modules
    # Making the parser reads no spec: neither torch nor the spec reader (yaml) nor the document (pydantic).
    assert not {"torch", "yaml", "pydantic"} & names


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("yaml", ":3:1: model.type: did not find expected ',' or ']'"),
        ("structure", ":2:1: model.type: missing required key 'type'"),
        ("version", ":1:1: netspec: input should be 1, got 7"),
    ],
)
def test_validate_of_a_front_end_error_never_imports_torch(
    kind: str, expected: str, bad_files: dict[str, Path]
) -> None:
    path = bad_files[kind]
    proc, names = imported_modules("-m", "netspec", "validate", str(path), cwd=path.parent)
    assert proc.returncode == 1 and proc.stdout == ""
    problems = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert problems and problems[0].startswith(f"{path}{expected}"), problems
    assert "torch" not in names and "pydantic" in names  # the document was checked, torch never loaded


def test_validate_of_a_good_spec_does_import_torch(tmp_path: Path) -> None:
    """The counter-check: the same report shows torch once the compiler really runs."""
    spec = tmp_path / "ok.yaml"
    spec.write_text("netspec: 1\nmodel: {type: Linear, in_features: 2, out_features: 3}\n")
    proc, names = imported_modules("-m", "netspec", "validate", str(spec), cwd=tmp_path)
    assert proc.returncode == 0 and f"{spec}: ok" in proc.stdout
    assert "torch" in names


def test_import_netspec_and_read_errors_never_import_torch(bad_files: dict[str, Path]) -> None:
    code = (
        "import sys, netspec\n"
        "assert 'torch' not in sys.modules, 'import netspec imported torch'\n"
        "try:\n"
        f"    netspec.read({str(bad_files['structure'])!r})\n"
        "except netspec.SpecError as err:\n"
        "    print(err.problems[0].message)\n"
        "print('torch' in sys.modules)\n"
    )
    proc, _ = imported_modules("-c", code, cwd=bad_files["structure"].parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == ["missing required key 'type'", "False"]


def test_netspec_emit_stays_the_function_after_its_subpackage_is_imported() -> None:
    """``netspec.lint`` imports the emitter subpackage; ``netspec.emit(model)`` must still work (the package
    is named ``emitter`` so that importing it cannot replace the function; see also test_public_names)."""
    code = (
        "import torch.nn as nn, netspec\n"
        "netspec.lint(nn.Linear(2, 3))\n"
        "import netspec.emitter.layers\n"
        "from netspec.emitter.walker import emit\n"
        "assert netspec.emit is emit, netspec.emit\n"
        "print(netspec.emit(nn.Sequential(nn.ReLU())).to_dict()['model'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "{'type': 'Sequential', 'layers': ['ReLU']}"
