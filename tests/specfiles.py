"""Writing spec texts for tests: dedented and with the leading newline dropped, so that line 1 of
the file is the first line of the text and tests can assert the line numbers in messages."""

from __future__ import annotations

import textwrap
from pathlib import Path


def write_spec_file(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path
