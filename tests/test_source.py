"""Stage 1 (netspec.source): text -> plain data with positions, and everything it must refuse."""

from __future__ import annotations

import json
import math
import time
from enum import Enum, IntEnum
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netspec.errors import Location, Problem, SpecError
from netspec.frontend.positions import to_plain
from netspec.frontend.source import (
    DEFAULT_LIMITS,
    Limits,
    Source,
    apply_overrides,
    from_data,
    load_file,
    load_text,
    parse_scalar,
)

LENET = """\
# LeNet-ish
vars:
  width: 6
model:
  name: lenet
  layers:
    - conv2d: {in_channels: 1, out_channels: 6}
    - relu
    - linear:
        in_features: 120
"""


def file_error(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_file(path)
    return info.value


def rejects(text: str, filename: str = "spec.yaml", **kwargs: object) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_text(text, filename, **kwargs)  # type: ignore[arg-type]
    return info.value


def only(err: SpecError) -> Problem:
    assert len(err.problems) == 1, err
    return err.problems[0]


def at(problem: Problem) -> tuple[int, int]:
    assert problem.location is not None
    return problem.location.line, problem.location.column


# --- positions -------------------------------------------------------------------------------------------


def test_yaml_positions_point_at_keys_and_items() -> None:
    src = load_text(LENET, "lenet.yaml")
    pos = src.positions
    assert pos[()] == Location("lenet.yaml", 2, 1)  # the document starts at its first token
    assert pos[("vars",)] == Location("lenet.yaml", 2, 1)
    assert pos[("vars", "width")] == Location("lenet.yaml", 3, 3)
    assert pos[("model", "layers")] == Location("lenet.yaml", 6, 3)
    assert pos[("model", "layers", 0)] == Location("lenet.yaml", 7, 7)
    assert pos[("model", "layers", 0, "conv2d", "in_channels")] == Location("lenet.yaml", 7, 16)
    assert pos[("model", "layers", 0, "conv2d", "out_channels")] == Location("lenet.yaml", 7, 32)
    assert pos[("model", "layers", 1)] == Location("lenet.yaml", 8, 7)
    assert pos[("model", "layers", 2, "linear", "in_features")] == Location("lenet.yaml", 10, 9)
    assert src.data["model"]["layers"][0] == {"conv2d": {"in_channels": 1, "out_channels": 6}}


def test_json_positions_match_yaml_conventions() -> None:
    text = '{"model": {\n  "layers": [\n    {"in": 1},\n    "relu"\n  ]\n}}'
    src = load_text(text, "m.json")
    assert src.positions[()] == Location("m.json", 1, 1)
    assert src.positions[("model",)] == Location("m.json", 1, 2)
    assert src.positions[("model", "layers")] == Location("m.json", 2, 3)
    assert src.positions[("model", "layers", 0)] == Location("m.json", 3, 5)
    assert src.positions[("model", "layers", 0, "in")] == Location("m.json", 3, 6)
    assert src.positions[("model", "layers", 1)] == Location("m.json", 4, 5)


def test_json_and_yaml_agree_on_positions_of_a_large_document() -> None:
    data = {"layers": [{"type": "conv", "k": [3, 3], "lr": 1e-3, "n": i} for i in range(300)]}
    text = json.dumps(data, indent=2)
    as_json, as_yaml = load_text(text, "a.json"), load_text(text, "a.yaml")
    assert as_json.data == as_yaml.data == data
    assert as_json.positions.keys() == as_yaml.positions.keys()
    for path, loc in as_json.positions.items():
        assert (loc.line, loc.column) == (as_yaml.positions[path].line, as_yaml.positions[path].column)


def test_columns_count_characters_not_bytes() -> None:
    src = load_text("name: 'é'\nlayers: [é, x]\n")
    assert src.positions[("layers", 1)].column == 13


def test_locate_falls_back_to_the_longest_located_prefix() -> None:
    src = load_text(LENET, "lenet.yaml")
    assert src.locate(("model", "layers", 1, "no", "such")) == Location("lenet.yaml", 8, 7)
    assert src.locate(()) == Location("lenet.yaml", 2, 1)


def test_problem_quotes_the_source_line_and_carries_the_location() -> None:
    src = load_text(LENET, "lenet.yaml")
    problem = src.problem(("model", "layers", 0, "conv2d", "out_channels"), "must be 16", hint="try 16")
    assert problem.location == Location("lenet.yaml", 7, 32)
    assert problem.source_line == "    - conv2d: {in_channels: 1, out_channels: 6}"
    assert problem.severity == "error"
    assert "lenet.yaml:7:32: model.layers.0.conv2d.out_channels: must be 16" in problem.format()
    assert src.problem(("vars",), "unused", warning=True).severity == "warning"


def test_line_text_is_one_based() -> None:
    src = load_text("a: 1\r\nb: 2\n")
    assert src.line_text(1) == "a: 1"
    assert src.line_text(2) == "b: 2"
    assert src.line_text(0) is None
    assert src.line_text(99) is None


def test_a_huge_line_is_not_quoted_whole() -> None:
    text = '{"a": [' + ", ".join(["1"] * 5000) + ", NaN]}"
    problem = only(rejects(text, "min.json"))
    assert problem.source_line is None or len(problem.source_line) < 300


# --- YAML 1.2 core schema -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1e-3", 0.001),
        ("1.0e-4", 0.0001),
        ("-2.5", -2.5),
        (".5", 0.5),
        ("1.", 1.0),
        ("0x1F", 31),
        ("0o17", 15),
        ("+12", 12),
        ("007", 7),
        ("yes", "yes"),
        ("no", "no"),
        ("on", "on"),
        ("off", "off"),
        ("y", "y"),
        ("true", True),
        ("False", False),
        ("TRUE", True),
        ("~", None),
        ("null", None),
        ("NULL", None),
        ("", None),
        ("2001-12-14", "2001-12-14"),
        ("1_000", "1_000"),
        ("0b101", "0b101"),
        ("inf", "inf"),
        ("relu", "relu"),
    ],
)
def test_plain_scalars_follow_yaml_1_2(text: str, expected: object) -> None:
    value = load_text(f"v: {text}\n").data["v"]
    assert value == expected and type(value) is type(expected)
    assert parse_scalar(text) == expected and type(parse_scalar(text)) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'1e-3'", "1e-3"),
        ('"true"', "true"),
        ("!!str 1", "1"),
        ('!!int "3"', 3),
        ("!!int 0x10", 16),
        ("!!float 3", 3.0),
        ("!!bool false", False),
        ("!!null ''", None),
        ("! 12", "12"),
        ("|\n  12\n", "12\n"),
    ],
)
def test_quoted_block_and_tagged_scalars(text: str, expected: object) -> None:
    value = load_text(f"v: {text}\n").data["v"]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("text", [".inf", "-.Inf", "+.INF", ".nan", ".NaN", "!!float .inf"])
