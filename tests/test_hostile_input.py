"""Hostile and odd input: only NetspecError reaches the user, escaped and bounded.

Every case here used to escape as a raw Python exception (ValueError, TypeError, RuntimeError,
AssertionError), print terminal control sequences, or print unbounded text.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

import netspec
import netspec.cli.build as cli_build
from netspec.errors import Problem, SpecError

Cli = Callable[..., tuple[int, str, str]]
ExpectError = Callable[..., netspec.SpecError]
LINEAR = {"type": "Linear", "in_features": 4, "out_features": 2}


@pytest.mark.parametrize("prefix", ["0x", "0o"])
def test_hex_and_octal_integers_with_100k_digits(expect_spec_error: ExpectError, prefix: str) -> None:
    digits = ("f" if prefix == "0x" else "7") * 100_000
    text = f"netspec: 1\nmodel: {{type: Linear, in_features: 4, out_features: {prefix}{digits}}}\n"
    err = expect_spec_error(text, line=2, path="model.out_features", count=1)
    assert "has 100,000 digits; the limit is 1,000" in str(err)
    assert len(str(err)) < 2_000


def test_huge_python_int_in_a_dict_spec() -> None:
    with pytest.raises(SpecError, match="integer with 33,220 bits is too large to be a spec value"):
        netspec.read({"netspec": 1, "model": {**LINEAR, "out_features": 10**10_000}})


def test_lone_surrogate_in_a_child_name(tmp_path: Path, cli: Cli) -> None:
    spec = tmp_path / "s.json"
    spec.write_text('{"netspec": 1, "model": {"type": "Sequential", "layers": {"a\\ud800": {"type": "ReLU"}}}}')
    code, out, err = cli("validate", spec)
    assert code == 1 and out == ""
    assert f"{spec}:1:59: model.layers.a\\ud800: child name 'a\\ud800' holds control or unpaired surrogate" in err
    err.encode("utf-8")  # printable: no lone surrogate left in the output


def test_type_given_as_a_mapping(expect_spec_error: ExpectError) -> None:
    err = expect_spec_error("netspec: 1\nmodel: {type: {a: 1}}\n", line=2, path="model.type", count=1)
    assert "Input should be a valid string, got dict {'a': 1}" in str(err)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"device": "nope"}, "device 'nope' is not available: Expected one of cpu"),
        ({"device": 3.5}, "device must be a torch.device or a name such as 'cpu' or 'cuda:0', got 3.5"),
        ({"dtype": "int64"}, "dtype int64 cannot hold trainable weights; expected one of float32, float64"),
        ({"dtype": "float8"}, "unknown dtype 'float8'; expected one of float32"),
    ],
)
def test_bad_build_arguments_are_netspec_errors(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(netspec.NetspecError) as info:
        netspec.build({"netspec": 1, "model": LINEAR}, **kwargs)  # type: ignore[arg-type]
    assert words in str(info.value)


def test_int64_torch_dtype_is_refused_too() -> None:
    import torch

    with pytest.raises(SpecError, match="dtype int64 cannot hold trainable weights"):
        netspec.build({"netspec": 1, "model": LINEAR}, dtype=torch.int64)


def test_device_none_is_the_cpu() -> None:
    built = netspec.build({"netspec": 1, "model": LINEAR}, device=None)
    assert built.model.weight.device.type == "cpu"


def test_terminal_control_characters_are_escaped(tmp_path: Path, cli: Cli) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text(
        'netspec: 1\nmodel:\n  type: Sequential\n  layers:\n    "x\\e]0;owned\\a": {type: "Lin\\e[31mear"}\n'
    )
    code, _, err = cli("validate", spec)
    assert code == 1
    assert "\x1b" not in err and "\x07" not in err
    assert "model.layers.x\\x1b]0;owned\\x07" in err


def test_at_most_fifty_problems_are_listed(tmp_path: Path) -> None:
    layers = "".join(f"    l{i}: {{type: Lnear{i}}}\n" for i in range(300))
    spec = tmp_path / "s.yaml"
    spec.write_text(f"netspec: 1\nmodel:\n  type: Sequential\n  layers:\n{layers}")
    with pytest.raises(SpecError) as info:
        netspec.read(spec)
    text = str(info.value)
    assert len(info.value.problems) == 300
    assert text.startswith("300 problems in spec:")
    assert text.count("unknown layer type") == 50
    assert text.endswith("... and 250 more (err.problems holds them all)")


def test_long_values_are_cut_in_messages() -> None:
    problem = Problem("got " + "x" * 50_000)
    assert len(problem.format()) < 1_100
    assert problem.format().endswith("... (49,004 more characters)")


def test_did_you_mean_with_tens_of_thousands_of_names_compares_a_bounded_pool(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import difflib

    import netspec.errors as errors

    compared: list[int] = []  # difflib's cost is per candidate: count candidates, not seconds
    real = difflib.get_close_matches

    def counting(word: str, possibilities: list[str], *args: object, **kwargs: object) -> list[str]:
        compared.append(len(possibilities))
        return real(word, possibilities, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(errors.difflib, "get_close_matches", counting)
    names = [f"width_{i:05d}" for i in range(40_000)]
    hints = [errors.did_you_mean(f"widht_{i:05d}", names) for i in range(0, 40_000, 400)]
    assert hints[1].startswith("did you mean 'width_00400'")
    assert hints[99].startswith("did you mean 'width_39600'")
    assert compared and max(compared) <= 2_000, f"a look-up compared {max(compared)} of 40,000 names"


def test_internal_error_is_a_short_request_to_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from netspec.cli.main import main

    spec = tmp_path / "s.yaml"
    spec.write_text("netspec: 1\nmodel: {type: Linear, in_features: 4, out_features: 2}\n")

    def broken(*args: object, **kwargs: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(cli_build, "parse_set", broken)
    monkeypatch.delenv("NETSPEC_DEBUG", raising=False)
    code = main(["build", str(spec)])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("netspec: internal error (KeyError: 'boom').\nThis is a bug in netspec")
    assert "NETSPEC_DEBUG=1" in err and "Traceback" not in err and len(err.splitlines()) == 3
    monkeypatch.setenv("NETSPEC_DEBUG", "1")
    with pytest.raises(KeyError, match="boom"):
        main(["build", str(spec)])


# -- Graph statements: constants fold through the cost-checked evaluator ---------------------------------

GRAPH = """\
netspec: 1
input: {{shape: [4]}}
model:
  type: Graph
  inputs: [x]
  layers:
    fc: {{type: Linear, in_features: 4, out_features: 4}}
  forward:
    - "{statement}"
  outputs: y
