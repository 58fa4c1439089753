"""timm's attention modules whose forward reads a child's tensor or caches a bias in eval mode, and whose
position tables are non-persistent buffers (written out with ``init: {fn: values}``), at small sizes:
each round-trips exactly (tests/zoo.py compares eval and train outputs with the original's). They stand
for the beit, swin_transformer_v2 and levit families, whose smallest models take too long for the fast set."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
from zoo import import_timm, round_trip

timm = import_timm()


class _Plain(nn.Module):
    """A plain parent for timm modules whose ``train`` returns None (LeViT's, EfficientFormer's)."""

    def __init__(self, make: Callable[[], nn.Module]) -> None:
        super().__init__()
        self.attn = make()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


CASES = {
    # qkv.weight read with a bias assembled from q_bias, a zero k_bias and v_bias; a relative position
    # index with class-token entries
    "beit": (lambda: timm.models.beit.Attention(16, num_heads=2, qkv_bias=True, window_size=(3, 3)), (10, 16)),
    # qkv.weight read the same way; a log-spaced relative coordinate table
    "swinv2": (lambda: timm.models.swin_transformer_v2.WindowAttention(16, (3, 3), 2), (9, 16)),
    # the eval-mode attention-bias cache keyed on str(x.device); its index table
    "levit": (
        lambda: _Plain(lambda: timm.models.levit.Attention(16, 4, num_heads=2, attn_ratio=2, resolution=3)),
        (9, 16),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_timm_attention_round_trips_exactly(name: str) -> None:
    make, shape = CASES[name]
    outcome = round_trip(name, make, shape)
    assert outcome.status == "exact", outcome
