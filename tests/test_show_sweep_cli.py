"""`netspec show` (merged spec, --origins) and `netspec sweep` (Hydra-style grid validated on meta)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import netspec
from netspec.cli.main import main
from netspec.cli.sweep import parse_grid, split_values
from netspec.errors import UsageError
from netspec.frontend.origins import show_file
from netspec.frontend.source import load_text
from tests.specfiles import write_spec_file

BASE = """\
netspec: 1
seed: 0
vars: {width: 8, classes: 3}
input: {shape: [4]}
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: "${width}"}
    act: ReLU
    fc2: {type: Linear, out_features: "${classes}"}
optimizer: {type: SGD, lr: 0.1}
"""


@pytest.fixture
def variant(tmp_path: Path) -> Path:
    write_spec_file(tmp_path, BASE, "base.yaml")
    return write_spec_file(
        tmp_path,
        "netspec: 1\nextends: base.yaml\nvars: {width: 16}\noptimizer: {lr: 0.01}\n",
        "variant.yaml",
    )


def test_show_prints_the_merged_spec(variant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", str(variant)]) == 0
    out = capsys.readouterr().out
    assert "extends" not in out
    assert load_text(out).data == netspec.read(variant).to_dict()
    assert main(["show", str(variant), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == netspec.read(variant).to_dict()


def test_show_origins_names_file_and_line_of_every_value(
    variant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["show", str(variant), "--origins", "--set", "vars.classes=7"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    base = tmp_path / "base.yaml"
    expected = {
        "  width: 16": f"{show_file(str(variant))}:3",
        "  classes: 7": "--set vars.classes=7",
        "  lr: 0.01": f"{show_file(str(variant))}:4",
        "  type: SGD": f"{show_file(str(base))}:11",
        "      out_features: ${width}": f"{show_file(str(base))}:8",
        "    act: ReLU": f"{show_file(str(base))}:9",
    }
    for text, where in expected.items():
        line = next(line for line in lines if line.startswith(text + " "))
        assert line.endswith(f"# {where}"), line
    # Aligned: every origin comment starts in the same column.
    columns = {line.index("  # ") for line in lines}
    assert len(columns) == 1
    # Still YAML that reads back as the merged spec.
    assert load_text(out).data == netspec.read(variant, overrides={"vars.classes": 7}).to_dict()
    assert main(["show", str(variant), "--origins", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["origins"]["vars.width"] == f"{show_file(str(variant))}:3"
    assert data["origins"]["optimizer.type"] == f"{show_file(str(base))}:11"
    assert data["fingerprint"] == netspec.read(variant).fingerprint


def test_show_of_a_broken_variant_points_at_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    bad = write_spec_file(tmp_path, "netspec: 1\nextends: [base.yaml, missing.yaml]\n", "bad.yaml")
    assert main(["show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:" in err and "missing.yaml not found" in err and "Traceback" not in err


def test_search_path_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    (tmp_path / "v").mkdir()
    spec = write_spec_file(tmp_path / "v", "netspec: 1\nextends: ../base.yaml\n", "v.yaml")
    assert main(["validate", str(spec)]) == 1
    assert "leads out of the search path" in capsys.readouterr().err
    assert main(["validate", str(spec), "--search-path", str(tmp_path)]) == 0
    assert main(["build", str(spec), "--search-path", str(tmp_path), "--device", "meta"]) == 0


# -- sweep ------------------------------------------------------------------------------------------------


def test_hydra_value_splitting() -> None:
    assert split_values("1,2,3") == ["1", "2", "3"]
    assert split_values("[3,64,64],[3,128,128]") == ["[3,64,64]", "[3,128,128]"]
    assert split_values("{a: 1, b: 2},x") == ["{a: 1, b: 2}", "x"]
    assert split_values("'a,b',c") == ["'a,b'", "c"]
    grid, fixed = parse_grid(["input.shape=[3,64,64],[3,128,128]", "seed=1", "optimizer.lr=1e-3,0.1"])
    assert grid == {"input.shape": [[3, 64, 64], [3, 128, 128]], "optimizer.lr": [0.001, 0.1]}
    assert fixed == {"seed": 1}
    with pytest.raises(UsageError, match="empty value"):
        parse_grid(["seed=1,,2"])
    with pytest.raises(UsageError, match="given twice"):
        parse_grid(["seed=1,2", "seed=3,4"])


def test_sweep_rows_invalid_points_and_exit_code(variant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["sweep", str(variant), "--set", "vars.width=4,0,32", "--set", "input.shape=[4],[5]"])
    out, err = capsys.readouterr()
    assert status == 1
    rows = out.splitlines()
    assert len(rows) == 1 + 6 + 1  # header, one row per point, the count
    assert rows[-1] == "4 of 6 points valid"
    # Every point printed, invalid ones with their first problem located in the base file.
    assert sum(" invalid " in r for r in rows) == 2
    zero = next(r for r in rows if r.startswith("2 ") or r.startswith("3 "))
    assert "base.yaml:8:" in zero and "out_features" in zero
    ok = next(r for r in rows if r.startswith("4 "))  # width 32, shape [4]: Linear(4,32) + Linear(32,3)
    assert f"{4 * 32 + 32 + 32 * 3 + 3:,}" in ok and " ok " in ok
    assert err == ""  # stderr is not a terminal here: no progress


def test_sweep_writes_resolved_specs_and_an_index(
    variant: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "points"
    status = main(
        ["sweep", str(variant), "--set", "vars.width=4,0", "--set", "optimizer.lr=0.1,1e-3", "-o", str(out_dir)]
    )
    capsys.readouterr()
    assert status == 1
    files = sorted(p.name for p in out_dir.iterdir())
    assert files == ["index.json", "width=4_lr=0.001.yaml", "width=4_lr=0.1.yaml"]
    index = json.loads((out_dir / "index.json").read_text())
    assert [p["valid"] for p in index["points"]] == [True, True, False, False]
    assert index["points"][2]["error"] and index["points"][2]["file"] is None
    point = netspec.read(out_dir / "width=4_lr=0.001.yaml")  # self-contained: no extends left
    assert point.to_dict()["vars"]["width"] == 4 and point.to_dict()["optimizer"]["lr"] == 0.001
    assert point.fingerprint == index["points"][1]["fingerprint"]
    assert not [p for p in out_dir.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_sweep_memory_against_the_device(
    variant: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import netspec.compiler.memory as memory

    monkeypatch.setattr(memory, "available_bytes", lambda device: 1000)  # a device with 1000 bytes free
    status = main(["sweep", str(variant), "--set", "vars.width=4,64", "--format", "json"])
    points = json.loads(capsys.readouterr().out)
    assert status == 1
    assert points[0]["valid"] and points[0]["weight_bytes"] == 4 * (4 * 4 + 4 + 4 * 3 + 3)
    assert not points[1]["valid"]
    assert "needs 2.0 KB" in points[1]["error"] and "has 1000 B available" in points[1]["error"]


def test_sweep_needs_a_swept_key(variant: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(variant), "--set", "seed=1"]) == 2
    assert "at least one" in capsys.readouterr().err


def test_sweep_progress_only_on_a_terminal(
    variant: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    fake = Terminal()
    monkeypatch.setattr(sys, "stderr", fake)
    assert main(["sweep", str(variant), "--set", "vars.width=4,8"]) == 0
    assert "[1/2] vars.width=4" in fake.getvalue() and "[2/2] vars.width=8" in fake.getvalue()
    assert "[1/2]" not in capsys.readouterr().out  # the table on stdout stays clean
