"""``netspec emit`` / ``netspec check`` (netspec.cli_emit), driven through their argparse subcommands."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import netspec
from netspec.cli.main import main

MODELS = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, 2)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(F.relu(self.conv(x)), 1).flatten(1))


def make(width: int = 8) -> nn.Module:
    return Net(width)


def with_optimizer():
    model = Net()
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def sloppy() -> nn.Module:
    model = Net()
    model.extra = [nn.Linear(2, 2)]
    return model


def broken() -> nn.Module:
    raise ValueError("no weights here")


def not_a_model():
    return 42


class Tokens(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)

    def forward(self, input_ids=None, attention_mask=None):
        return self.embed(input_ids)
"""


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    (tmp_path / "emit_cli_models.py").write_text(textwrap.dedent(MODELS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "emit_cli_models"
    sys.modules.pop("emit_cli_models", None)


def run(*argv: str) -> int:
    return main(list(argv))


def test_emit_writes_a_spec_that_builds(models: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "net.yaml"
    assert run("emit", f"{models}:make", "--args", '{"width": 4}', "--input-shape", "3,8,8", "-o", str(out)) == 0
    spec = netspec.read(out)
    assert spec.document.input.shape == [3, 8, 8]
    assert spec.to_dict()["model"]["layers"]["conv"]["out_channels"] == 4
    assert f"wrote {out}" in capsys.readouterr().err
    assert netspec.build(spec).model.fc.in_features == 4


def test_emit_to_stdout_and_json(models: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("emit", f"{models}:Net") == 0  # a class is a factory too
    assert capsys.readouterr().out.startswith("netspec: 1\nname: Net\n")
    out = tmp_path / "net.json"
    assert run("emit", f"{models}:with_optimizer", "-o", str(out)) == 0
    data = __import__("json").loads(out.read_text())
    assert data["optimizer"] == {"type": "SGD", "lr": 0.05, "momentum": 0.9}


def test_emit_with_inputs_and_an_integer_input(models: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tokens.yaml"
    assert (
        run(
            "emit",
            f"{models}:Tokens",
            "--inputs",
            "input_ids",
            "--input-shape",
            "5",
            "--input-dtype",
            "int64",
            "-o",
            str(out),
        )
        == 0
    )
    assert "attention_mask are fixed to their defaults" in capsys.readouterr().err
    spec = netspec.read(out)
    assert spec.to_dict()["input"] == {"shape": [5], "dtype": "int64"}
    assert spec.to_dict()["model"]["inputs"] == ["input_ids"]


def test_emit_prints_what_it_could_not_express(models: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("emit", f"{models}:sloppy") == 0
    err = capsys.readouterr().err
    assert "extra: warning: Net.extra holds 1 nn.Module(s) (Linear) in a plain list" in err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["emit", "nomodule_xyz:make"], 1, "cannot import 'nomodule_xyz': no module named 'nomodule_xyz'"),
        (["emit", "{m}:mak"], 1, "has no attribute 'mak'; did you mean 'make'?"),
        (["emit", "{m}:broken"], 1, "raised ValueError: no weights here"),
        (["emit", "{m}:not_a_model"], 1, "returned int 42; expected an nn.Module"),
        (["emit", "{m}"], 2, "expected MODULE:FACTORY"),
        (["emit", "{m}:make", "--args", "[1]"], 2, "--args must be a JSON object"),
        (["emit", "{m}:make", "--args", "{width: 3}"], 2, "--args must be a JSON object"),
        (["emit", "{m}:make", "--input-shape", "3,x"], 2, "--input-shape expects positive sizes"),
    ],
)
def test_emit_failures(
    models: str, capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    assert run(*[a.replace("{m}", models) for a in argv]) == status
    err = capsys.readouterr().err
    assert err.startswith("netspec: ") and message in err
    assert "Traceback" not in err


def test_emit_of_an_unexpressible_model_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "emit_cli_dyn.py").write_text(
        textwrap.dedent("""
        import torch.nn as nn
        class Dyn(nn.Module):
            def forward(self, x):
                return x if x.sum() > 0 else -x
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "dyn.yaml"
    assert run("emit", "emit_cli_dyn:Dyn", "-o", str(out)) == 1
    assert "the model (Dyn): forward cannot be traced" in capsys.readouterr().err
    assert not out.exists()
    sys.modules.pop("emit_cli_dyn", None)


def test_check(models: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", f"{models}:make") == 0
    assert "ok, every module and tensor is registered" in capsys.readouterr().out
    assert run("check", f"{models}:sloppy") == 1
    captured = capsys.readouterr()
    assert "extra: warning:" in captured.out and "hint: self.extra = nn.ModuleList([...])" in captured.out
    assert "1 registration problem(s)" in captured.err


def test_help_says_user_code_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("emit", "--help") == 0
    assert "runs your Python code" in capsys.readouterr().out.replace("\n", " ")