def test_inf_and_nan_are_rejected(text: str) -> None:
    problem = only(rejects(f"lr: 1\nx: {text}\n"))
    assert "JSON cannot hold inf/nan" in problem.message
    assert "write the string 'inf'" in problem.message
    assert problem.path == ("x",)
    assert at(problem) == (2, 4)


def test_parse_scalar_rejects_inf() -> None:
    with pytest.raises(SpecError, match="inf/nan"):
        parse_scalar(".inf")


def test_float_overflow_is_rejected() -> None:
    assert "out of range" in only(rejects("x: 1e999\n")).message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("!!int x", "'x' is not a valid !!int"),
        ("!!bool yes", "'yes' is not a valid !!bool"),
        ("!!float abc", "not a valid !!float"),
        ("!!null 0", "not a valid !!null"),
        ("!!map 1", "!!map cannot tag a scalar"),
        ("!!str [1]", "!!str cannot tag a list"),
        ("!!seq {a: 1}", "!!seq cannot tag a mapping"),
    ],
)
def test_invalid_explicit_tags(text: str, message: str) -> None:
    problem = only(rejects(f"x: {text}\n"))
    assert message in problem.message
    assert at(problem) == (1, 4)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("!!python/object/apply:os.system ['echo pwned']", "!!python/object/apply:os.system"),
        ("!!python/object:collections.OrderedDict {}", "!!python/object:collections.OrderedDict"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!set {a, b}", "!!set"),
        ("!!timestamp 2001-12-14", "!!timestamp"),
        ("!!omap [a: 1]", "!!omap"),
        ("!custom 1", "!custom"),
    ],
)
def test_non_plain_tags_are_refused(text: str, shown: str) -> None:
    problem = only(rejects(f"ok: 1\nx: {text}\n"))
    assert shown in problem.message
    assert "netspec reads plain YAML only" in problem.message
    assert at(problem) == (2, 4)


