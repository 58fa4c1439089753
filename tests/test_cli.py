"""The command line: build (table, JSON, depth, -o, --set, --device), validate, schema and exit codes.

Most tests run ``netspec.cli.main`` in-process (the ``cli`` fixture, which also asserts that no traceback
reaches stderr); a few run ``python -m netspec.cli`` to prove the real entry point works.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT, SPECS, folder_state

import netspec
from netspec.io.atomic import atomic_write
from netspec.schema import schema_text

Cli = Callable[..., tuple[int, str, str]]
LENET = SPECS / "lenet5.yaml"

SMALL = """\
netspec: 1
name: small
seed: 0
vars: {width: 4}
input: {shape: [3, 8, 8]}
model:
  type: Sequential
  layers:
    features:
      type: Sequential
      layers:
        conv: {type: Conv2d, out_channels: "${width}", kernel_size: 3, padding: 1}
        act: ReLU
        pool: {type: AdaptiveAvgPool2d, output_size: 2}
    flat: Flatten
    head: {type: Linear, out_features: 5}
"""


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def table_rows(out: str) -> list[tuple[int, str, str, list[str]]]:
    """(depth, name, type, other cells) for each module row of the summary table."""
    lines = out.splitlines()
    rules = [k for k, line in enumerate(lines) if line and set(line) == {"="}]
    rows = []
    for line in lines[rules[1] + 1 : rules[2]]:
        match = re.match(r"^( *)(\S+) \((\w+)\)\s+(.*)$", line)
        assert match, line
        indent, name, kind, rest = match.groups()
        rows.append((len(indent) // 2, name, kind, rest.split()))
    return rows


def table_totals(out: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in out.splitlines() if line.startswith(("Total", "Trainable", "Frozen")))


# -- build ----------------------------------------------------------------------------------------


def test_build_prints_the_summary_table(cli: Cli) -> None:
    code, out, err = cli("build", LENET)
    assert code == 0 and err == ""
    header = [line for line in out.splitlines() if line.startswith("Layer (type)")]
    assert len(header) == 1 and header[0].split() == ["Layer", "(type)", "Output", "shape", "Params", "MACs", "Train"]
    rows = table_rows(out)
    assert rows[0][:3] == (0, "lenet5", "Sequential")
    assert [(d, n, t) for d, n, t, _ in rows[1:4]] == [
        (1, "features", "Sequential"),
        (2, "conv1", "Conv2d"),
        (2, "relu1", "ReLU"),
    ]
    conv1 = rows[2][3]
    assert conv1 == ["[B,", "6,", "28,", "28]", "156", "117.60K", "yes"]
    relu = rows[3][3]
    assert relu[-3:] == ["-", "-", "-"]
    assert table_totals(out) == {
        "Total params": "61,706",
        "Trainable params": "61,706",
        "Frozen params": "0",
        "Total MACs": "416.52K (per sample)",
    }


def test_depth_folds_deeper_levels(cli: Cli) -> None:
    _, full, _ = cli("build", LENET)
    _, one, _ = cli("build", LENET, "--depth", "1")
    _, zero, _ = cli("build", LENET, "--depth", "0")
    assert max(d for d, *_ in table_rows(full)) == 2
    assert [(d, n) for d, n, *_ in table_rows(one)] == [
        (0, "lenet5"),
        (1, "features"),
        (1, "flatten"),
        (1, "classifier"),
    ]
    assert [(d, n) for d, n, *_ in table_rows(zero)] == [(0, "lenet5")]
    features = next(r for r in table_rows(one) if r[1] == "features")
    assert features[3][-3:] == ["2,572", "357.60K", "yes"]  # folded children are counted in their parent
    assert table_totals(one) == table_totals(zero) == table_totals(full)


def test_json_format_has_the_same_rows_and_totals(cli: Cli) -> None:
    _, table, _ = cli("build", LENET)
    code, out, err = cli("build", LENET, "--format", "json")
    assert code == 0 and err == ""
    data = json.loads(out)
    assert data["name"] == "lenet5"
    totals = data["totals"]
    shown = table_totals(table)
    assert f"{totals['params']:,}" == shown["Total params"]
    assert f"{totals['trainable_params']:,}" == shown["Trainable params"]
    assert f"{totals['frozen_params']:,}" == shown["Frozen params"]
    assert totals["macs"] == 416_520
    rows = table_rows(table)
    assert [(r["depth"], r["name"].rsplit(".", 1)[-1] or "lenet5", r["type"]) for r in data["layers"]] == [
        (d, n, t) for d, n, t, _ in rows
    ]
    by_name = {r["name"]: r for r in data["layers"]}
    assert by_name["features.conv1"] == {
        "name": "features.conv1",
        "type": "Conv2d",
        "depth": 2,
        "output_shape": ["B", 6, 28, 28],  # the batch dimension as in the table
        "params": 156,
        "trainable": 156,
        "macs": 117_600,
        "input_shape": ["B", 1, 32, 32],  # inference logged every call: no trace needed
        "kernel": [5, 5],
        "memory": 6 * 28 * 28 * 4,  # its float32 output per sample
        "connected": [],  # only children a Graph calls are connected to something
    }
    assert by_name["classifier.fc1"]["macs"] == 48_000
    assert sum(r["params"] for r in data["layers"] if r["type"] in ("Conv2d", "Linear")) == totals["params"]
    assert [g["params"] for g in data["optimizer_groups"]] == [61_470, 236]


def test_json_without_input_shape_has_no_shapes_or_macs(cli: Cli) -> None:
    code, out, _ = cli("build", SPECS / "linears.yaml", "--format", "json", "--depth", "1")
    assert code == 0
    data = json.loads(out)
    assert data["totals"]["params"] == 20 * 110 and data["totals"]["macs"] is None
    assert [(r["name"], r["output_shape"], r["macs"]) for r in data["layers"]] == [
        ("", None, None),
        ("linears", None, None),
    ]


def test_output_saves_the_state_dict_readable_by_others(cli: Cli, small: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "out.pt"
    old = os.umask(0o022)
    try:
        code, _, err = cli("build", small, "-o", out_file)
    finally:
        os.umask(old)
    assert code == 0 and f"saved state_dict to {out_file}" in err
    saved = torch.load(out_file, weights_only=True)
    expected = netspec.build(small).model.state_dict()  # seed: 0, so the same weights
    assert list(saved) == list(expected)
    assert all(torch.equal(saved[k], expected[k]) for k in expected)
    mode = stat.S_IMODE(out_file.stat().st_mode)
    assert mode & 0o044 != 0, oct(mode)  # not 0600-only
    assert mode == 0o644, oct(mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.pt", "small.yaml"]  # no temporary file left


DOUBLE_INPUT = """\
netspec: 1
seed: 0
input: {shape: [4], dtype: float64}
model:
  type: Sequential
  layers:
    - {type: Linear, in_features: 4, out_features: 2}
