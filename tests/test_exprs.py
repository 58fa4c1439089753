"""Tests for ``${...}`` substitution and the safe expression evaluator."""

from __future__ import annotations

import time
from typing import Any

import pytest

from netspec.errors import SpecPath
from netspec.frontend.exprs import (
    MAX_EXPR_CHARS,
    ExprError,
    evaluate,
    has_refs,
    names_used,
    resolve_vars,
    substitute,
    substitute_at,
)

SCOPE: dict[str, Any] = {
    "width": 64,
    "classes": 10,
    "c": 3,
    "flag": True,
    "off": False,
    "x": 1,
    "y": 2,
    "ratio": 0.5,
    "name": "conv",
    "xs": [10, 20, 30],
    "cfg": {"k": 5, "depth": 2},
    "nothing": None,
}


def raises(expr: str, scope: dict[str, Any] | None = None) -> ExprError:
    with pytest.raises(ExprError) as info:
        evaluate(expr, SCOPE if scope is None else scope)
    return info.value


# --- operators -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("7 + 2", 9),
        ("7 - 2", 5),
        ("7 * 2", 14),
        ("7 / 2", 3.5),
        ("8 / 2", 4.0),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("2 ** 3 ** 2", 512),
        ("-x", -1),
        ("+x", 1),
        ("not flag", False),
        ("not 0", True),
        ("1 == 1", True),
        ("1 != 1", False),
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("4 >= 4", True),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("flag and 5", 5),
        ("off and 5", False),
        ("0 or 'z'", "z"),
        ("x or y", 1),
        ("nothing or 7", 7),
        ("x if flag else y", 1),
        ("x if off else y", 2),
        ("(width + 1) * 2", 130),
        ("'ab' + 'cd'", "abcd"),
        ("'ab' * 2", "abab"),
        ("[0] * 3", [0, 0, 0]),
        ("xs + [40]", [10, 20, 30, 40]),
        ("True + 1", 2),
        ("1.5 * 2", 3.0),
    ],
)
def test_operators(expr: str, expected: Any) -> None:
    result = evaluate(expr, SCOPE)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("min(3, 1, 2)", 1),
        ("max(xs)", 30),
        ("round(2.6)", 3),
        ("round(2.567, 2)", 2.57),
        ("int('12')", 12),
        ("int(7.9)", 7),
        ("float(3)", 3.0),
        ("abs(-4)", 4),
        ("len(xs)", 3),
        ("len(name)", 4),
        ("bool(0)", False),
        ("str(12)", "12"),
        ("max(1, c // 4)", 1),
        ("min(max(width, 8), 32)", 32),
    ],
)
def test_functions(expr: str, expected: Any) -> None:
    result = evaluate(expr, SCOPE)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("42", 42),
        ("4.5", 4.5),
        ("'hi'", "hi"),
        ('"hi"', "hi"),
        ("True", True),
        ("None", None),
        ("[1, 2]", [1, 2]),
        ("(1, 2)", [1, 2]),
        ("[x, (y, 3)]", [1, [2, 3]]),
        ("xs[0]", 10),
        ("xs[-1]", 30),
        ("cfg['k']", 5),
        ('cfg["depth"] * 2', 4),
        ("name[0]", "c"),
        ("[[1, 2], [3]][0][1]", 2),
    ],
)
def test_literals_and_subscripts(expr: str, expected: Any) -> None:
    assert evaluate(expr, SCOPE) == expected


def test_whitespace_inside_expression_is_ignored() -> None:
    assert evaluate("  width  ", SCOPE) == 64


# --- substitution ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${classes}", 10),
        ("${ classes }", 10),
        ("${width * 2}", 128),
        ("${max(1, c // 4)}", 1),
        ("${x if flag else y}", 1),
        ("${ratio}", 0.5),
        ("${flag}", True),
        ("${nothing}", None),
        ("${xs}", [10, 20, 30]),
        ("${cfg}", {"k": 5, "depth": 2}),
        ("${name}", "conv"),
    ],
)
def test_whole_string_keeps_type(value: str, expected: Any) -> None:
    result = substitute(value, SCOPE)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("layer${x}", "layer1"),
        ("${width}x${width}", "64x64"),
        ("${name}_${x + y}", "conv_3"),
        ("ratio=${ratio}", "ratio=0.5"),
        ("flag=${flag}", "flag=True"),
        ("xs=${xs}", "xs=[10, 20, 30]"),
        (" ${x}", " 1"),
        ("plain text", "plain text"),
        ("$5 and {braces}", "$5 and {braces}"),
        ("${'}'}", "}"),
        ("<${cfg['k']}>", "<5>"),
    ],
)
def test_interpolation(value: str, expected: str) -> None:
    assert substitute(value, SCOPE) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$${x}", "${x}"),
        ("a$${x}b", "a${x}b"),
        ("$${x}${x}", "${x}1"),
        ("${x}$${x}", "1${x}"),
        ("$$${x}", "$${x}"),
        ("$$x", "$$x"),
    ],
)
def test_escapes(value: str, expected: str) -> None:
    assert substitute(value, SCOPE) == expected