# --- YAML structure -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "kind"), [("1", "int"), ("true", "boolean"), ("null", "null"), ("~", "null"), ("1.5", "float")]
)
def test_non_string_keys_are_refused(key: str, kind: str) -> None:
    problem = only(rejects(f"model:\n  {key}: x\n"))
    assert f"mapping keys must be strings, not {kind}" in problem.message
    assert problem.hint is not None and "quote" in problem.hint
    assert at(problem) == (2, 3)
    assert load_text(f"model:\n  '{key}': x\n").data == {"model": {key: "x"}}


def test_collection_keys_are_refused() -> None:
    problem = only(rejects("a: 1\n? [x, y]\n: 2\n"))
    assert "mapping keys must be strings, not a list" in problem.message
    assert at(problem)[0] == 2


def test_merge_keys_are_refused() -> None:
    problem = only(rejects("base: &b {width: 4}\nlayer:\n  <<: *b\n  depth: 2\n"))
    assert "merge keys" in problem.message
    assert problem.hint is not None and "vars" in problem.hint
    assert at(problem) == (3, 3)


def test_every_duplicate_key_is_reported() -> None:
    err = rejects("a: 1\nb:\n  c: 1\n  c: 2\na: 3\n")
    assert len(err.problems) == 2
    inner, outer = err.problems
    assert inner.message == "duplicate key 'c' (first at line 3)"
    assert inner.path == ("b", "c") and at(inner) == (4, 3)
    assert outer.message == "duplicate key 'a' (first at line 1)"
    assert outer.path == ("a",) and at(outer) == (5, 1)
    assert "2 problems in spec" in str(err)


def test_independent_problems_are_reported_together() -> None:
    err = rejects("a: .nan\n1: x\nc: !!binary eA==\n")
    assert [p.location.line for p in err.problems if p.location] == [1, 2, 3]


def test_second_document_is_refused() -> None:
    problem = only(rejects("a: 1\n---\nb: 2\n"))
    assert "exactly one YAML document" in problem.message
    assert at(problem) == (2, 1)


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_yaml_is_refused(text: str) -> None:
    assert "empty spec" in only(rejects(text)).message


def test_any_top_level_value_loads() -> None:
    # The CLI reads --set input.shape=[3,64,64] through load_text; later stages judge the top level.
    assert load_text("[3, 64, 64]", "--set input.shape").data == [3, 64, 64]
    assert load_text("~\n").data is None
    assert load_text("[1]", "x.json").data == [1]


def test_syntax_errors_carry_the_parser_position() -> None:
    problem = only(rejects("model:\n  layers: [1, 2\n  name: x\n"))
    assert problem.location is not None and problem.location.file == "spec.yaml"
    assert problem.location.line >= 2
    problem = only(rejects("a: b: c\n"))
    assert "mapping values are not allowed" in problem.message
    assert at(problem) == (1, 5)


def test_tab_indentation_gets_a_hint() -> None:
    problem = only(rejects("model:\n\tname: x\n"))
    assert problem.hint is not None and "tabs" in problem.hint
    assert at(problem)[0] == 2


def test_control_characters_are_refused_with_a_position() -> None:
    problem = only(rejects("a: 1\nb: \x01\n"))
    assert "characters are not allowed" in problem.message
    assert at(problem)[0] == 2


def test_anchors_and_aliases_work() -> None:
    src = load_text("base: &b {width: 4}\nother: *b\nlist: [&x 1, *x]\n")
    assert src.data == {"base": {"width": 4}, "other": {"width": 4}, "list": [1, 1]}


def test_unknown_and_recursive_aliases_are_refused() -> None:
    assert "unknown alias *nope" in only(rejects("a: *nope\n")).message
    assert "contains it" in only(rejects("a: &r [1, *r]\n")).message


