"""The summary's multiply-adds: the shortcut from inferred shapes must agree with torch's FLOP counter."""

from __future__ import annotations

import pytest
from conftest import SPECS

import netspec
from netspec.summary import summarize


@pytest.mark.parametrize("name", ["lenet5", "mlp", "vgg11"])
def test_macs_from_shapes_equal_the_flop_counter(name: str) -> None:
    built = netspec.load(SPECS / f"{name}.yaml")
    spec = built.spec
    shape = tuple(spec.document.input.shape)

    def meta() -> object:
        return spec.inferred.meta_model

    fast = summarize(built.model, meta, spec.name, shape, shapes=spec.inferred.shapes)
    traced = summarize(built.model, meta, spec.name, shape)
    assert fast.total_macs == traced.total_macs > 0
    assert [(r.name, r.macs, r.output_shape) for r in fast.rows] == [
        (r.name, r.macs, r.output_shape) for r in traced.rows
    ]


def test_graph_models_are_traced() -> None:
    built = netspec.load(SPECS / "resnet18.yaml")
    spec = built.spec
    calls = []

    def meta() -> object:
        calls.append(1)
        return spec.inferred.meta_model

    summary = summarize(built.model, meta, spec.name, (3, 224, 224), shapes=spec.inferred.shapes)
    assert calls == [1]
    assert summary.total_macs == 1_814_073_344  # ResNet-18 at 224x224: 1.81 GMACs (convolutions + fc)
