"""Every name the contract calls as ``netspec.NAME(...)`` stays that object however the package was imported.

A subpackage with the same name as a public function (``netspec/emit/`` beside ``netspec.emit``) would
replace the function with a module as soon as anything imported the subpackage first; this runs each
check in a fresh interpreter that imports every netspec module before touching the public names.
"""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

CALLABLES = ("read", "build", "load", "emit", "save", "register", "lint", "draw", "diff", "plan", "load_checkpoint")

SCRIPT = f"""
import importlib, pkgutil, sys
import netspec
for info in pkgutil.walk_packages(netspec.__path__, "netspec."):
    if info.name.endswith("__main__"):
        continue
    importlib.import_module(info.name)
bad = [n for n in {CALLABLES!r} if not callable(getattr(netspec, n)) or isinstance(getattr(netspec, n), type(sys))]
print(bad)
"""


def test_public_functions_are_functions_after_every_submodule_is_imported() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_public_names_are_listed_in_dunder_all() -> None:
    import netspec

    assert set(CALLABLES) <= set(netspec.__all__)