"""


def test_dtype_flag_validates_and_builds_for_that_weights_dtype(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "double.yaml"
    spec.write_text(DOUBLE_INPUT, encoding="utf-8")
    code, _, err = cli("validate", spec)
    assert code == 1
    assert f"{spec}:7:7: model.layers.0: Linear expected float32 input (the layer's parameters), got float64" in err
    assert "--dtype float64" in err
    code, out, _ = cli("validate", "--dtype", "float64", spec)
    assert (code, out.strip()) == (0, f"{spec}: ok")
    out_file = tmp_path / "double.pt"
    code, _, err = cli("build", "--dtype", "float64", spec, "-o", out_file)
    assert code == 0, err
    saved = torch.load(out_file, weights_only=True)
    assert {t.dtype for t in saved.values()} == {torch.float64}
    # initialised in float32 and then cast: the float32 build's weights, exactly
    single = tmp_path / "single.yaml"
    single.write_text(DOUBLE_INPUT.replace("float64", "float32"), encoding="utf-8")
    float32 = netspec.build(single).model.state_dict()
    assert all(torch.equal(saved[k], float32[k].double()) for k in float32)
    code, _, err = cli("build", "--dtype", "int8", spec)
    assert code == 2 and "invalid choice: 'int8'" in err


def test_output_replaces_an_existing_file_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out.pt"
    target.write_bytes(b"old")

    def failing(fh: Any) -> None:
        fh.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, failing)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]
    atomic_write(target, lambda fh: fh.write(b"new"))
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"]


def test_output_into_a_missing_folder(cli: Cli, small: Path, tmp_path: Path) -> None:
    code, _, err = cli("build", small, "-o", tmp_path / "nowhere" / "out.pt")
    assert code == 1 and "does not exist" in err


def test_invalid_spec_writes_no_output(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text(SMALL.replace("kernel_size: 3", "kernel_sise: 3"))
    before = folder_state(tmp_path)
    code, out, err = cli("build", spec, "-o", tmp_path / "out.pt")
    assert code == 1 and out == ""
    assert f"{spec}:12:" in err and "did you mean 'kernel_size'" in err
    assert folder_state(tmp_path) == before


def test_set_overrides_vars_seed_and_input_shape(cli: Cli, small: Path, tmp_path: Path) -> None:
    code, out, _ = cli("build", small, "--format", "json", "--set", "vars.width=3", "--set", "input.shape=[3,64,64]")
    assert code == 0
    layers = {r["name"]: r for r in json.loads(out)["layers"]}
    assert layers["features.conv"]["output_shape"] == ["B", 3, 64, 64]
    assert layers["head"]["params"] == 3 * 4 * 5 + 5

    saved = {}
    for seed in ("1", "1", "2"):
        path = tmp_path / f"seed{len(saved)}.pt"
        assert cli("build", small, "--set", f"seed={seed}", "-o", path)[0] == 0
        saved[len(saved)] = torch.load(path, weights_only=True)
    assert torch.equal(saved[0]["head.weight"], saved[1]["head.weight"])
    assert not torch.equal(saved[0]["head.weight"], saved[2]["head.weight"])
    default = netspec.build(small).model.state_dict()["head.weight"]  # seed 0
    assert not torch.equal(default, saved[0]["head.weight"])


def test_set_with_a_bad_value_names_it(cli: Cli, small: Path) -> None:
    code, _, err = cli("build", small, "--set", "seed=.nan")
    assert code == 1 and err.startswith("--set seed:1:1: ") and ".nan is not allowed" in err
    code, _, err = cli("build", small, "--set", "input.shape=[3,")
    assert code == 1 and err.startswith("--set input.shape:")
    code, _, err = cli("build", small, "--set", "vars.width=wide")
    assert code == 1 and f"{small}:12:" in err and "got str 'wide'" in err


def test_device_meta_builds_without_allocating(cli: Cli, small: Path) -> None:
    code, out, _ = cli("build", small, "--device", "meta")
    assert code == 0 and table_rows(out)[0][1] == "small"


def test_unavailable_device_is_a_one_line_error(cli: Cli, small: Path) -> None:
    code, out, err = cli("build", small, "--device", "nonsense")
    assert code == 1 and out == "" and "device 'nonsense' is not available" in err
    if not torch.cuda.is_available():
        code, _, err = cli("build", small, "--device", "cuda")
        assert code == 1 and "device 'cuda' is not available" in err and len(err.splitlines()) == 1


# -- validate -------------------------------------------------------------------------------------


def test_validate_one_and_many(cli: Cli, small: Path, tmp_path: Path) -> None:
    assert cli("validate", small) == (0, f"{small}: ok\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMALL.replace("output_size: 2", "output_size: two"))
    missing = tmp_path / "missing.yaml"
    code, out, err = cli("validate", small, bad, missing, LENET)
    assert code == 1
    assert out == f"{small}: ok\n{LENET}: ok\n"
    assert f"{bad}:14:" in err and "features.layers.pool.output_size" in err and "got str 'two'" in err
    assert f"{missing}: spec file not found" in err


def test_validate_with_set(cli: Cli, small: Path) -> None:
    code, _, err = cli("validate", small, "--set", "vars.width=0")
    assert code == 1 and "out_channels must be positive, got 0" in err


# -- schema ---------------------------------------------------------------------------------------


def test_schema_to_stdout_and_file(cli: Cli, tmp_path: Path) -> None:
    code, out, _ = cli("schema")
    assert code == 0 and out == schema_text()
    target = tmp_path / "schema.json"
    assert cli("schema", "-o", target) == (0, "", "")
    assert target.read_text(encoding="utf-8") == schema_text()
    assert json.loads(target.read_text())["$defs"]["layer_Conv2d"]["title"] == "Conv2d"


# -- usage errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["build"],
        ["validate"],
        ["build", str(LENET), "--set", "seed"],
        ["build", str(LENET), "--set", "=3"],
        ["build", str(LENET), "--depth", "-1"],
        ["build", str(LENET), "--depth", "x"],
        ["build", str(LENET), "--format", "xml"],
    ],
    ids=[
        "nothing",
        "unknown-command",
        "build-no-spec",
        "validate-no-spec",
        "set-no-eq",
        "set-no-key",
        "neg-depth",
        "bad-depth",
        "bad-format",
    ],
)
def test_usage_errors_exit_2(cli: Cli, argv: list[str]) -> None:
    code, out, err = cli(*argv)
    assert code == 2 and out == ""
    assert err.strip()


def test_help_exits_0(cli: Cli) -> None:
    code, out, _ = cli("--help")
    assert code == 0 and "build" in out and "validate" in out and "schema" in out


# -- the real entry point -------------------------------------------------------------------------


def run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NETSPEC_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "netspec.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )


def test_subprocess_build_prints_the_table() -> None:
    proc = run("build", "specs/lenet5.yaml", "--depth", "1")
    assert proc.returncode == 0, proc.stderr
    assert "lenet5 (Sequential)" in proc.stdout and "Total params: 61,706" in proc.stdout


def test_subprocess_invalid_spec_exit_1_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("netspec: 1\nmodel: {type: Conv2D}\n")
    proc = run("validate", bad)
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{bad}:2:9: model.type: unknown layer type 'Conv2D'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_subprocess_usage_error_exit_2() -> None:
    proc = run("frobnicate")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "invalid choice" in proc.stderr


def test_python_dash_m_netspec_is_the_same_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "netspec", "emit", "no_such_module"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "expected MODULE:FACTORY" in done.stderr and "Traceback" not in done.stderr


def test_output_with_device_meta_is_a_usage_error(cli: Cli, small: Path, tmp_path: Path) -> None:
    code, _, err = cli("build", small, "--device", "meta", "-o", tmp_path / "m.pt")
    assert code == 2 and "--device meta builds none" in err
    assert not (tmp_path / "m.pt").exists()


def test_build_from_a_plain_dataparallel_state_dict(cli: Cli, small: Path, tmp_path: Path) -> None:
    reference = netspec.build(netspec.read(small), overrides={"seed": 123}).model.state_dict()
    weights = tmp_path / "dp.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.items()}}, weights)
    out = tmp_path / "out.pt"
    code, _, err = cli("build", small, "--from-checkpoint", weights, "-o", out)
    assert code == 0, err
    assert f"loaded weights from {weights}" in err
    saved = torch.load(out, weights_only=True)
    assert list(saved) == list(reference)
    assert all(torch.equal(saved[k], reference[k]) for k in reference)


def test_subprocess_build_writes_the_whole_state_dict_before_the_process_ends(tmp_path: Path) -> None:
    # The command-line entry leaves the last objects to the OS (gc.freeze) instead of collecting them:
    # the file it wrote and what it printed must be complete all the same.
    out = tmp_path / "lenet5.pt"
    proc = run("build", "specs/lenet5.yaml", "-o", out)
    assert proc.returncode == 0, proc.stderr
    assert "Total params: 61,706" in proc.stdout
    state = torch.load(out, weights_only=True)
    assert sum(t.numel() for t in state.values() if t.is_floating_point()) == 61_706


def test_an_in_process_caller_keeps_normal_garbage_collection(capsys: pytest.CaptureFixture[str]) -> None:
    import gc

    before = gc.get_freeze_count()
    from netspec.cli.main import main

    assert main(["build", str(ROOT / "specs" / "lenet5.yaml"), "--device", "meta"]) == 0
    capsys.readouterr()
    assert gc.get_freeze_count() == before  # only the process's own command line (argv=None) freezes
