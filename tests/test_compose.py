"""Composition (contract section 6): extends, imports, merge rules, path rules, provenance of every value."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import netspec
from netspec.errors import SpecError
from tests.conftest import assert_problem
from tests.specfiles import write_spec_file

BASE = """\
netspec: 1
name: base
seed: 0
vars: {width: 8, classes: 10}
input: {shape: [4]}
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: "${width}"}
    act: ReLU
    dropout: {type: Dropout, p: 0.5}
    fc2: {type: Linear, out_features: "${classes}"}
optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
freeze: [fc1.bias]
"""


def _read_error(path: Path, **kwargs: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        netspec.read(path, **kwargs)  # type: ignore[arg-type]
    return info.value


def test_child_merges_onto_base_key_by_key(tmp_path: Path) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    child = write_spec_file(
        tmp_path,
        """\
        netspec: 1
        extends: base.yaml
        vars: {classes: 3}
        model:
          layers:
            fc2: {bias: false}
            dropout: {_remove_: true}
            extra: Identity
        optimizer: {_replace_: true, type: Adam, lr: 0.01}
        freeze: [fc2.weight]
        """,
        "child.yaml",
    )
    spec = netspec.read(child)
    data = spec.to_dict()
    assert "extends" not in data and "imports" not in data
    assert data["vars"] == {"width": 8, "classes": 3}
    assert list(data["model"]["layers"]) == ["fc1", "act", "fc2", "extra"]  # base order, new keys after
    assert data["model"]["layers"]["fc2"] == {"type": "Linear", "out_features": "${classes}", "bias": False}
    assert data["optimizer"] == {"type": "Adam", "lr": 0.01}  # replaced: momentum gone
    assert data["freeze"] == ["fc2.weight"]  # lists replace
    model = netspec.build(spec).model
    reference = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3, bias=False), torch.nn.Identity()
    )
    assert [type(m) for m in model.children()] == [type(m) for m in reference.children()]
    assert {k: v.shape for k, v in model.state_dict().items()} == {
        k.replace("0.", "fc1.").replace("2.", "fc2."): v.shape for k, v in reference.state_dict().items()
    }
    assert isinstance(netspec.build(spec).optimizer, torch.optim.Adam)


def test_extends_list_merges_in_order_and_chains(tmp_path: Path) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\nvars: {width: 16}\nseed: 1\n", "mid.yaml")
    write_spec_file(tmp_path, "vars: {width: 32}\n", "wide.yaml")  # a partial spec: a patch, not a model
    write_spec_file(tmp_path, "seed: 7\n", "seeded.yaml")
    top = write_spec_file(tmp_path, "netspec: 1\nextends: [mid.yaml, wide.yaml, seeded.yaml]\n", "top.yaml")
    data = netspec.read(top).to_dict()
    assert data["vars"] == {"width": 32, "classes": 10}
    assert data["seed"] == 7
    assert data["name"] == "base"


def test_error_in_a_base_value_points_at_the_base_file(tmp_path: Path) -> None:
    base = write_spec_file(tmp_path, BASE.replace("p: 0.5", "p: 0.5, inplce: true"), "base.yaml")
    child = write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\nvars: {classes: 3}\n", "child.yaml")
    err = _read_error(child)
    shown = assert_problem(err, file=base, line=11, path="model.layers.dropout.inplce", words=("inplace",))
    assert "p: 0.5, inplce: true" in shown  # the base's line is quoted


def test_error_in_a_child_value_points_at_the_child_file(tmp_path: Path) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    child = write_spec_file(
        tmp_path,
        """\
        netspec: 1
        extends: base.yaml
        model:
          layers:
            fc2: {out_features: -3}
        """,
        "child.yaml",
    )
    err = _read_error(child)
    shown = assert_problem(err, file=child, line=5, path="model.layers.fc2.out_features*")
    assert "fc2: {out_features: -3}" in shown


def test_overrides_apply_after_merging(tmp_path: Path) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    child = write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\nvars: {width: 16}\n", "child.yaml")
    spec = netspec.read(child, overrides={"vars.width": 2, "optimizer.lr": 0.5})
    assert spec.to_dict()["vars"]["width"] == 2
    assert spec.to_dict()["optimizer"] == {"type": "SGD", "lr": 0.5, "momentum": 0.9}
    loc = spec.source.positions[("vars", "width")]
    assert "--set vars.width=2" in loc.file
    assert spec.source.positions[("optimizer", "momentum")].file == str(tmp_path / "base.yaml")


def test_to_yaml_is_self_contained(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    write_spec_file(
        lib,
        "netspec: 1\nblocks:\n  Unit:\n    params: {n: int}\n    body: {type: Linear, out_features: '${n}'}\n",
        "b.yaml",
    )
    write_spec_file(tmp_path, BASE, "base.yaml")
    child = write_spec_file(
        tmp_path,
        "netspec: 1\nextends: base.yaml\nimports: [lib/b.yaml]\nmodel:\n  layers:\n    extra: {type: Unit, n: 5}\n",
        "child.yaml",
    )
    spec = netspec.read(child)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "merged.yaml").write_text(spec.to_yaml(), encoding="utf-8")
    again = netspec.read(elsewhere / "merged.yaml")
    assert again.to_dict() == spec.to_dict()
    assert again.fingerprint == spec.fingerprint
    a, b = netspec.build(spec).model, netspec.build(again).model
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert "Unit" in again.to_dict()["blocks"]


# -- imports ----------------------------------------------------------------------------------------------

LIB = """\
netspec: 1
blocks:
  Head:
    params: {n: int}
    body: {type: Linear, out_features: "${n}"}
