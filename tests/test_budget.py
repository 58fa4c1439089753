"""One whole-spec budget, checked before the work: expansion, values, nesting; every stage linear.

Each hostile spec here used to hang, take minutes, or raise RecursionError; now it fails at once with
a SpecError that names the chain that exceeds the budget, at the line that starts it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

import netspec

ExpectError = Callable[..., netspec.SpecError]
LINEAR = "{type: Linear, in_features: 4, out_features: 4}"


def _quick(fn: Callable[[], Any], seconds: float = 10.0) -> Any:
    """Hang protection, not a benchmark: the old behaviour took minutes or never finished."""
    start = time.perf_counter()
    result = fn()
    assert time.perf_counter() - start < seconds
    return result


def test_nested_repeats_are_refused_before_expanding(expect_spec_error: ExpectError) -> None:
    text = f"""\
netspec: 1
model:
  type: Sequential
  repeat: 100000
  layer: {{type: Sequential, repeat: 100000, layer: {LINEAR}}}
"""
    err = _quick(lambda: expect_spec_error(text, line=2, path="model", count=1))
    assert "model expands to 10,000,100,001 modules, more than the limit of 200,000" in str(err)
    assert "model repeat 100,000 × model.layer repeat 100,000" in str(err)


def test_blocks_each_using_the_next_twice_are_refused(expect_spec_error: ExpectError) -> None:
    blocks = "".join(
        f"  B{i}: {{body: {{type: Sequential, layers: [{{type: B{i + 1}}}, {{type: B{i + 1}}}]}}}}\n" for i in range(30)
    )
    text = f"netspec: 1\nblocks:\n{blocks}  B30: {{body: {LINEAR}}}\nmodel: {{type: B0}}\n"
    err = _quick(lambda: expect_spec_error(text, line=34, path="model", count=1))
    message = str(err)
    assert "model expands to 2,147,483,647 modules" in message
    assert "block B0 at model × block B1 at blocks.B0.body.layers.0 × block B2 at blocks.B1.body.layers.0" in message


def test_list_form_repeat_past_the_limit_is_an_error_not_cut(expect_spec_error: ExpectError) -> None:
    text = f"netspec: 1\nmodel:\n  type: Sequential\n  layers:\n    - {{repeat: 150000, layer: {LINEAR}}}\n"
    err = expect_spec_error(text, line=5, path="model.layers.0.repeat", count=1)
    assert "repeat 150,000 exceeds the limit of 100,000 copies" in str(err)


@pytest.mark.parametrize(
    ("layer", "what"),
    [
        ("{type: LSTM, input_size: 4, hidden_size: 4, num_layers: 10000000}", "model.num_layers 10,000,000 layers"),
        (
            "{type: TransformerEncoder, num_layers: 10000000,"
            " encoder_layer: {type: TransformerEncoderLayer, d_model: 8, nhead: 2}}",
            "model.num_layers 10,000,000 copies of encoder_layer",
        ),
    ],
    ids=["LSTM", "TransformerEncoder"],
)
def test_torch_count_arguments_count(expect_spec_error: ExpectError, layer: str, what: str) -> None:
    err = _quick(lambda: expect_spec_error(f"netspec: 1\nmodel: {layer}\n", line=2, path="model.num_layers"))
    assert "more than the limit of 200,000" in str(err) and what in str(err)


def test_repeat_count_from_a_var_is_counted_too(expect_spec_error: ExpectError) -> None:
    text = f"""\
netspec: 1
vars: {{n: 1000}}
model:
  type: Sequential
  repeat: "${{n}}"
  layer: {{type: Sequential, repeat: "${{n * 1}}", layer: {LINEAR}}}
"""
    err = expect_spec_error(text, line=3, path="model")
    assert "model repeat 1,000 × model.layer repeat 1,000" in str(err)


def test_block_param_repeat_is_checked_when_known(expect_spec_error: ExpectError) -> None:
    text = f"""\
