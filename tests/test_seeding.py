"""A spec's ``seed`` fixes the same weights in every floating dtype and leaves the caller's RNG streams alone."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import netspec

SPEC: dict[str, Any] = {
    "netspec": 1,
    "seed": 7,
    "input": {"shape": [3, 8, 8]},
    "model": {
        "type": "Graph",
        "inputs": ["x"],
        "layers": {
            "conv": {"type": "Conv2d", "out_channels": 4, "kernel_size": 3},
            "bn": {"type": "BatchNorm2d"},
            "proj": {"type": "Linear", "out_features": 16},
            "norm": {"type": "LayerNorm"},
            "attn": {"type": "MultiheadAttention", "num_heads": 2, "batch_first": True},
            "rnn": {"type": "LSTM", "hidden_size": 8, "batch_first": True},
            "embed": {"type": "Embedding", "num_embeddings": 10, "embedding_dim": 16},
        },
        "parameters": {"pos": {"shape": [1, 36, 16], "init": {"fn": "trunc_normal", "std": 0.02}}},
        "forward": [
            "h = bn(conv(x)).flatten(2).transpose(1, 2)",
            "h = norm(proj(h.repeat(1, 1, 4)) + pos)",
            "a, w = attn(h, h, h)",
            "o, state = rnn(a + embed(w.argmax(-1)))",
        ],
        "outputs": "o",
    },
    "init": [
        {"match": "proj.weight", "fn": "normal", "std": 0.5},
        {"match": "rnn.weight_hh_l0", "fn": "orthogonal"},
        {"match": "embed.weight", "fn": "uniform", "a": -2, "b": 2},
    ],
}


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_every_dtype_gets_the_float32_weights_up_to_its_rounding(dtype: torch.dtype) -> None:
    reference = netspec.build(SPEC).model.state_dict()
    other = netspec.build(SPEC, dtype=dtype).model.state_dict()
    assert list(other) == list(reference)
    for name, tensor in reference.items():
        if tensor.is_floating_point():
            assert other[name].dtype == dtype, name
            assert torch.equal(other[name], tensor.to(dtype)), name  # drawn in float32, then cast
        else:
            assert torch.equal(other[name], tensor), name  # BatchNorm's num_batches_tracked stays int64


def test_a_seeded_build_leaves_the_callers_cpu_stream_where_it_was() -> None:
    torch.manual_seed(123)
    expected = torch.rand(5)
    torch.manual_seed(123)
    netspec.build(SPEC)
    assert torch.equal(torch.rand(5), expected)


def test_the_fork_covers_every_visible_device_of_the_accelerator(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU build on a machine with two GPUs forks both (torch.manual_seed seeds both); cuda:1 included."""
    calls: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def recording_fork(devices: Any = None, enabled: bool = True, device_type: str | None = None) -> Iterator[None]:
        calls.append({"devices": list(devices), "device_type": device_type})
        state = torch.get_rng_state()
        try:
            yield
        finally:
            torch.set_rng_state(state)

    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda *a, **k: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.random, "fork_rng", recording_fork)
    monkeypatch.setattr(torch, "manual_seed", lambda seed: torch.default_generator.manual_seed(seed))
    netspec.build(SPEC)
    # The seeded build forks both GPUs; validation's own forks (init argument checks) touch the CPU only.
    assert {"devices": [0, 1], "device_type": "cuda"} in calls
    assert all(c["devices"] in ([], [0, 1]) for c in calls)


def test_an_init_function_with_impossible_arguments_fails_validation_not_build(tmp_path: Any) -> None:
    spec = dict(SPEC, init=[{"match": "embed.weight", "fn": "uniform", "a": 5, "b": 1}])
    with pytest.raises(netspec.SpecError, match=r"uniform_ expects to return a \[from, to\) range"):
        netspec.read(spec)
