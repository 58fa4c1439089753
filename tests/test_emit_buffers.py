"""Non-persistent buffers no named init reproduces (timm's BlurPool filter, Swin v2's log-spaced relative
coordinates, CSATv2's DCT statistics): emit writes their values into the spec (``init: {fn: values, data:
[...]}``), so the rebuilt model holds the same values and keeps them out of its state_dict; and the spec
language checks such an init like any other."""

from __future__ import annotations

import base64
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import problem_lines
from zoo import import_torchvision, round_trip

import netspec

import_torchvision()  # timm imports torchvision; the stand-in keeps its C ops out (see tests/zoo.py)
timm_layers = pytest.importorskip("timm.layers")


class Tables(nn.Module):
    """A fixed float table and an int64 permutation, both registered with persistent=False."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.register_buffer("mean", torch.randn(3, 8, generator=g), persistent=False)
        self.register_buffer("order", torch.randperm(8, generator=g), persistent=False)
        self.fc = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc((x - self.mean)[:, :, self.order])


class Blurred(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.blur = timm_layers.BlurPool2d(16, filt_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blur(F.relu(self.conv(x)))


def test_non_persistent_tables_are_written_out_and_stay_out_of_the_state_dict() -> None:
    model = Tables().eval()
    spec = netspec.emit(model, input_shape=[3, 8])
    buffers = spec.to_dict()["model"]["buffers"]
    assert buffers["mean"]["persistent"] is False and buffers["mean"]["init"]["fn"] == "values"
    assert buffers["order"]["dtype"] == "int64" and buffers["order"]["init"]["data"] == model.order.tolist()
    rebuilt = netspec.build(spec).model
    assert list(rebuilt.state_dict()) == list(model.state_dict()) == ["fc.weight", "fc.bias"]
    assert torch.equal(rebuilt.mean, model.mean) and torch.equal(rebuilt.order, model.order)
    assert rebuilt.order.dtype == torch.int64
    outcome = round_trip("tables", Tables, (3, 8))
    assert outcome.status == "exact", outcome


def test_timm_blur_pool_filter_round_trips() -> None:
    model = Blurred().eval()
    rebuilt = netspec.build(netspec.emit(model, input_shape=[3, 12, 12])).model
    assert "blur.filt" not in rebuilt.state_dict()
    assert torch.equal(rebuilt.get_buffer("blur.filt"), model.blur.filt)
    outcome = round_trip("blurred", Blurred, (3, 12, 12))
    assert outcome.status == "exact", outcome


class Big(nn.Module):
    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("table", table, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table


def test_large_or_non_finite_tables_are_packed_exactly() -> None:
    """Swin's shifted-window mask: 153,664 elements of 0 and -100 (past the list form's 16,384), and a table
    with nan and inf (which a list of numbers cannot hold) travel packed, and come back bit for bit."""
    mask = torch.zeros(64, 49, 49)
    mask[1::2, :, 20:] = -100.0
    odd = torch.tensor([1.5, float("nan"), float("inf"), -float("inf")])
    for table in (mask, odd, torch.arange(20_000, dtype=torch.int64).reshape(100, 200)):
        spec = netspec.emit(Big(table))
        init = spec.to_dict()["model"]["buffers"]["table"]["init"]
        assert set(init) == {"fn", "packed", "dtype"} and init["dtype"] == str(table.dtype).removeprefix("torch.")
        rebuilt = netspec.build(spec).model
        assert rebuilt.table.dtype == table.dtype and "table" not in rebuilt.state_dict()
        torch.testing.assert_close(rebuilt.table, table, rtol=0, atol=0, equal_nan=True)


def test_a_table_too_large_to_pack_is_refused_by_name() -> None:
    noise = torch.rand(300_000, generator=torch.Generator().manual_seed(0))  # random bits do not compress
    with pytest.raises(netspec.EmitError) as err:
        netspec.emit(Big(noise))
    assert str(err.value).startswith("table (Big.table): a non-persistent buffer of 300,000 elements (shape [300000])")
    assert "past the 1,048,576 a spec carries" in str(err.value)


def _packed(count: int) -> str:
    """The packed text of the int64 elements 0..count-1: base64 of zlib-compressed little-endian bytes."""
    return base64.b64encode(zlib.compress(struct.pack(f"<{count}q", *range(count)))).decode("ascii")


SPEC = """
netspec: 1
model:
  type: Graph
  inputs: [x]
  buffers:
    table: {shape: [2, 3], init: {fn: values, data: [0.5, -1.0, 2, 3.25, 0.0, 1e-3]}, persistent: false}
    index: {shape: [3], dtype: int64, init: {fn: values, data: [2, 0, 1]}}
  forward:
    - y = x[..., index] + table
  outputs: y
"""


def test_values_init_builds_the_written_tensor(write_spec: Callable[..., Path]) -> None:
    model = netspec.build(write_spec(SPEC)).model
    assert torch.equal(model.table, torch.tensor([[0.5, -1.0, 2.0], [3.25, 0.0, 1e-3]]))
    assert torch.equal(model.index, torch.tensor([2, 0, 1])) and model.index.dtype == torch.int64
    assert list(model.state_dict()) == ["index"]


@pytest.mark.parametrize(
    ("old", "new", "at", "message"),
    [
        ("data: [0.5, -1.0, 2, 3.25, 0.0, 1e-3]", "data: [0.5, -1.0]", "model.buffers.table.init.data",
         "init values has 2 numbers for shape [2, 3] (6 elements)"),
        ("data: [2, 0, 1]", "data: [2, 0.5, 1]", "model.buffers.index.init.data.1",
         "init values of a int64 tensor: data[1] is 0.5"),
        ("data: [2, 0, 1]", "data: [[2, 0, 1]]", "model.buffers.index.init.data",
         "init values needs data: a flat list of 3 numbers (row-major)"),
        ("{fn: values, data: [2, 0, 1]}", "{fn: values, data: [2, 0, 1], scale: 2}", "model.buffers.index.init",
         "init values takes data (the numbers, row-major) or packed and dtype, got scale"),
        ("{fn: values, data: [2, 0, 1]}", "{fn: values, packed: '!!', dtype: int64}", "model.buffers.index.init.packed",
         "init values packed does not decode (base64 of zlib-compressed bytes)"),
        ("{fn: values, data: [2, 0, 1]}", f"{{fn: values, packed: {_packed(4)}, dtype: int64}}",
         "model.buffers.index.init.packed", "init values packed holds more than 24 bytes; 3 int64 elements are 24"),
        ("{fn: values, data: [2, 0, 1]}", f"{{fn: values, packed: {_packed(2)}, dtype: int64}}",
         "model.buffers.index.init.packed", "init values packed holds 16 bytes; 3 int64 elements are 24"),
        ("{fn: values, data: [2, 0, 1]}", f"{{fn: values, packed: {_packed(3)}, dtype: uint8}}",
         "model.buffers.index.init", "init values with packed needs dtype: one of float32"),
    ],
)  # fmt: skip
def test_values_init_is_checked_at_its_path(
    write_spec: Callable[..., Path], old: str, new: str, at: str, message: str
) -> None:
    with pytest.raises(netspec.SpecError) as err:
        netspec.build(write_spec(SPEC.replace(old, new)))
    lines = problem_lines(err.value)
    assert len(lines) == 1 and f"{at}: {message}" in lines[0], lines
