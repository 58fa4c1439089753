"""The summary's multiply-adds: counted from inference's call log, they must agree with torch's FLOP counter
(run by the summary's own trace; tests/test_summary_macs.py runs torch's counter directly)."""

from __future__ import annotations

import pytest
from conftest import SPECS

import netspec
from netspec.summary import summarize


@pytest.mark.parametrize("name", ["lenet5", "mlp", "vgg11"])
def test_macs_from_the_call_log_equal_the_flop_counter(name: str) -> None:
    built = netspec.load(SPECS / f"{name}.yaml")
    spec = built.spec
    shape = tuple(spec.document.input.shape)

    def meta() -> object:
        return spec.inferred.meta_model

    fast = summarize(built.model, meta, spec.name, shape, calls=spec.inferred.calls)
    traced = summarize(built.model, meta, spec.name, shape)
    assert fast.total_macs == traced.total_macs > 0
    assert fast.forward_bytes == traced.forward_bytes > 0
    assert [(r.name, r.macs, r.output_shape, r.memory) for r in fast.rows] == [
        (r.name, r.macs, r.output_shape, r.memory) for r in traced.rows
    ]


def test_graph_models_are_counted_without_a_trace() -> None:
    built = netspec.load(SPECS / "resnet18.yaml")
    spec = built.spec
    calls = []

    def meta() -> object:
        calls.append(1)
        return spec.inferred.meta_model

    summary = summarize(built.model, meta, spec.name, (3, 224, 224), calls=spec.inferred.calls)
    assert calls == []
    assert summary.total_macs == 1_814_073_344  # ResNet-18 at 224x224: 1.81 GMACs (convolutions + fc)
    traced = summarize(built.model, meta, spec.name, (3, 224, 224))
    assert calls == [1]
    assert traced.total_macs == summary.total_macs