def test_nested_structures_are_substituted_but_keys_are_not() -> None:
    value = {
        "${x}": "${width}",
        "layers": [{"out": "${classes}", "name": "fc${x}"}, "${xs[1]}", 7, None],
        "kernel": ["${c}", "${c}"],
        "flag": True,
    }
    assert substitute(value, SCOPE) == {
        "${x}": 64,
        "layers": [{"out": 10, "name": "fc1"}, 20, 7, None],
        "kernel": [3, 3],
        "flag": True,
    }
    assert value["layers"][0]["out"] == "${classes}"  # the input is left untouched


def test_non_string_leaves_are_returned_as_is() -> None:
    marker = object()
    assert substitute(marker, SCOPE) is marker
    assert substitute(3.5, SCOPE) == 3.5


def test_results_are_not_substituted_again() -> None:
    assert substitute("${s}", {"s": "${boom}"}) == "${boom}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${x}", True),
        ("a${x}", True),
        ("$${x}", True),
        ("plain", False),
        ("$ {x}", False),
        (5, False),
        (None, False),
        ({"a": [1, {"b": "${c}"}]}, True),
        ({"${key}": 1}, False),
        ([1, "two", [3]], False),
        ((1, "${x}"), True),
    ],
)
def test_has_refs(value: Any, expected: bool) -> None:
    assert has_refs(value) is expected


def test_substitute_raises_first_error_with_its_path() -> None:
    with pytest.raises(ExprError) as info:
        substitute({"a": [1, "${nope}"]}, SCOPE)
    assert info.value.path == ("a", 1)
    assert "unknown name 'nope'" in info.value.message


def test_substitute_at_collects_every_error_with_its_path() -> None:
    errors: list[tuple[SpecPath, ExprError]] = []
    value = {
        "ok": "${width}",
        "bad": "${widht}",
        "layers": [{"k": "${1 +}"}, "${xs[9]}", "fine"],
        "msg": "layer${foo.bar}",
    }
    result = substitute_at(value, SCOPE, ("model",), lambda p, e: errors.append((p, e)))
    assert result == {
        "ok": 64,
        "bad": "${widht}",
        "layers": [{"k": "${1 +}"}, "${xs[9]}", "fine"],
        "msg": "layer${foo.bar}",
    }
    paths = [p for p, _ in errors]
    assert paths == [("model", "bad"), ("model", "layers", 0, "k"), ("model", "layers", 1), ("model", "msg")]
    messages = [e.message for _, e in errors]
    assert "unknown name 'widht'" in messages[0]
    assert messages[1].startswith("invalid expression '1 +'")
    assert "out of range" in messages[2]
    assert "attribute access is not allowed" in messages[3]


# --- errors ----------------------------------------------------------------------------------------


def test_unknown_name_suggests_close_scope_names() -> None:
    err = raises("widht * 2")
    assert err.message == "unknown name 'widht'"
    assert err.hint == "did you mean 'width'?"


def test_unknown_name_suggests_function_names() -> None:
    err = raises("maxx")
    assert "'max'" in (err.hint or "")