def test_too_many_aliases() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 11) + "]\n"
    assert "more than 10 aliases" in only(rejects(text, limits=Limits(max_aliases=10))).message
    assert len(load_text(text, limits=Limits(max_aliases=11)).data["b"]) == 11


def billion_laughs() -> str:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_without_expanding() -> None:
    start = time.perf_counter()
    problem = only(rejects(billion_laughs()))
    assert time.perf_counter() - start < 5  # generous: the point is that nothing is materialised
    assert "alias bomb" in problem.message
    assert f"more than {DEFAULT_LIMITS.max_nodes} values" in problem.message


def test_node_limit_counts_alias_expansion() -> None:
    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    assert "alias bomb" in only(rejects(text, limits=Limits(max_nodes=12))).message
    assert load_text(text, limits=Limits(max_nodes=20)).data["b"] == [[1, 2, 3]] * 3


@pytest.mark.parametrize(("filename", "opener"), [("deep.yaml", "["), ("deep.json", "["), ("deep.yaml", "{a: ")])
def test_pathological_nesting_fails_cleanly(filename: str, opener: str) -> None:
    start = time.perf_counter()
    problem = only(rejects(opener * 100_000, filename))
    assert time.perf_counter() - start < 5
    assert "max nesting depth" in problem.message
    assert problem.location is not None and problem.location.line == 1


def test_nesting_limit_is_exact() -> None:
    limits = Limits(max_depth=3)
    assert load_text("a: {b: {c: 1}}", limits=limits).data == {"a": {"b": {"c": 1}}}
    assert "nested more than 3" in only(rejects("a: {b: {c: [1]}}", limits=limits)).message
    assert load_text('{"a": {"b": [1]}}', "x.json", limits=limits).data == {"a": {"b": [1]}}
    assert "nested more than 3" in only(rejects('{"a": {"b": [[1]]}}', "x.json", limits=limits)).message


def test_text_size_limit() -> None:
    err = rejects("a: 1234567890\n", "big.yaml", limits=Limits(max_bytes=8))
    assert "big.yaml is larger than the limit of 8 bytes" in str(err)
    assert load_text("a: 1\n", limits=Limits(max_bytes=8)).data == {"a": 1}


# --- JSON -----------------------------------------------------------------------------------------------


def test_json_values() -> None:
    src = load_text('{"i": 3, "f": 3.0, "e": 1e-3, "n": -0, "s": "a\\n\\u00e9\\"", "b": [true, false, null]}', "x.json")
    assert src.data == {"i": 3, "f": 3.0, "e": 0.001, "n": 0, "s": 'a\né"', "b": [True, False, None]}
    assert type(src.data["i"]) is int and type(src.data["f"]) is float


def test_json_format_is_chosen_by_extension_or_argument() -> None:
    assert "expected a value" in only(rejects("a: 1", "spec.json")).message
    assert load_text("a: 1", "spec.txt").data == {"a": 1}
    assert load_text('{"a": 1}', "spec", fmt="json").data == {"a": 1}


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        ('{"a": 1,}', "trailing comma before '}'", (1, 8)),
        ('{"a": [1, 2,]}', "trailing comma before ']'", (1, 12)),
        ("{'a': 1}", "expected a key in double quotes", (1, 2)),
        ('{"a": 1} // note', "after the JSON document", (1, 10)),
        ('{\n  "a": 01\n}', "expected a value, got '01'", (2, 8)),
        ('{"a": 1 "b": 2}', "expected ',' or '}'", (1, 9)),
        ('{"a" 1}', "expected ':' after key", (1, 2)),
        ('{"a": [1, 2}', "expected ',' or ']'", (1, 12)),
        ('{"a": tru}', "expected a value, got 'tru'", (1, 7)),
        ('{"a": "x\ny"}', "expected a value", (1, 7)),
        ('{"a": "\\x"}', "expected a value", (1, 7)),
        ('{"a": 1', "unexpected end of JSON input", (1, 8)),
        ('{\n"a": 1e999}', "out of range", (2, 6)),
    ],
)
def test_json_is_strict(text: str, message: str, where: tuple[int, int]) -> None:
    problem = only(rejects(text, "spec.json"))
    assert message in problem.message
    assert at(problem) == where
    assert problem.location is not None and problem.location.file == "spec.json"


