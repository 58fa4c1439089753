"""The weight-memory estimate made before allocating, against what torch actually allocates.

Modules built from module arguments (TransformerEncoder's ``encoder_layer``, TransformerDecoder's
``decoder_layer``) deep-copy the template and keep no reference to it: the estimate counts the
copies the model registers, not the template as well.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import netspec
from netspec.compiler.memory import check_fits, human, sizes_in_bytes
from netspec.figures import fits
from netspec.frontend.source import from_data


def real_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


ENC = {"type": "TransformerEncoderLayer", "d_model": 16, "nhead": 2, "dim_feedforward": 32, "batch_first": True}
DEC = {"type": "TransformerDecoderLayer", "d_model": 16, "nhead": 2, "dim_feedforward": 32, "batch_first": True}


def encoder() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=3, norm=nn.LayerNorm(16))


def decoder() -> nn.Module:
    layer = nn.TransformerDecoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    return nn.TransformerDecoder(layer, num_layers=2)


CASES = {
    "encoder": (
        {"type": "TransformerEncoder", "num_layers": 3, "encoder_layer": ENC, "norm": {"type": "LayerNorm",
                                                                                       "normalized_shape": 16}},
        encoder,
    ),
    "decoder": ({"type": "TransformerDecoder", "num_layers": 2, "decoder_layer": DEC}, decoder),
    "encoder in a Sequential": (
        {"type": "Sequential", "layers": [{"type": "Linear", "in_features": 16, "out_features": 16},
                                          {"type": "TransformerEncoder", "num_layers": 3, "encoder_layer": ENC,
                                           "norm": {"type": "LayerNorm", "normalized_shape": 16}}]},
        lambda: nn.Sequential(nn.Linear(16, 16), encoder()),
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_estimate_equals_the_bytes_torch_allocates(case: str) -> None:
    model, hand = CASES[case]
    spec = netspec.read({"netspec": 1, "model": model})
    torch.manual_seed(0)
    expected = real_bytes(hand())
    assert fits(spec, "meta") == expected
    assert real_bytes(netspec.build(spec).model) == expected
    # a float64 build doubles every floating tensor, the copies and nothing else
    assert fits(spec, "meta", torch.float64) == 2 * expected


def test_the_template_is_not_named_among_the_largest_layers() -> None:
    spec = netspec.read({"netspec": 1, "model": CASES["decoder"][0]})
    tensors = spec.inferred.tensors
    assert not [name for name in tensors if "decoder_layer" in name]
    total = sum(sizes_in_bytes(tensors, None).values())
    with pytest.raises(netspec.SpecError) as err:
        check_fits(tensors, torch.device("cpu"), None, from_data({}), available=total - 1)
    assert f"needs {human(total)}" in str(err.value)
    assert "decoder_layer" not in str(err.value)
