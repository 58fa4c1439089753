"""The one weights reader: every layout is accepted by ``--from-checkpoint`` and ``init: from:`` alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn

import netspec
from netspec.errors import CheckpointError
from netspec.io.weights import load_state_dict_file

SPEC = """\
netspec: 1
input: {shape: [6]}
model:
  type: Sequential
  layers:
    fc1: {type: Linear, out_features: 8}
    act: ReLU
    fc2: {type: Linear, out_features: 3}
"""


class TutorialNet(nn.Module):
    """The hand-written model the spec describes, trained and saved the PyTorch-tutorial way."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def tutorial_checkpoint(path: Path) -> TutorialNet:
    """``torch.save({'epoch': ..., 'model_state_dict': ..., 'optimizer_state_dict': ..., 'loss': ...})``,
    as in the PyTorch tutorial "Saving and loading a general checkpoint"."""
    torch.manual_seed(7)
    net = TutorialNet()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
    net(torch.randn(4, 6)).sum().backward()
    optimizer.step()
    torch.save(
        {"epoch": 5, "model_state_dict": net.state_dict(), "optimizer_state_dict": optimizer.state_dict(), "loss": 0.4},
        path,
    )
    return net


def same_outputs(model: nn.Module, reference: nn.Module) -> bool:
    x = torch.randn(5, 6)
    return torch.equal(model(x), reference(x))


def test_tutorial_checkpoint_through_from_checkpoint(
    cli: Callable[..., tuple[int, str, str]], write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    reference = tutorial_checkpoint(tmp_path / "tutorial.pt")
    out = tmp_path / "out.pt"
    code, _, err = cli("build", write_spec(SPEC), "--from-checkpoint", tmp_path / "tutorial.pt", "-o", out)
    assert code == 0, err
    saved = torch.load(out, weights_only=True)
    assert list(saved) == list(reference.state_dict())
    assert all(torch.equal(saved[k], v) for k, v in reference.state_dict().items())


def test_tutorial_checkpoint_through_init_from(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    reference = tutorial_checkpoint(tmp_path / "tutorial.pt")
    built = netspec.build(write_spec(SPEC + "init:\n  - {from: tutorial.pt}\n"))
    (report,) = built.training.load_reports
    assert sorted(report.loaded) == sorted(reference.state_dict()) and not report.missing
    assert same_outputs(built.model, reference)


@pytest.mark.parametrize(
    "layout",
    [
        lambda sd: sd,
        lambda sd: {"state_dict": sd, "epoch": 1},
        lambda sd: {"model_state_dict": sd, "epoch": 1},
        lambda sd: {"model": sd},
        lambda sd: {f"module.{k}": v for k, v in sd.items()},
        lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
    ],
    ids=["plain", "state_dict", "model_state_dict", "model", "dataparallel", "wrapped-dataparallel"],
)
def test_every_layout_loads_the_same_way_both_ways(
    layout: Callable[[dict[str, torch.Tensor]], object],
    cli: Callable[..., tuple[int, str, str]],
    write_spec: Callable[..., Path],
    tmp_path: Path,
) -> None:
    reference = TutorialNet()
    torch.save(layout(reference.state_dict()), tmp_path / "w.pt")
    assert load_state_dict_file(tmp_path / "w.pt").keys() == reference.state_dict().keys()
    built = netspec.build(write_spec(SPEC + "init:\n  - {from: w.pt}\n", "with_init.yaml"))
    assert same_outputs(built.model, reference)
    out = tmp_path / "out.pt"
    code, _, err = cli("build", write_spec(SPEC), "--from-checkpoint", tmp_path / "w.pt", "-o", out)
    assert code == 0, err
    assert all(torch.equal(torch.load(out, weights_only=True)[k], v) for k, v in reference.state_dict().items())


def test_a_netspec_checkpoint_is_a_weights_file_for_init_from(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    donor = netspec.build(write_spec(SPEC + "seed: 3\n", "donor.yaml"))
    netspec.save(donor, tmp_path / "donor.ckpt", epoch=2)
    built = netspec.build(write_spec(SPEC + "init:\n  - {from: donor.ckpt}\n"))
    assert same_outputs(built.model, donor.model)


def test_a_file_without_weights_is_refused_the_same_way_both_ways(
    cli: Callable[..., tuple[int, str, str]], write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    torch.save({"epoch": 3, "lr": 0.1}, tmp_path / "meta.pt")
    expected = "meta.pt holds a dict with keys 'epoch', 'lr', not a state_dict"
    with pytest.raises(CheckpointError, match=expected):
        load_state_dict_file(tmp_path / "meta.pt")
    with pytest.raises(netspec.SpecError, match=expected):
        netspec.build(write_spec(SPEC + "init:\n  - {from: meta.pt}\n", "with_init.yaml"))
    code, _, err = cli("build", write_spec(SPEC), "--from-checkpoint", tmp_path / "meta.pt")
    assert code == 1 and expected in err