netspec: 1
blocks:
  Grid:
    params: {{n: int}}
    body: {{type: Sequential, repeat: "${{n}}", layer: {{type: Sequential, repeat: "${{n}}", layer: {LINEAR}}}}}
model:
  type: Sequential
  layers:
    - {{type: Grid, n: 2}}
    - {{type: Grid, n: 1000}}
"""
    err = _quick(lambda: expect_spec_error(text, line=10, path="model.layers.1", count=1))
    message = str(err)
    assert (
        "block Grid at model.layers.1 × blocks.Grid.body repeat 1,000 × blocks.Grid.body.layer repeat 1,000" in message
    )
    assert "expands to 1,001,001 modules; a spec may expand to at most 200,000" in message


def test_a_chain_of_blocks_is_an_error_not_a_recursion_error(expect_spec_error: ExpectError) -> None:
    blocks = "".join(f"  B{i}: {{body: {{type: B{i + 1}}}}}\n" for i in range(3000))
    text = f"netspec: 1\nblocks:\n{blocks}  B3000: {{body: {LINEAR}}}\nmodel: {{type: B0}}\n"
    err = _quick(lambda: expect_spec_error(text, line=102, path="blocks.B99.body", count=1))
    message = str(err)
    assert "nodes are nested more than 100 levels deep, block bodies included" in message
    assert "(blocks: B0 -> B1 -> B2 -> B3 -> ... -> B97 -> B98 -> B99)" in message


# -- vars: linear, no recursion, bounded values -----------------------------------------------------------


def test_thirty_thousand_vars_resolve_in_linear_time() -> None:
    data: dict[str, Any] = {f"v{i}": i for i in range(30_000)}
    data["width"] = "${v29999 - 29990}"
    spec = {"netspec": 1, "vars": data, "model": {"type": "Linear", "in_features": 4, "out_features": "${width}"}}
    built = _quick(lambda: netspec.build(spec))
    assert built.model.out_features == 9


def test_a_long_chain_of_vars_needs_no_recursion() -> None:
    data: dict[str, Any] = {"v0": 1, **{f"v{i}": f"${{v{i - 1} + 1}}" for i in range(1, 20_000)}}
    spec = {"netspec": 1, "vars": data, "model": {"type": "Linear", "in_features": 4, "out_features": "${v19999}"}}
    assert _quick(lambda: netspec.build(spec)).model.out_features == 20_000


def test_a_cycle_in_a_long_chain_is_named(expect_spec_error: ExpectError) -> None:
    chain = ", ".join(f"v{i}: '${{v{i + 1}}}'" for i in range(5000))
    text = f"netspec: 1\nvars: {{{chain}, v5000: '${{v0}}'}}\nmodel: {LINEAR}\n"
    err = expect_spec_error(text, line=2, path="vars.v0", count=1)
    assert "variables refer to each other in a cycle: v0 -> v1 -> v2" in str(err)


def test_deep_lists_built_through_vars_are_refused(expect_spec_error: ExpectError) -> None:
    lines = "".join(f"  v{i}: ['${{v{i - 1}}}']\n" for i in range(1, 400))
    text = f"netspec: 1\nvars:\n  v0: [1]\n{lines}model: {LINEAR}\n"
    err = expect_spec_error(text, line=67, path="vars.v64", count=1)
    assert "this value is nested 65 levels deep; values built through vars may nest at most 64 levels" in str(err)


def test_expression_results_are_summed_over_the_spec(expect_spec_error: ExpectError) -> None:
    # Each var alone is within the per-expression limit; together they are 12 million characters.
    lines = "".join(f"  t{i}: '${{s}}'\n" for i in range(12))
    text = f"netspec: 1\nvars:\n  s: \"${{'a' * 900000}}\"\n{lines}model: {LINEAR}\n"
    err = _quick(lambda: expect_spec_error(text, line=14, path="vars.t10", count=1))
    assert "the values of vars and ${...} add up to more than 10,000,000 elements" in str(err)
