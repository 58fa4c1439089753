"""``netspec schedule``: each group's learning rate over N steps equals torch's own schedulers stepped by
hand, warm-up included; CSV always, pictures through matplotlib, clear errors otherwise."""

from __future__ import annotations

import csv
import io
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import folder_state

from netspec.schedule import ScheduleError, compute, write

WARMUP_COSINE = """
    netspec: 1
    name: warm
    input: {shape: [4]}
    model:
      type: Sequential
      layers:
        body: {type: Linear, out_features: 4}
        head: {type: Linear, out_features: 2}
    optimizer:
      type: SGD
      lr: 0.1
      groups: [{params: "head.*", lr_mult: 10}]
    scheduler: {type: CosineAnnealingLR, T_max: 20, interval: step, warmup: {steps: 5, start_factor: 0.1}}
    """


def hand_written(steps: int) -> list[list[float]]:
    """The same schedule written directly with torch: SequentialLR(LinearLR, CosineAnnealingLR)."""
    head, body = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [head], "lr": 1.0}, {"params": [body]}], lr=0.1)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.1, end_factor=1.0, total_iters=5)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[5])
    rows = []
    for _ in range(steps):
        rows.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return rows


def test_learning_rates_equal_torchs_schedulers_stepped_by_hand(write_spec: Callable[..., Path]) -> None:
    schedule = compute(write_spec(WARMUP_COSINE), 40)
    assert schedule.interval == "step"
    assert schedule.groups == ["group 0: groups.0", "group 1: default"]
    assert schedule.lrs == hand_written(40)
    assert schedule.lrs[0] == pytest.approx([0.1, 0.01])  # warm-up starts at 0.1x
    assert schedule.lrs[5] == pytest.approx([1.0, 0.1])  # warm-up done: the full lr, head at 10x


def test_csv_has_a_row_per_step_and_a_column_per_group(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    schedule = compute(write_spec(WARMUP_COSINE), 12)
    rows = list(csv.reader(io.StringIO(schedule.to_csv())))
    assert rows[0] == ["step", "group 0: groups.0", "group 1: default"]
    assert [int(r[0]) for r in rows[1:]] == list(range(12))
    assert [[float(v) for v in r[1:]] for r in rows[1:]] == hand_written(12)
    out = write(schedule, tmp_path / "lr.csv")
    assert out.read_text() == schedule.to_csv()


def test_pictures_through_matplotlib(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    schedule = compute(write_spec(WARMUP_COSINE), 30)
    png = write(schedule, tmp_path / "lr.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    svg = ET.parse(write(schedule, tmp_path / "lr.svg")).getroot()
    assert svg.tag.endswith("svg")
    assert write(schedule, tmp_path / "again.svg").read_bytes() == (tmp_path / "lr.svg").read_bytes()  # no dates


def test_without_matplotlib_a_picture_says_how_to_get_it(
    write_spec: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule = compute(write_spec(WARMUP_COSINE), 3)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if it were not installed
    before = folder_state(tmp_path)
    with pytest.raises(ScheduleError, match=r"writing \.png needs matplotlib: pip install 'netspec\[plot\]'"):
        write(schedule, tmp_path / "lr.png")
    assert folder_state(tmp_path) == before


def test_errors(write_spec: Callable[..., Path], tmp_path: Path) -> None:
    no_optimizer = write_spec("netspec: 1\nmodel: {type: Linear, in_features: 2, out_features: 2}\n", "none.yaml")
    with pytest.raises(ScheduleError, match="none: the spec has no optimizer"):
        compute(no_optimizer, 5)
    plateau = write_spec(
        "netspec: 1\nmodel: {type: Linear, in_features: 2, out_features: 2}\n"
        "optimizer: {type: SGD, lr: 0.1}\nscheduler: {type: ReduceLROnPlateau}\n",
        "plateau.yaml",
    )
    with pytest.raises(ScheduleError, match="ReduceLROnPlateau lowers the learning rate when a metric"):
        compute(plateau, 5)
    with pytest.raises(ScheduleError, match="--steps must be a whole number from 1"):
        compute(write_spec(WARMUP_COSINE), 0)
    with pytest.raises(ScheduleError, match=r"use \.csv, \.svg or \.png"):
        write(compute(write_spec(WARMUP_COSINE), 2), tmp_path / "lr.txt")


def test_cli_schedule(
    cli: Callable[..., tuple[int, str, str]], write_spec: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_spec(WARMUP_COSINE)
    code, out, err = cli("schedule", path, "--steps", "6")
    assert code == 0 and err == ""
    assert out.splitlines()[0] == "step,group 0: groups.0,group 1: default" and len(out.splitlines()) == 7
    code, out, err = cli("schedule", path, "--steps", "6", "-o", tmp_path / "lr.csv")
    assert code == 0 and out == "" and "wrote" in err
    code, _, err = cli("schedule", path, "--steps", "0")
    assert code == 1 and "--steps must be a whole number" in err
    code, _, err = cli("schedule", path)
    assert code == 2 and "--steps" in err