def test_json_comments_and_quotes_get_hints() -> None:
    assert "comments" in (only(rejects('// hi\n{"a": 1}', "x.json")).hint or "")
    assert "double quotes" in (only(rejects("{'a': 1}", "x.json")).hint or "")


def test_json_non_finite_numbers_are_refused() -> None:
    err = rejects('{"a": NaN,\n "b": -Infinity, "c": Infinity}', "x.json")
    assert [p.path for p in err.problems] == [("a",), ("b",), ("c",)]
    assert all("JSON cannot hold inf/nan" in p.message for p in err.problems)
    assert at(err.problems[1]) == (2, 7)


def test_json_duplicate_keys_are_refused() -> None:
    err = rejects('{"a": 1,\n "b": {"c": 1, "c": 2},\n "a": 3}', "x.json")
    assert [p.message for p in err.problems] == [
        "duplicate key 'c' (first at line 2)",
        "duplicate key 'a' (first at line 1)",
    ]
    assert at(err.problems[1]) == (3, 2)


@pytest.mark.parametrize("text", ["", "  \n\t"])
def test_empty_json_is_refused(text: str) -> None:
    assert "empty spec" in only(rejects(text, "x.json")).message


# --- files ----------------------------------------------------------------------------------------------


def test_load_file_yaml_and_json(tmp_path: Path) -> None:
    (tmp_path / "a.yml").write_text("a: 1\n", encoding="utf-8")
    (tmp_path / "b.json").write_text('{"b": [1]}', encoding="utf-8")
    src = load_file(tmp_path / "a.yml")
    assert src.data == {"a": 1} and src.filename == str(tmp_path / "a.yml") and src.text == "a: 1\n"
    assert load_file(str(tmp_path / "b.json")).positions[("b", 0)].column == 8


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "lenet.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    err = file_error(path)
    assert f"{path}:2:1: a: duplicate key 'a'" in str(err)


def test_bad_extension(tmp_path: Path) -> None:
    path = tmp_path / "spec.yamll"
    path.write_text("a: 1\n", encoding="utf-8")
    problem = only(file_error(path))
    assert str(path) in problem.message and ".yaml, .yml or .json" in problem.message
    assert problem.hint is not None and "'.yaml'" in problem.hint
    with pytest.raises(SpecError, match=r"spec\.txt"):
        load_file(tmp_path / "spec.txt")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(SpecError, match="not found") as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_spec(tmp_path: Path) -> None:
    folder = tmp_path / "dir.yaml"
    folder.mkdir()
    with pytest.raises(SpecError, match=r"dir\.yaml"):
        load_file(folder)


def test_file_too_big_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("a: " + "1" * 100 + "\n", encoding="utf-8")
    with pytest.raises(SpecError, match="larger than the limit of 50 bytes") as info:
        load_file(path, limits=Limits(max_bytes=50))
    assert str(path) in str(info.value)


def test_bad_utf8_reports_the_byte_offset(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"a: 1\nb: caf\xe9\n")
    problem = only(file_error(path))
    assert "invalid UTF-8 at byte offset 11" in problem.message
    assert problem.location == Location(str(path), 2, 7)
    assert str(path) in problem.format()


def test_bad_utf8_offset_counts_the_bom(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b'\xef\xbb\xbf{"a":\n "\xff"}')
    problem = only(file_error(path))
    assert "byte offset 11" in problem.message
    assert problem.location == Location(str(path), 2, 3)


def test_utf8_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b'\xef\xbb\xbf{"a": "\xc3\xa9"}')
    src = load_file(path)
    assert src.data == {"a": "é"}
    assert src.positions[("a",)] == Location(str(path), 1, 2)
    assert load_text("\ufeffa: 1\n").positions[("a",)].column == 1


# --- from_data ------------------------------------------------------------------------------------------


class Color(str, Enum):
    RED = "red"


class IntKind(IntEnum):
    TWO = 2