"""


@pytest.mark.parametrize(
    ("statement", "words"),
    [
        ("y = fc(x) + 9**9**9", "'9 ** 9 ** 9' has exponent 387420489; the limit is 10,000"),
        ("y = fc(x) * len('a' * 6000000000)", "''a' * 6000000000' is too large"),
        ("y = fc(x) + sum((x, x) * 2**22)", "'(x, x) * 2 ** 22' is too large"),
        ("y = fc(x) + 1/0", "division by zero in '1 / 0'"),
        ("y = fc(x) + ~1.5", "cannot apply 'invert' to float in '~1.5'"),
        ("y = fc(x) + pi[1:3]", "cannot apply 'getitem' to float and slice in 'pi[1:3]'"),
        ("y = fc(x) + " + "-" * 3000 + "x", "statement is nested too deeply; split it into several statements"),
        ("y = fc(x)" + " + x" * 3000, "statement is 12,009 characters long; the limit is 10,000"),
    ],
    ids=["pow", "str-repeat", "tuple-repeat", "div-zero", "invert-float", "subscript-float", "deep", "long"],
)
def test_graph_constants_are_cost_checked(expect_spec_error: ExpectError, statement: str, words: str) -> None:
    err = _quick_error(lambda: expect_spec_error(GRAPH.format(statement=statement), line=9, path="model.forward.0"))
    assert words in str(err)


def _quick_error(fn: Callable[[], netspec.SpecError]) -> netspec.SpecError:
    start = time.perf_counter()
    err = fn()
    assert time.perf_counter() - start < 20  # these used to hang or take gigabytes
    return err


def test_tensor_factories_run_on_meta_during_validation(tmp_path: Path) -> None:
    import resource

    spec = tmp_path / "s.yaml"
    spec.write_text(GRAPH.format(statement="y = fc(x) + arange(500000000, device='cpu').sum()"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    netspec.read(spec)  # 500 million int64s would be 4 GB on the CPU
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 1_000_000


# -- messages that teach -------------------------------------------------------------------------------------


def test_top_level_clip_grad_hints_optimizer(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel: {type: ReLU}\nclip_grad: {max_norm: 1.0}\n"
    err = expect_spec_error(text, line=3, path="clip_grad", count=1)
    assert "unknown key 'clip_grad'" in str(err) and "did you mean optimizer.clip_grad?" in str(err)


def test_hydra_target_is_explained_at_its_line(expect_spec_error: ExpectError) -> None:
    text = "netspec: 1\nmodel:\n  type: Sequential\n  layers:\n    - _target_: torch.nn.ReLU\n"
    err = expect_spec_error(text, line=5, path="model.layers.0._target_", count=1)
    assert "'_target_' is not a netspec key: name the layer with 'type:'" in str(err)
    assert "netspec names what to build with type:" in str(err)


def test_is_none_works_in_expressions() -> None:
    spec = {
        "netspec": 1,
        "vars": {"width": None, "out": "${8 if width is None else width}", "set": "${width is not None}"},
        "model": {"type": "Linear", "in_features": 4, "out_features": "${out}", "bias": "${set}"},
    }
    model = netspec.build(spec).model
    assert model.out_features == 8 and model.bias is None


def test_set_with_an_empty_value_says_so(cli: Cli, tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("netspec: 1\nvars: {w: 2}\nmodel: {type: Linear, in_features: 4, out_features: '${w}'}\n")
    code, out, err = cli("validate", spec, "--set", "vars.w=")
    assert code == 2 and out == ""
    assert "--set vars.w= has an empty value: write --set vars.w=null for null" in err


def test_explain_as_json(cli: Cli, tmp_path: Path) -> None:
    import json

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "netspec: 1\nmodel: {type: Linear, in_features: 4, out_features: 2}\noptimizer: {type: SGD, lr: 0.1}\n"
    )
    code, out, _ = cli("build", spec, "--explain", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert [row["name"] for row in rows] == ["weight", "bias"]


def test_memory_check_reads_rlimit_as(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import resource, netspec\n"
        "from netspec.compiler.memory import available_bytes\n"
        "import torch\n"
        "used = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + 300 * 2**20, resource.RLIM_INFINITY))\n"
        "room = available_bytes(torch.device('cpu'))\n"
        "assert room is not None and room <= 300 * 2**20 * 0.9 + 1, room\n"
        "try:\n"
        "    netspec.build({'netspec': 1, 'model': {'type': 'Linear', 'in_features': 20000, 'out_features': 20000}})\n"
        "except netspec.NetspecError as err:\n"
        "    print('refused:', str(err).splitlines()[0])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("refused:"), out.stdout  # 1.6 GB of weights under a 300 MB address-space limit
