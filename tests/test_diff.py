"""netspec.diff and `netspec diff`: values with both locations, modules, params/MACs, warm-start weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import netspec
from netspec.cli.main import main
from netspec.frontend.origins import show_file
from tests.specfiles import write_spec_file

BASE = """\
netspec: 1
seed: 0
vars: {classes: 10}
input: {shape: [3, 8, 8]}
model:
  type: Sequential
  layers:
    conv: {type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
    act: ReLU
    flat: Flatten
    head: {type: Linear, out_features: "${classes}"}
"""


def shown(path: Path) -> str:
    """A file as origins show it: relative to the working directory when below it (tests run from anywhere)."""
    return show_file(str(path))


def _files(tmp_path: Path) -> tuple[Path, Path]:
    base = write_spec_file(tmp_path, BASE, "base.yaml")
    child = write_spec_file(
        tmp_path,
        """\
        netspec: 1
        extends: base.yaml
        vars: {classes: 5}
        model:
          layers:
            act: {_replace_: true, type: GELU}
            drop: {type: Dropout, p: 0.2}
        """,
        "child.yaml",
    )
    return base, child


def test_diff_reports_values_with_both_locations_modules_and_deltas(tmp_path: Path) -> None:
    base, child = _files(tmp_path)
    d = netspec.diff(base, child)
    values = {v.path: v for v in d.values}
    classes = values["vars.classes"]
    assert (classes.a, classes.b, classes.kind) == (10, 5, "changed")
    assert classes.a_origin == f"{shown(base)}:3" and classes.b_origin == f"{shown(child)}:3"
    act = values["model.layers.act"]
    assert (act.a, act.b, act.kind) == ("ReLU", {"type": "GELU"}, "changed")
    assert act.a_origin == f"{shown(base)}:9" and act.b_origin == f"{shown(child)}:6"
    drop = values["model.layers.drop"]
    assert (drop.kind, drop.b, drop.a_origin, drop.b_origin) == (
        "added",
        {"type": "Dropout", "p": 0.2},
        None,
        f"{shown(child)}:7",
    )
    modules = {m.name: m for m in d.modules}
    assert modules["act"].kind == "changed" and modules["act"].a == "ReLU()" and modules["act"].b.startswith("GELU(")
    assert modules["drop"].kind == "added"
    assert modules["head"].b == "Linear(in_features=256, out_features=5, bias=True)"
    # Against hand-written PyTorch: Conv2d(3, 4, 3) + Linear(256, classes).
    conv = sum(p.numel() for p in torch.nn.Conv2d(3, 4, 3).parameters())
    assert d.figures_a is not None and d.figures_b is not None
    assert d.figures_a.parameters == conv + 256 * 10 + 10
    assert d.figures_b.parameters == conv + 256 * 5 + 5
    assert d.figures_b.macs - d.figures_a.macs == -256 * 5
    assert d.differs and bool(d)


def test_checkpoint_after_head_change_reports_loadable_weights(tmp_path: Path) -> None:
    base, child = _files(tmp_path)
    run = tmp_path / "run.pt"
    netspec.save(netspec.build(base), run)
    d = netspec.diff(run, child)
    assert d.loadable == ["conv.weight", "conv.bias"]
    assert d.shape_mismatch == [("head.weight", (10, 256), (5, 256)), ("head.bias", (10,), (5,))]
    assert d.only_in_a == [] and d.only_in_b == []
    assert {v.path: v.a_origin for v in d.values}["vars.classes"] == shown(run)
    # The answer is right: exactly those tensors load into the child's model with strict=False.
    target = netspec.build(child).model
    state = torch.load(run, weights_only=True)["model"]
    loadable = {k: v for k, v in state.items() if k in d.loadable}
    result = target.load_state_dict(loadable, strict=False)
    assert sorted(result.missing_keys) == ["head.bias", "head.weight"]
    assert torch.equal(target.conv.weight, state["conv.weight"])
    # The same from a .safetensors file.
    netspec.save(netspec.build(base), tmp_path / "run.safetensors")
    assert netspec.diff(tmp_path / "run.safetensors", child).loadable == d.loadable


def test_identical_specs_do_not_differ(tmp_path: Path) -> None:
    base, _ = _files(tmp_path)
    respelled = write_spec_file(
        tmp_path, "# same\n" + BASE.replace("vars: {classes: 10}", "vars:\n  classes: 10"), "b.yaml"
    )
    d = netspec.diff(base, respelled)
    assert not d.differs and d.values == [] and d.modules == []
    assert d.loadable == ["conv.weight", "conv.bias", "head.weight", "head.bias"]
    assert "no differences" in d.to_table()


def test_cli_diff_table_json_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, child = _files(tmp_path)
    assert main(["diff", str(base), str(child)]) == 0
    table = capsys.readouterr().out
    assert f"{shown(base)}:3" in table and f"{shown(child)}:3" in table
    assert "~ act" in table and "+ drop" in table
    assert "parameters: 2,682 -> 1,397 (-1,285)" in table
    assert "warm start: 2 of A's 4 tensors load into B" in table
    assert main(["diff", str(base), str(child), "--exit-code"]) == 1
    capsys.readouterr()
    assert main(["diff", str(base), str(base), "--exit-code"]) == 0
    capsys.readouterr()
    assert main(["diff", str(base), str(child), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["parameters"] == {"a": 2682, "b": 1397, "delta": -1285}
    assert data["weights"]["loadable"] == ["conv.weight", "conv.bias"]
    assert {"path": "vars.classes", "a": 10, "b": 5}.items() <= next(
        v for v in data["values"] if v["path"] == "vars.classes"
    ).items()


def test_cli_diff_of_an_invalid_spec_is_exit_1_with_location(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, _ = _files(tmp_path)
    bad = write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\nvars: {classes: 0}\n", "bad.yaml")
    assert main(["diff", str(base), str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{base}:11:" in err and "out_features" in err


def test_cli_diff_set_b_shows_what_an_override_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, _ = _files(tmp_path)
    assert main(["diff", str(base), str(base), "--set-b", "vars.classes=3", "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    change = next(v for v in data["values"] if v["path"] == "vars.classes")
    assert (change["a"], change["b"]) == (10, 3)
    assert "--set vars.classes" in str(change["b_origin"])
    # head: 10*256+10 -> 3*256+3 parameters; the conv weights still load, the head's do not.
    assert data["parameters"]["delta"] == (3 * 256 + 3) - (10 * 256 + 10)
    assert data["weights"]["loadable"] == ["conv.weight", "conv.bias"]
    # --set applies to both sides: the same override on both is no difference at all.
    assert main(["diff", str(base), str(base), "--set", "vars.classes=3", "--exit-code"]) == 0
    capsys.readouterr()
    # --set-a on its own side only: A has 3 classes, B the file's 10.
    d = netspec.diff(base, base, overrides_a={"vars.classes": 3})
    assert [(v.path, v.a, v.b) for v in d.values] == [("vars.classes", 3, 10)]


def test_diff_override_of_a_checkpoint_side_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, _ = _files(tmp_path)
    netspec.save(netspec.build(base), tmp_path / "run.pt")
    assert main(["diff", str(tmp_path / "run.pt"), str(base), "--set-a", "vars.classes=3"]) == 2
    err = capsys.readouterr().err
    assert "A is a checkpoint" in err and "Traceback" not in err
    # An unknown override key is the spec's own error, with the --set origin and exit 1.
    assert main(["diff", str(base), str(base), "--set-b", "vars.clases=3"]) == 1
    assert "classes" in capsys.readouterr().err