def test_from_data_copies_into_plain_containers() -> None:
    original = {"model": {"layers": ({"k": (3, 3)}, "relu"), "act": Color.RED}, "x": 1.5}
    src = from_data(original)
    assert src.data == {"model": {"layers": [{"k": [3, 3]}, "relu"], "act": "red"}, "x": 1.5}
    assert type(src.data["model"]["act"]) is str
    src.data["model"]["layers"][0]["k"][0] = 5
    assert original["model"]["layers"][0]["k"] == (3, 3)  # type: ignore[index]
    assert src.filename == "<dict>" and src.text is None and src.positions == {}
    assert src.locate(("model",)) is None
    assert src.problem(("model",), "bad").location is None


def test_from_data_rejects_what_json_cannot_hold() -> None:
    with pytest.raises(SpecError) as info:
        from_data({"a": {"b": [1, object()]}, "c": math.nan, "d": {1: "x"}, "e": {1, 2}})
    problems = {p.path: p.message for p in info.value.problems}
    assert "cannot hold a object value" in problems[("a", "b", 1)]
    assert "JSON cannot hold inf/nan" in problems[("c",)]
    assert "mapping keys must be strings" in problems[("d",)]
    assert "cannot hold a set value" in problems[("e",)]


def _reference_plain(value: object, depth: int, limits: Limits) -> object:
    """What to_plain must make of ``value`` (ValueError: what it must refuse), written independently."""
    if value is None or type(value) is bool:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        if int(value).bit_length() > 3322:
            raise ValueError("integer too large")
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("not finite")
        return float(value)
    if isinstance(value, (dict, list, tuple)):
        if depth > limits.max_depth:
            raise ValueError("too deep")
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise ValueError("key")
            return {k: _reference_plain(v, depth + 1, limits) for k, v in value.items()}
        return [_reference_plain(v, depth + 1, limits) for v in value]
    raise ValueError("not plain")


