"""FSDP's initialisation replay, one tensor at a time, checked in one process (no process group).

``distributed.materialize.replay`` writes into a model built on meta and allocated with
``to_empty`` the values ``netspec.build`` makes with the same seed; each layer's constructor is
recorded on meta and replayed op by op (``distributed.deferred``), so at most one full tensor of
a layer is alive at a time. Checked here against ``netspec.build`` bit for bit, and the memory
by counting the bytes of the tensors the replay allocates (a dispatch mode, torch's own ops).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import netspec
from netspec.compiler.construct import build_tree, copy_graphs
from netspec.distributed.deferred import record
from netspec.distributed.materialize import build_meta_tracked, replay
from tests.live_bytes import LiveBytes

LAYERS: dict[str, dict[str, Any]] = {
    "lstm": {"type": "LSTM", "input_size": 8, "hidden_size": 16, "num_layers": 2},
    "gru": {"type": "GRU", "input_size": 8, "hidden_size": 8, "bidirectional": True},
    "mha": {"type": "MultiheadAttention", "embed_dim": 8, "num_heads": 2},
    "encoder": {"type": "TransformerEncoderLayer", "d_model": 8, "nhead": 2, "dim_feedforward": 16},
    "conv": {"type": "Conv2d", "in_channels": 3, "out_channels": 4, "kernel_size": 3},
    "bn": {"type": "BatchNorm2d", "num_features": 4},  # num_batches_tracked is torch.tensor(0): a constant
    "embed": {"type": "Embedding", "num_embeddings": 10, "embedding_dim": 8, "padding_idx": 0},
    "norm": {"type": "LayerNorm", "normalized_shape": 8},
    "lazy": {"type": "LazyLinear", "out_features": 3},
    "prelu": {"type": "PReLU", "num_parameters": 4},
}


def _spec(layers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"netspec": 1, "seed": 5, "model": {"type": "ModuleDict", "layers": layers}, **extra}


def _replayed(spec: dict[str, Any], dtype: torch.dtype | None = None) -> torch.nn.Module:
    inferred = netspec.read(spec).inferred
    model, unfilled = build_meta_tracked(inferred.root, copy_graphs(inferred.graphs), dtype, inferred.lazy_inputs)
    assert unfilled == []
    model.to_empty(device="cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec["seed"])
        replay(inferred.root, model, torch.device("cpu"), dtype, copy_graphs(inferred.graphs), inferred.lazy_inputs)
    return model


@pytest.mark.parametrize("dtype", [None, "bfloat16"])
def test_the_replay_writes_what_one_process_builds_bit_for_bit(dtype: str | None) -> None:
    spec = _spec({k: v for k, v in LAYERS.items() if k != "lazy"})
    torch_dtype = getattr(torch, dtype) if dtype else None
    expected = netspec.build(spec, dtype=dtype).model
    got = _replayed(spec, torch_dtype)
    assert set(got.state_dict()) == set(expected.state_dict())
    for name, tensor in expected.state_dict().items():
        assert got.state_dict()[name].dtype == tensor.dtype, name
        assert torch.equal(got.state_dict()[name], tensor), name
    assert int(got.state_dict()["bn.num_batches_tracked"]) == 0


LAZY_GRAPH: dict[str, Any] = {
    "netspec": 1,
    "seed": 2,
    "input": {"shape": [5]},
    "model": {
        "type": "Graph",
        "inputs": ["x"],
        "layers": {"fc": LAYERS["lazy"], "norm": {"type": "LayerNorm", "normalized_shape": 3}},
        "parameters": {"scale": {"shape": [3], "init": "normal"}},
        "forward": ["y = norm(fc(x)) * scale"],
        "outputs": "y",
    },
}


def test_a_lazy_layer_and_a_graph_replay_the_same_values() -> None:
    expected = netspec.build(LAZY_GRAPH).model.state_dict()
    got = _replayed(LAZY_GRAPH).state_dict()
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name


def test_every_layer_here_is_recorded_not_built_whole() -> None:
    cases = [(_spec({"x": layer}), "x") for name, layer in LAYERS.items() if name != "lazy"]
    for spec, name in [*cases, (LAZY_GRAPH, "fc")]:
        inferred = netspec.read(spec).inferred
        node, graphs = inferred.root.children[name], copy_graphs(inferred.graphs)
        recording = record(lambda: build_tree(node, torch.device("meta"), None, graphs, inferred.lazy_inputs))  # noqa: B023
        assert recording is not None, node.type_name


def test_a_rank_holds_one_full_tensor_of_a_layer_at_a_time() -> None:
    """A 2-layer LSTM has eight tensors; built whole, all of them are alive at once; replayed, one."""
    layer = {"type": "LSTM", "input_size": 64, "hidden_size": 64, "num_layers": 2}
    spec = _spec({"rnn": layer})
    largest = 4 * 64 * 64 * 4  # weight_ih_l0, weight_hh_l0, ...: [256, 64] float32
    inferred = netspec.read(spec).inferred
    node = inferred.root.children["rnn"]
    whole = LiveBytes()
    with whole:
        module = build_tree(node, torch.device("cpu"), None, copy_graphs(inferred.graphs))
    del module
    assert whole.peak >= 4 * largest  # the counter sees the whole layer: four matrices, four biases
    model, _ = build_meta_tracked(inferred.root, copy_graphs(inferred.graphs), None)
    model.to_empty(device="cpu")
    replayed = LiveBytes()
    with replayed:
        replay(inferred.root, model, torch.device("cpu"), None, copy_graphs(inferred.graphs))
    assert largest <= replayed.peak <= largest + 4 * 256 * 4  # one matrix (and at most a bias beside it)