def test_unknown_name_without_close_match_has_no_hint() -> None:
    assert raises("zzzzzz").hint is None


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("x.real", "attribute access is not allowed in ${...}"),
        ("name.upper()", "attribute access is not allowed"),
        ("__import__('os')", "calling '__import__' is not allowed"),
        ("__import__", "name '__import__'"),
        ("__builtins__", "name '__builtins__'"),
        ("xs.__class__", "attribute access is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("[i for i in xs]", "comprehension is not allowed"),
        ("{i: i for i in xs}", "comprehension is not allowed"),
        ("sum(i for i in xs)", "unknown function 'sum'"),
        ("max(i for i in xs)", "generator expression is not allowed"),
        ("f'{x}'", "f-string is not allowed"),
        ("(z := 3)", "assignment expression (:=) is not allowed"),
        ("max(*xs)", "starred unpacking is not allowed"),
        ("[*xs]", "starred unpacking is not allowed"),
        ("round(2.5, ndigits=1)", "keyword argument is not allowed"),
        ("open('x')", "unknown function 'open'"),
        ("eval('1')", "unknown function 'eval'"),
        ("getattr(x, 'real')", "unknown function 'getattr'"),
        ("name(1)", "calling 'name' is not allowed"),
        ("xs[0](1)", "calling the result of an expression is not allowed"),
        ("{'a': 1}", "dict literal is not allowed"),
        ("{1, 2}", "set literal is not allowed"),
        ("xs[0:2]", "slicing is not allowed"),
        ("1 & 2", "operator '&' is not allowed"),
        ("1 << 2", "operator '<<' is not allowed"),
        ("~1", "operator '~' is not allowed"),
        ("1 in xs", "operator 'in' is not allowed"),
        ("x is 3", "'is' between values other than None is not allowed"),
        ("1j", "complex literal is not allowed"),
        ("b'x'", "bytes literal is not allowed"),
        ("...", "ellipsis literal is not allowed"),
        ("'%s' % x", "'%' string formatting is not allowed"),
        ("max", "'max' is a function"),
    ],
)
def test_rejected_constructs(expr: str, fragment: str) -> None:
    assert fragment in raises(expr).message


def test_unknown_function_hint() -> None:
    err = raises("maxx(1, 2)")
    assert err.message == "unknown function 'maxx'"
    assert err.hint == "did you mean 'max'?"
    assert "allowed functions: min, max" in (raises("open('x')").hint or "")


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("9**9**9", "exponent 387420489"),
        ("2 ** 10001", "exponent"),
        ("10 ** 5000", "too large"),
        ("(10 ** 900) * (10 ** 900)", "too large"),
        ("(10 ** 1000) ** 2", "too large"),
        ("2.0 ** 5000", "cannot compute"),
        ("'a' * 10**9", "too large"),
        ("10**9 * 'a'", "too large"),
        ("[0] * 10**7", "too large"),
        ("'a' * 10**6 + 'a'", "too large"),
        ("str([['x' * 1000] * 1000] * 1000)", "too large to turn into text"),
        ("['a' * 10**6, 'b' * 10**6]", "too large"),
        ("len(str(xs * 10**5)) + len(str(xs * 10**5))", "too large"),
        ("round(5, -10**9)", "round() digits"),
        ("int('9' * 5000)", "int() failed"),
        ("int('9' * 1500)", "too large"),
        ("int('9' * 1000) * 1000", "too large"),
        ("2 ** (int('9' * 1000) + 1)", "exponent"),
    ],
)
def test_resource_limits(expr: str, fragment: str) -> None:
    start = time.perf_counter()
    assert fragment in raises(expr).message
    assert time.perf_counter() - start < 1.0


def test_large_but_allowed_values() -> None:
    assert evaluate("10 ** 1000", SCOPE) == 10**1000
    assert evaluate("1 ** 10000", SCOPE) == 1
    assert len(evaluate("'a' * 10**6", SCOPE)) == 10**6


def test_interpolating_an_int_too_long_for_str_is_refused() -> None:
    with pytest.raises(ExprError, match="too large to turn into text"):
        substitute("n=${n}", {"n": 10**5000})


def test_interpolating_a_huge_value_is_refused() -> None:
    huge = [["x" * 1000] * 1000] * 1000
    with pytest.raises(ExprError, match="too large to turn into text"):
        substitute("v=${huge}", {"huge": huge})
    assert substitute("${huge}", {"huge": huge}) is huge  # a whole-string ref builds no text
    big = "x" * 600_000
    assert substitute("${big}", {"big": big}) is big
    with pytest.raises(ExprError, match="too large to turn into text"):
        substitute("${big}${big}", {"big": big})


@pytest.mark.parametrize("expr", ["x / 0", "x // 0", "x % 0", "1.5 / 0.0", "0 ** -1", "width // (c - 3)"])
def test_division_by_zero(expr: str) -> None:
    assert raises(expr).message == f"division by zero in '{expr}'"


def test_division_by_zero_names_the_subexpression() -> None:
    assert raises("1 + width // (x - 1)").message == "division by zero in 'width // (x - 1)'"


