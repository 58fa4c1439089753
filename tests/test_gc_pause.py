"""The collector paused during a read (netspec.frontend.gc_pause): its state restored, a program's frozen
objects left frozen, and the garbage a loop of reads leaves for the collector bounded."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import netspec
from netspec.frontend import gc_pause


def graph_spec(n: int) -> dict[str, Any]:
    """A Graph of ``n`` Linear layers: each read leaves a cyclic structure (its fx graph) behind."""
    layers = {f"l{i}": {"type": "Linear", "in_features": 8, "out_features": 8} for i in range(n)}
    forward = ["h = l0(x)", *(f"h = l{i}(h)" for i in range(1, n))]
    model = {"type": "Graph", "inputs": ["x"], "layers": layers, "forward": forward, "outputs": "h"}
    return {"netspec": 1, "input": {"shape": [8]}, "model": model}


BAD = {"netspec": 1, "input": {"shape": [8]}, "model": {"type": "Linear", "in_features": 9, "out_features": 2}}


@pytest.fixture
def collector() -> Iterator[None]:
    """Each test starts with the collector on and nothing frozen, and leaves it so."""
    was = gc.isenabled()
    gc.enable()
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()
        else:
            gc.disable()


def test_the_collector_is_on_again_after_a_read_and_after_a_failing_one(collector: None) -> None:
    netspec.read(graph_spec(40))
    assert gc.isenabled()
    with pytest.raises(netspec.SpecError, match="in_features"):
        netspec.read(BAD)
    assert gc.isenabled()


def test_a_caller_that_disabled_the_collector_finds_it_disabled(collector: None) -> None:
    gc.disable()
    netspec.read(graph_spec(40))
    assert not gc.isenabled()
    with pytest.raises(netspec.SpecError, match="in_features"):
        netspec.read(BAD)
    assert not gc.isenabled()


def test_objects_a_program_froze_stay_frozen(collector: None) -> None:
    # A server that froze its objects before forking keeps them out of every collection: a read must not
    # hand them back (gc.unfreeze) on the way out.
    keep = [[i] for i in range(1000)]
    gc.freeze()
    frozen = gc.get_freeze_count()
    assert frozen >= len(keep)
    netspec.read(graph_spec(200))
    assert gc.get_freeze_count() == frozen


def test_a_read_ends_without_a_young_collection_over_what_it_made(collector: None) -> None:
    # The ~10,000 objects the read leaves alive go to the oldest generation: the first allocations after
    # it run no pass over them (about a tenth of a large read, otherwise).
    passes: list[int] = []

    def record(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    netspec.read(graph_spec(10))  # warm: first-call caches
    gc.collect()
    gc.callbacks.append(record)
    try:
        spec = netspec.read(graph_spec(200))
        _ = [[i] for i in range(100)]  # allocations after the read: a pass would run here
    finally:
        gc.callbacks.remove(record)
    assert spec.inferred.graphs[""] is not None
    assert passes == []


def test_garbage_a_loop_of_reads_leaves_is_bounded(collector: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # Objects handed to the oldest generation wait for a full collection, which they do not help trigger;
    # past MAX_DEFERRED of them a read ends the ordinary way, and the young collections free the earlier
    # reads' garbage again.
    monkeypatch.setattr(gc_pause, "MAX_DEFERRED", 6_000)  # about three of these reads
    netspec.read(graph_spec(10))
    gc.collect()
    graphs = []
    for _ in range(60):
        graphs.append(weakref.ref(netspec.read(graph_spec(60)).inferred.graphs[""]))
    alive = sum(r() is not None for r in graphs)
    assert alive < 30, f"{alive} of 60 read graphs are still alive without a full collection"
    gc.collect()
    assert all(r() is None for r in graphs)
