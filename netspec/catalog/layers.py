"""netspec's own layer types and functions, for what torch.nn lacks but torchvision and timm models use.

In: nothing (plain definitions). Out: ``drop_path`` (a statement function, timm's ``drop_path`` and
torchvision's ``stochastic_depth`` in one) and ``StochasticDepth`` (a layer type with torchvision's
``StochasticDepth(p, mode)`` signature). Both draw exactly the random numbers torchvision and timm
draw (one ``bernoulli_`` over a ``[N, 1, ...]`` or ``[1, ...]`` tensor, only in training mode with
``p > 0``), so a seeded run matches them bit for bit, and both compile under ``torch.jit.script``,
``torch.compile(fullgraph=True)`` and ``torch.export``. ``OWN_LAYERS`` also lists Swin's window attention
layers (``catalog/windows.py``) and the TensorFlow "SAME" padding layers (``catalog/same_padding.py``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn as nn

from .same_padding import AvgPool2dSame, Conv2dSame, MaxPool2dSame
from .windows import RelativePositionalMultiHeadAttention, ShiftedWindowAttention, ShiftedWindowAttentionV2

DROP_MODES = ("row", "batch")


def drop_path(x: torch.Tensor, p: float = 0.0, training: bool = False, mode: str = "row") -> torch.Tensor:
    """Zero whole samples (``mode="row"``) or the whole batch (``"batch"``) with probability ``p``, and
    scale what survives by ``1 / (1 - p)``; the identity in eval mode or with ``p == 0``."""
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop_path: p is a probability and must be in [0, 1], got {p}")
    if mode != "row" and mode != "batch":
        raise ValueError(f"drop_path: mode must be 'row' or 'batch', got '{mode}'")
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    size = [x.shape[0]] + [1] * (x.ndim - 1) if mode == "row" else [1] * x.ndim
    noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(keep)
    if keep > 0.0:
        noise.div_(keep)
    return x * noise


class StochasticDepth(nn.Module):
    """``torchvision.ops.StochasticDepth``: ``drop_path`` as a layer that follows ``train()``/``eval()``."""

    def __init__(self, p: float, mode: Literal["row", "batch"] = "row") -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"StochasticDepth: p is a probability and must be in [0, 1], got {p}")
        if mode not in DROP_MODES:
            raise ValueError(f"StochasticDepth: mode must be 'row' or 'batch', got '{mode}'")
        self.p = p
        self.mode = mode

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return drop_path(input, self.p, self.training, self.mode)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode={self.mode}"


# Layer types netspec itself provides, registered in the catalogue beside torch.nn's.
OWN_LAYERS: tuple[type[nn.Module], ...] = (
    StochasticDepth,
    ShiftedWindowAttention,
    ShiftedWindowAttentionV2,
    RelativePositionalMultiHeadAttention,
    Conv2dSame,
    MaxPool2dSame,
    AvgPool2dSame,
)
