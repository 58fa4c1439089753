"""Hostile text bounded by what it expands to: an alias bomb of long strings is counted in characters,
and a ``--set`` key nested ten thousand levels deep fails fast — each with a SpecError at its place."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_fuzz import fuzz, only_netspec_errors

import netspec
from netspec.frontend.positions import DEFAULT_LIMITS, Limits
from netspec.frontend.source import from_data, load_text

SPEC = "netspec: 1\nmodel: ReLU\n"


def text_bomb(length: int, copies: int, rounds: int) -> str:
    """A string of ``length`` characters, aliased ``copies`` times in each of ``rounds`` levels."""
    lines = [f"s0: &s0 '{'x' * length}'"]
    for level in range(1, rounds + 1):
        lines.append(f"s{level}: &s{level} [{', '.join([f'*s{level - 1}'] * copies)}]")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_of_long_strings_is_refused_by_its_characters_at_the_alias() -> None:
    # 1 MB of text, aliased 16 times, then 16 times again: 256 MB of expanded text from a 1 MB file,
    # made of only 34 nodes and 32 aliases (far inside the node and alias limits).
    text = text_bomb(1 << 20, 16, 2)
    started = time.perf_counter()
    with pytest.raises(netspec.SpecError) as err:
        load_text(text, "bomb.yaml")
    assert time.perf_counter() - started < 5
    (problem,) = err.value.problems
    assert f"more than {DEFAULT_LIMITS.max_chars:,} characters of text (alias bomb?)" in problem.message
    assert problem.location is not None and (problem.location.file, problem.location.line) == ("bomb.yaml", 3)
    assert problem.path[0] == "s2"
    assert "counts the whole text" in (problem.hint or "")


def test_the_character_limit_counts_keys_strings_and_every_alias_use() -> None:
    text = "a: &a 'xxxxxxxxxx'\nb: [*a, *a, *a]\n"  # a, b: 2 key chars; 10 + 3 * 10 string chars = 42
    assert load_text(text, limits=Limits(max_chars=42)).data["b"] == ["xxxxxxxxxx"] * 3
    with pytest.raises(netspec.SpecError, match="more than 41 characters of text"):
        load_text(text, limits=Limits(max_chars=41))
    nested = "a: &a {k: 'xxxx'}\nb: [*a, *a]\n"  # an aliased mapping counts its keys and strings: 2 + 5 + 2*5
    assert load_text(nested, limits=Limits(max_chars=17)).data["b"] == [{"k": "xxxx"}] * 2
    with pytest.raises(netspec.SpecError, match="characters of text"):
        load_text(nested, limits=Limits(max_chars=16))


def test_a_long_string_used_a_few_times_is_fine() -> None:
    text = SPEC + "vars:\n  s0: &s0 '" + "x" * 100_000 + "'\n  s1: [" + ", ".join(["*s0"] * 10) + "]\n"
    spec = netspec.read(load_text(text).data)  # 1 MB of expanded text: an ordinary large spec
    assert spec.source.data["vars"]["s1"] == ["x" * 100_000] * 10


@fuzz(60)
@given(length=st.integers(0, 200), copies=st.integers(1, 6), rounds=st.integers(0, 4))
def test_fuzz_alias_text_either_fits_the_limit_or_is_refused(length: int, copies: int, rounds: int) -> None:
    limit = 2_000
    expanded = sum(len(f"s{level}") + length * copies**level for level in range(rounds + 1))  # keys + strings
    result = only_netspec_errors(load_text, text_bomb(length, copies, rounds), limits=Limits(max_chars=limit))
    if isinstance(result, netspec.SpecError):
        assert expanded > limit and "characters of text" in result.problems[0].message
    else:
        assert expanded <= limit


# -- --set keys -------------------------------------------------------------------------------------


def test_a_set_key_ten_thousand_levels_deep_fails_fast() -> None:
    key = ".".join(["a"] * 10_000)
    spec = {"netspec": 1, "model": "ReLU", "vars": {"a": {}}}
    for dotted in (key, f"optimizer.{key}", f"vars.{key}"):
        started = time.perf_counter()
        with pytest.raises(netspec.SpecError) as err:
            netspec.read(spec, {dotted: 1})
        assert time.perf_counter() - started < 1
        (problem,) = err.value.problems
        assert problem.message.startswith(f"override key '{dotted[:57]}...' is nested more than 128 levels")


def nested(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_set_key_at_the_nesting_limit_is_applied_and_its_value_shares_the_depth() -> None:
    spec = {"netspec": 1, "model": "ReLU", "vars": {"w": {}}}
    key = "vars.w." + ".".join(["a"] * 126)  # 128 segments: as deep as a spec may nest
    with pytest.raises(netspec.SpecError) as err:
        netspec.read(spec, {key: 1})
    (problem,) = err.value.problems  # applied: the vars' own depth limit speaks, at the var
    assert problem.path == ("vars", "w") and "nested 126 levels deep" in problem.message
    with pytest.raises(netspec.SpecError, match="is nested more than 128 levels deep"):
        netspec.read(spec, {key + ".a": 1})
    source = from_data(spec)
    source.with_override("vars.w." + ".".join(["a"] * 100), nested(26))  # 102 + 26 levels: fits
    with pytest.raises(netspec.SpecError, match="nested more than 26 deep"):
        source.with_override("vars.w." + ".".join(["a"] * 100), nested(27))


def test_cli_set_with_a_very_deep_key(cli: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC, encoding="utf-8")
    code, out, err = cli("validate", spec, "--set", ".".join(["a"] * 10_000) + "=1")
    assert out == ""
    assert code != 0
    assert "is nested more than 128 levels deep" in err
    assert len(err) < 2_000  # the key is shown cut, not ten thousand segments long


@fuzz(80)
@given(
    segments=st.lists(st.sampled_from(["a", "vars", "model", "0", "1", "", "optimizer", "lr", "layers"]), max_size=300),
    value=st.one_of(st.integers(), st.text(max_size=5), st.none(), st.lists(st.integers(), max_size=3)),
)
def test_fuzz_set_keys_answer_with_a_netspec_error_or_a_spec(segments: list[str], value: Any) -> None:
    spec = {"netspec": 1, "vars": {"a": 1}, "model": {"type": "Sequential", "layers": ["ReLU", "ReLU"]}}
    only_netspec_errors(netspec.read, spec, {".".join(segments) or "a": value})


def test_a_set_of_an_unknown_var_shows_a_long_key_cut() -> None:
    with pytest.raises(netspec.SpecError) as err:
        netspec.read({"netspec": 1, "model": "ReLU", "vars": {"w": 1}}, {"vars.x." + "a." * 1000 + "b": 1})
    (problem,) = err.value.problems
    assert problem.message.startswith("--set vars.x.a.a.") and problem.message.endswith("...: the spec has no var 'x'")
    assert len(problem.message) < 120