def _same_plain(a: object, b: object) -> bool:
    """Equal, and of the same exact types all the way down (1 is not 1.0 is not True)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same_plain(a[k], b[k]) for k in a)  # type: ignore[index]
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_plain(x, y) for x, y in zip(a, b, strict=True))  # type: ignore[arg-type]
    return a == b


_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**3320, max_value=2**3324),  # around the integer limit
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
    st.just(Color.RED),  # a str subclass: becomes a plain str
    st.just(IntKind.TWO),  # an int subclass: becomes a plain int
    st.just({1, 2}),  # a set: refused
)
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(st.text(max_size=3), inner, max_size=4),
        st.dictionaries(st.integers(0, 3), inner, min_size=1, max_size=2),  # non-str keys: refused
    ),
    max_leaves=25,
)


@settings(max_examples=200, derandomize=True, deadline=None, database=None)
@given(_DATA)
def test_to_plain_copies_exactly_what_json_can_hold(value: object) -> None:
    # Plain data is copied in one fast pass and everything else through the general walk: either way the
    # result is the same plain copy, or a SpecError.
    limits = Limits(max_depth=4)
    try:
        expected = _reference_plain(value, 1, limits)
    except ValueError:
        with pytest.raises(SpecError):
            to_plain(value, (), limits)
        return
    got = to_plain(value, (), limits)
    assert _same_plain(got, expected)
    if isinstance(value, (dict, list, tuple)):
        assert got is not value


def test_to_plain_at_its_limits() -> None:
    deep = Limits(max_depth=3)
    assert to_plain({"a": {"b": [1]}}, (), deep) == {"a": {"b": [1]}}  # three levels: allowed
    with pytest.raises(SpecError, match="nested more than 3 deep"):
        to_plain({"a": {"b": [[1]]}}, (), deep)
    few = Limits(max_nodes=5)
    assert to_plain({"a": list(range(10))}, (), few) == {"a": list(range(10))}  # the count stops at containers
    with pytest.raises(SpecError, match="too big"):
        to_plain([[0] * 10, [1]], (), few)
    assert to_plain([2**3322 - 1], (), DEFAULT_LIMITS) == [2**3322 - 1]
    with pytest.raises(SpecError, match="integer with 3,323 bits is too large"):
        to_plain({"n": [2**3322]}, (), DEFAULT_LIMITS)
    with pytest.raises(SpecError, match="JSON cannot hold inf/nan"):
        to_plain({"x": [1.0, math.inf]}, (), DEFAULT_LIMITS)


def test_from_data_refuses_cycles_and_non_mappings() -> None:
    loop: dict[str, object] = {}
    loop["self"] = loop
    with pytest.raises(SpecError, match="contain itself"):
        from_data(loop)
    with pytest.raises(SpecError, match="must be a mapping"):
        from_data([1, 2])  # type: ignore[arg-type]


# --- overrides ------------------------------------------------------------------------------------------


def test_override_sets_and_relocates() -> None:
    src = load_text(LENET, "lenet.yaml")
    src.with_override("vars.width", 128)
    assert src.data["vars"]["width"] == 128
    loc = src.positions[("vars", "width")]
    assert loc == Location("lenet.yaml (--set vars.width=128)", 1, 1)
    problem = src.problem(("vars", "width"), "too wide")
    assert problem.location == loc and problem.source_line is None
    assert src.positions[("vars",)] == Location("lenet.yaml", 2, 1)


def test_override_creates_missing_mappings() -> None:
    src = load_text("model: {}\nvars:\n")
    src.with_override("train.optim.lr", 0.1)
    src.with_override("vars.width", 4)
    assert src.data["train"] == {"optim": {"lr": 0.1}}
    assert src.data["vars"] == {"width": 4}
    assert src.positions[("train",)].file.startswith("<string> (--set train.optim.lr")


def test_override_indexes_lists_and_drops_stale_positions() -> None:
    src = load_text(LENET, "lenet.yaml")
    src.with_override("model.layers.0", {"pool": 2})
    assert src.data["model"]["layers"][0] == {"pool": 2}
    assert ("model", "layers", 0, "conv2d") not in src.positions
    assert ("model", "layers", 0, "conv2d", "in_channels") not in src.positions
    assert src.locate(("model", "layers", 0, "pool")) == src.positions[("model", "layers", 0)]
    src.with_override("model.layers.2.linear.in_features", 84)
    assert src.data["model"]["layers"][2]["linear"]["in_features"] == 84


def test_override_list_index_out_of_range() -> None:
    src = load_text(LENET, "lenet.yaml")
    with pytest.raises(SpecError, match="'3' is not an index of this list of 3 items") as info:
        src.with_override("model.layers.3.relu", 1)
    assert info.value.problems[0].location == Location("lenet.yaml", 6, 3)
    with pytest.raises(SpecError, match="not an index"):
        src.with_override("model.layers.first", 1)


def test_override_through_a_scalar_is_refused() -> None:
    src = load_text(LENET, "lenet.yaml")
    with pytest.raises(SpecError, match=r"'model\.name\.size'") as info:
        src.with_override("model.name.size", 3)
    problem = info.value.problems[0]
    assert "model.name is a string" in problem.message
    assert problem.location == Location("lenet.yaml", 5, 3)


@pytest.mark.parametrize("dotted", ["", "a..b", ".a", "a."])
def test_override_keys_need_segments(dotted: str) -> None:
    with pytest.raises(SpecError, match="empty segment"):
        load_text("a: {b: 1}\n").with_override(dotted, 1)


def test_override_does_not_leak_through_aliases() -> None:
    src = load_text("base: &b {width: 4}\nother: *b\n")
    src.with_override("other.width", 8)
    assert src.data == {"base": {"width": 4}, "other": {"width": 8}}


def test_override_values_must_be_json_like() -> None:
    with pytest.raises(SpecError, match="inf/nan"):
        load_text("a: 1\n").with_override("a", math.inf)


def test_apply_overrides_reports_every_bad_key() -> None:
    src = load_text(LENET, "lenet.yaml")
    with pytest.raises(SpecError) as info:
        apply_overrides(src, {"vars.width": parse_scalar("64"), "a..b": 1, "model.name.x": 1})
    assert len(info.value.problems) == 2
    assert src.data["vars"]["width"] == 64


def test_source_can_be_built_directly() -> None:
    src = Source({"a": 1}, "<test>", "a: 1\n", {("a",): Location("<test>", 1, 1)})
    assert src.problem(("a", "b"), "x").source_line == "a: 1"