"""


def test_imported_blocks_are_usable_and_located_in_the_library(tmp_path: Path) -> None:
    lib = write_spec_file(tmp_path, LIB.replace('"${n}"', '"${n}", bais: false'), "lib.yaml")
    spec = write_spec_file(
        tmp_path,
        "netspec: 1\nimports: [lib.yaml]\ninput: {shape: [4]}\nmodel: {type: Head, n: 2}\n",
    )
    err = _read_error(spec)
    assert_problem(err, file=lib, line=5, path="blocks.Head.body.bais", words=("bias",))


def test_block_defined_twice_names_both_files(tmp_path: Path) -> None:
    write_spec_file(tmp_path, LIB, "a.yaml")
    write_spec_file(tmp_path, "# library b\n# (two lines down)\n" + LIB, "b.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nimports: [a.yaml, b.yaml]\nmodel: {type: Head, n: 2}\n")
    err = _read_error(spec)
    shown = assert_problem(err, file=tmp_path / "b.yaml", line=5, path="blocks.Head")
    assert f"{tmp_path / 'a.yaml'}:3" in shown and f"{tmp_path / 'b.yaml'}:5" in shown


def test_block_defined_in_the_spec_and_an_import_is_an_error(tmp_path: Path) -> None:
    write_spec_file(tmp_path, LIB, "a.yaml")
    spec = write_spec_file(
        tmp_path, "netspec: 1\nimports: a.yaml\nmodel: {type: Head, n: 2}\nblocks:\n  Head: {body: Identity}\n"
    )
    err = _read_error(spec)
    shown = assert_problem(err, file=tmp_path / "a.yaml", line=3, path="blocks.Head")
    assert f"{spec}:5" in shown


def test_same_library_through_base_and_child_is_fine(tmp_path: Path) -> None:
    write_spec_file(tmp_path, LIB, "lib.yaml")
    write_spec_file(
        tmp_path, "netspec: 1\nimports: [lib.yaml]\ninput: {shape: [4]}\nmodel: {type: Head, n: 2}\n", "base.yaml"
    )
    child = write_spec_file(
        tmp_path, "netspec: 1\nextends: base.yaml\nimports: [lib.yaml]\nmodel: {n: 3}\n", "child.yaml"
    )
    model = netspec.build(child).model
    assert isinstance(model, torch.nn.Linear) and model.out_features == 3


def test_imported_file_brings_blocks_only(tmp_path: Path) -> None:
    lib = write_spec_file(tmp_path, LIB + "model: Identity\n", "lib.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nimports: [lib.yaml]\nmodel: {type: Head, n: 2}\n")
    err = _read_error(spec)
    assert_problem(err, file=lib, line=6, path="model", words=("blocks only", "extends"))


# -- merge markers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("child", "line", "path", "words"),
    [
        (
            "model:\n  layers:\n    dropuot: {_remove_: true}\n",
            5,
            "model.layers.dropuot",
            ("no key 'dropuot'", "dropout"),
        ),
        ("model:\n  layers:\n    dropout: {_remove_: false}\n", 5, "model.layers.dropout._remove_", ("must be true",)),
        ("model:\n  layers:\n    dropout: {_remove_: true, p: 1}\n", 5, "model.layers.dropout.p", ("cannot also set",)),
        ("optimzer: {_replace_: true, type: Adam}\n", 3, "optimzer._replace_", ("no key 'optimzer'", "optimizer")),
        ("optimizer: {_replace_: yes, type: Adam}\n", 3, "optimizer._replace_", ("true or false",)),
        ("freeze: [{_replace_: true}]\n", 3, "freeze.0._replace_", ("inside a list",)),
    ],
)
def test_bad_markers(tmp_path: Path, child: str, line: int, path: str, words: tuple[str, ...]) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\n" + child, "child.yaml")
    assert_problem(_read_error(spec), file=spec, line=line, path=path, words=words)


def test_markers_without_extends_are_errors(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, BASE.replace("optimizer: {", "optimizer: {_replace_: true, "))
    assert_problem(_read_error(spec), file=spec, line=13, path="optimizer._replace_", words=("extends no other",))


# -- path rules -------------------------------------------------------------------------------------------


def test_absolute_path_is_refused(tmp_path: Path) -> None:
    base = write_spec_file(tmp_path, BASE, "base.yaml")
    spec = write_spec_file(tmp_path, f"netspec: 1\nextends: {base}\n", "child.yaml")
    assert_problem(_read_error(spec), file=spec, line=2, path="extends", words=("absolute path",))


def test_dotdot_leading_out_is_refused_and_search_path_allows_it(tmp_path: Path) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    (tmp_path / "variants").mkdir()
    spec = write_spec_file(tmp_path / "variants", "netspec: 1\nextends: ../base.yaml\n", "v.yaml")
    shown = assert_problem(
        _read_error(spec), file=spec, line=2, path="extends", words=("leads out of the search path",)
    )
    assert "--search-path" in shown
    assert netspec.read(spec, search_path=[tmp_path]).to_dict()["name"] == "base"


def test_dotdot_staying_inside_is_fine(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write_spec_file(tmp_path / "b", BASE, "base.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nextends: a/../b/base.yaml\n", "top.yaml")
    assert netspec.read(spec).to_dict()["name"] == "base"


def test_symlink_leading_out_is_refused_inside_is_fine(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    inside = tmp_path / "repo"
    outside.mkdir()
    inside.mkdir()
    write_spec_file(outside, BASE, "base.yaml")
    write_spec_file(inside, BASE, "real.yaml")
    os.symlink(outside / "base.yaml", inside / "base.yaml")
    os.symlink(inside / "real.yaml", inside / "alias.yaml")
    spec = write_spec_file(inside, "netspec: 1\nextends: base.yaml\n", "child.yaml")
    assert_problem(_read_error(spec), file=spec, line=2, path="extends", words=("symlink leading out",))
    ok = write_spec_file(inside, "netspec: 1\nextends: alias.yaml\n", "ok.yaml")
    assert netspec.read(ok).to_dict()["name"] == "base"


def test_non_regular_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "folder.yaml").mkdir()
    os.mkfifo(tmp_path / "pipe.yaml")  # opening it would block: must be refused before reading
    spec = write_spec_file(tmp_path, "netspec: 1\nextends: [folder.yaml, pipe.yaml]\n", "child.yaml")
    err = _read_error(spec)
    assert len(err.problems) == 2  # both reported together
    assert_problem(err, file=spec, line=2, path="extends.0", words=("is a folder",))
    assert_problem(err, file=spec, line=2, path="extends.1", words=("not a regular file",))


def test_missing_file_suggests_a_close_name(tmp_path: Path) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nextends:\n  - bsae.yaml\n", "child.yaml")
    assert_problem(_read_error(spec), file=spec, line=3, path="extends.0", words=("not found", "base.yaml"))


def test_cycle_names_the_chain_of_files(tmp_path: Path) -> None:
    a = write_spec_file(tmp_path, "netspec: 1\nextends: b.yaml\n", "a.yaml")
    b = write_spec_file(tmp_path, "netspec: 1\n\nextends: c.yaml\n", "b.yaml")
    write_spec_file(tmp_path, "netspec: 1\nextends: a.yaml\n", "c.yaml")
    shown = assert_problem(_read_error(a), file=tmp_path / "c.yaml", line=2, path="extends", words=("cycle",))
    assert f"{a} -> {b} -> {tmp_path / 'c.yaml'} -> {a}" in shown


def test_import_cycle_is_reported(tmp_path: Path) -> None:
    write_spec_file(tmp_path, LIB + "imports: [b.yaml]\n", "a.yaml")
    write_spec_file(tmp_path, "netspec: 1\nimports: [a.yaml]\n", "b.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nimports: [a.yaml]\nmodel: {type: Head, n: 2}\n")
    shown = assert_problem(_read_error(spec), file=tmp_path / "b.yaml", line=2, path="imports.0", words=("cycle",))
    assert "b.yaml -> " in shown


@pytest.mark.parametrize("value", ["3", "''", "[base.yaml, {a: 1}]"])
def test_extends_must_name_files(tmp_path: Path, value: str) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    spec = write_spec_file(tmp_path, f"netspec: 1\nextends: {value}\n", "child.yaml")
    assert_problem(_read_error(spec), file=spec, line=2, path="extends*", words=("takes a file path",))


def test_broken_base_file_is_reported_in_the_base(tmp_path: Path) -> None:
    base = write_spec_file(tmp_path, "netspec: 1\nmodel: {type: Linear\n", "base.yaml")
    spec = write_spec_file(tmp_path, "netspec: 1\nextends: base.yaml\n", "child.yaml")
    err = _read_error(spec)
    assert err.problems[0].location is not None and err.problems[0].location.file == str(base)


def test_dict_spec_extends_relative_to_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_spec_file(tmp_path, BASE, "base.yaml")
    monkeypatch.chdir(tmp_path)
    spec = netspec.read({"netspec": 1, "extends": "base.yaml", "vars": {"width": 4}})
    assert spec.to_dict()["vars"] == {"width": 4, "classes": 10}


@pytest.mark.parametrize(
    ("patch", "words"),
    [
        ({"extends": "base.yaml"}, "model: 'extends' is not allowed in a checkpoint's spec"),
        ({"imports": ["lib.yaml"]}, "'imports' is not allowed in a checkpoint's spec"),
        ({"init": [{"from": "other.pt"}]}, "init.0.from: init: from: is not allowed in a checkpoint's spec"),
    ],
)
def test_embedded_checkpoint_spec_refuses_other_files(tmp_path: Path, patch: dict[str, object], words: str) -> None:
    path = tmp_path / "run.pt"
    netspec.save(netspec.build({"netspec": 1, "model": {"type": "Linear", "in_features": 2, "out_features": 2}}), path)
    payload = torch.load(path, weights_only=True)
    payload["spec"].update(patch)
    torch.save(payload, path)
    with pytest.raises(SpecError) as info:
        netspec.load(path)
    text = str(info.value)
    assert words.removeprefix("model: ") in text and f"embedded in {path}" in text


def test_init_from_in_a_base_is_relative_to_the_base(tmp_path: Path) -> None:
    sub = tmp_path / "base"
    sub.mkdir()
    donor = torch.nn.Linear(4, 8)
    torch.save({"fc1." + k: v for k, v in donor.state_dict().items()}, sub / "w.pt")
    write_spec_file(sub, BASE + "init: [{from: w.pt, match: 'fc1.*'}]\n", "base.yaml")
    child = write_spec_file(tmp_path, "netspec: 1\nextends: base/base.yaml\n", "child.yaml")
    spec = netspec.read(child)
    assert spec.to_dict()["init"][0]["from"] == os.path.join("base", "w.pt")  # relative to the merged spec
    assert torch.equal(netspec.build(spec).model.fc1.weight, donor.weight)


def test_init_from_must_stay_inside_the_search_path(tmp_path: Path) -> None:
    repo, weights = tmp_path / "repo", tmp_path / "weights"
    repo.mkdir()
    weights.mkdir()
    torch.save({"fc1." + k: v for k, v in torch.nn.Linear(4, 8).state_dict().items()}, weights / "w.pt")
    spec = write_spec_file(repo, BASE + "init: [{from: ../weights/w.pt, match: 'fc1.*'}]\n")
    err = _read_error(spec)
    assert_problem(err, file=spec, line=15, path="init.0.from", words=("outside the search path", "--search-path"))
    os.symlink(weights / "w.pt", repo / "link.pt")
    linked = write_spec_file(repo, BASE + "init: [{from: link.pt}]\n", "linked.yaml")
    assert_problem(_read_error(linked), file=linked, line=15, path="init.0.from", words=("symlink leading out",))
    # Nothing was read to decide: the check is by name. With the folder on the search path it loads.
    assert netspec.read(spec, search_path=[repo, weights]).to_dict()["init"][0]["from"] == "../weights/w.pt"


def test_search_path_entries_must_be_folders(tmp_path: Path) -> None:
    spec = write_spec_file(tmp_path, BASE)
    with pytest.raises(SpecError, match=r"search path entry .*nowhere is not a folder"):
        netspec.read(spec, search_path=[tmp_path / "nowhere"])