def test_too_long() -> None:
    expr = "+".join(["1"] * (MAX_EXPR_CHARS // 2 + 1))
    assert "expression is too long" in raises(expr).message
    assert evaluate("+".join(["1"] * 900), {}) == 900


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert "nested too deeply" in raises("-" * 1990 + "1").message
    assert "invalid expression" in raises("(" * 300 + "1" + ")" * 300).message


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("1 +", "invalid expression '1 +':"),
        ("x = 1", "invalid expression 'x = 1':"),
        ("", "empty ${} expression"),
        ("   ", "empty ${} expression"),
        ("1 + 'a'", "cannot apply '+' to int and str"),
        ("-name", "cannot apply '-' to str"),
        ("1 < 'a'", "cannot apply '<' to int and str"),
        ("xs[5]", "index 5 is out of range (length 3) in 'xs[5]'"),
        ("xs['a']", "index must be an integer, not str"),
        ("cfg['kk']", "key 'kk' not found in"),
        ("x[0]", "cannot index a int"),
        ("int('abc')", "int() failed in"),
        ("max([])", "max() failed in"),
        ("len(5)", "len() failed in"),
        ("(-8) ** 0.5", "is a complex number"),
    ],
)
def test_evaluation_errors(expr: str, fragment: str) -> None:
    assert fragment in raises(expr).message


def test_missing_key_suggests_close_keys() -> None:
    assert raises("cfg['dpth']").hint == "did you mean 'depth'?"


@pytest.mark.parametrize("value", ["${x", "a ${x", "${x} ${", "${'}"])
def test_unterminated_reference(value: str) -> None:
    with pytest.raises(ExprError, match="unterminated") as info:
        substitute(value, SCOPE)
    assert "$${" in (info.value.hint or "")


def test_expr_error_str_is_the_message() -> None:
    err = ExprError("boom", "try this")
    assert str(err) == "boom"
    assert (err.message, err.hint, err.path) == ("boom", "try this", ())


# --- names_used and resolve_vars -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 + 2", set()),
        ("a * 2", {"a"}),
        ("max(a, b // c)", {"a", "b", "c"}),
        ("d['k'] if flag else e[0]", {"d", "flag", "e"}),
        ("max", {"max"}),
        ("True and None", set()),
    ],
)
def test_names_used(expr: str, expected: set[str]) -> None:
    assert names_used(expr) == expected


def test_names_used_rejects_syntax_errors() -> None:
    with pytest.raises(ExprError, match="invalid expression"):
        names_used("a +")


def test_resolve_vars_forward_refs() -> None:
    resolved = resolve_vars(
        {"b": "${a * 2}", "c": "${b + a}", "a": 3, "name": "blk${c}", "sizes": ["${a}", {"n": "${b}"}]}
    )
    assert resolved == {"b": 6, "c": 9, "a": 3, "name": "blk9", "sizes": [3, {"n": 6}]}
    assert list(resolved) == ["b", "c", "a", "name", "sizes"]  # declaration order is kept


def test_resolve_vars_uses_outer_scope_and_shadows_it() -> None:
    outer = {"width": 32, "a": 100}
    assert resolve_vars({"a": 2, "w2": "${width * a}"}, outer) == {"a": 2, "w2": 64}
    assert outer == {"width": 32, "a": 100}
    assert resolve_vars({}, None) == {}
    assert resolve_vars({"v": "${width}"}, outer) == {"v": 32}


@pytest.mark.parametrize(
    ("vars", "cycle"),
    [
        ({"a": "${b}", "b": "${a}"}, "a -> b -> a"),
        ({"a": "${a + 1}"}, "a -> a"),
        ({"x": 1, "a": "${c}", "b": "${a}", "c": "${max(b, x)}"}, "a -> c -> b -> a"),
        ({"a": ["${b}"], "b": {"k": "layer${a}"}}, "a -> b -> a"),
    ],
)
def test_resolve_vars_cycle(vars: dict[str, Any], cycle: str) -> None:
    with pytest.raises(ExprError) as info:
        resolve_vars(vars)
    assert info.value.message == f"variables refer to each other in a cycle: {cycle}"
    assert info.value.path == (cycle.split(" -> ")[0],)


def test_resolve_vars_error_has_var_path_and_hint_over_all_vars() -> None:
    with pytest.raises(ExprError) as info:
        resolve_vars({"a": {"k": ["${widht}"]}, "width": 8})
    assert info.value.path == ("a", "k", 0)
    assert info.value.hint == "did you mean 'width'?"


def test_resolve_vars_reports_syntax_errors_with_path() -> None:
    with pytest.raises(ExprError) as info:
        resolve_vars({"ok": "${1}", "bad": "x${1 +}"})
    assert info.value.path == ("bad",)
    assert "invalid expression" in info.value.message
