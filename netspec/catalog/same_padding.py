"""TensorFlow's "SAME" padding, computed from the input's size at run time: a function and three layer types.

In: nothing (plain definitions). Out: the statement function ``pad_same`` and the layer types
``Conv2dSame``, ``MaxPool2dSame`` and ``AvgPool2dSame``. TensorFlow's ``padding="SAME"`` gives an
output of ``ceil(size / stride)`` along each spatial dim, padding ``max((ceil(size / stride) - 1) *
stride + (kernel - 1) * dilation + 1 - size, 0)`` in all, the odd one at the end (bottom, right). The
amount depends on the input's size, so it is computed in ``forward`` for whatever size comes in.
torch's ``nn.Conv2d(padding="same")`` only supports stride 1 (and pads the odd one at the start);
these layers take any stride. They follow timm's ``timm/layers/padding.py``, ``conv2d_same.py`` and
``pool2d_same.py`` (Apache-2.0) operation for operation — the same constructor arguments,
state_dict names and attributes — so timm's ``Conv2dSame``, ``MaxPool2dSame`` and ``AvgPool2dSame``
(EfficientNet's ``tf_`` ports, NASNet, PNASNet) are emitted as these and compute bit-identical
outputs. A max pool pads with ``-inf``, so padding never wins the max; an average pool pads with
zeros that count in the average, as TensorFlow-ported weights expect.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.common_types import _size_2_t


def same_padding(size: int, kernel_size: int, stride: int, dilation: int = 1) -> int:
    """The total "SAME" padding along one dim: what makes the output ``ceil(size / stride)`` long."""
    return max((-(-size // stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)


def pad_same(
    x: torch.Tensor,
    kernel_size: list[int],
    stride: list[int],
    dilation: list[int] | None = None,
    value: float = 0.0,
) -> torch.Tensor:
    """Pad the last two dims of ``x`` for a "SAME" window of ``kernel_size``/``stride``/``dilation`` (default
    ``[1, 1]``): half of each dim's padding before, the rest (one more when odd) after, with ``value``."""
    if dilation is None:
        dilation = [1, 1]
    if len(kernel_size) != 2 or len(stride) != 2 or len(dilation) != 2:
        raise ValueError(
            f"pad_same: kernel_size, stride and dilation are [h, w] pairs, got {list(kernel_size)}, "
            f"{list(stride)}, {list(dilation)}"
        )
    if min(kernel_size[0], kernel_size[1], stride[0], stride[1], dilation[0], dilation[1]) < 1:
        raise ValueError(
            f"pad_same: kernel_size, stride and dilation must be positive, got {list(kernel_size)}, "
            f"{list(stride)}, {list(dilation)}"
        )
    if x.dim() < 2:
        raise ValueError(f"pad_same: pads the last two dims, so the input needs at least 2 dims, got {x.dim()}")
    ih, iw = x.shape[-2], x.shape[-1]
    pad_h = same_padding(ih, kernel_size[0], stride[0], dilation[0])
    pad_w = same_padding(iw, kernel_size[1], stride[1], dilation[1])
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)


def _pair(value: _size_2_t, name: str, owner: str) -> tuple[int, int]:
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair):
        raise ValueError(f"{owner}: {name} must be an int or a pair of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{owner}: {name} must be positive, got {value!r}")
    return pair  # type: ignore[return-value]


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "SAME" padding for any stride (timm's ``Conv2dSame``): the output is
    ``ceil(size / stride)`` along H and W. Same arguments as ``nn.Conv2d`` less ``padding``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: _size_2_t,
        stride: _size_2_t = 1,
        dilation: _size_2_t = 1,
        groups: int = 1,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        for name, value in (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation)):
            _pair(value, name, "Conv2dSame")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias, device=device, dtype=dtype
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = pad_same(input, self.weight.shape[-2:], self.stride, self.dilation)  # type: ignore[arg-type]
        return F.conv2d(x, self.weight, self.bias, self.stride, (0, 0), self.dilation, self.groups)


class MaxPool2dSame(nn.MaxPool2d):
    """``nn.MaxPool2d`` with TensorFlow's "SAME" padding (timm's ``MaxPool2dSame``): pads with ``-inf`` so the
    output is ``ceil(size / stride)`` along H and W. ``stride`` defaults to ``kernel_size``."""

    def __init__(
        self,
        kernel_size: _size_2_t,
        stride: _size_2_t | None = None,
        dilation: _size_2_t = 1,
        ceil_mode: bool = False,
    ) -> None:
        kernel = _pair(kernel_size, "kernel_size", "MaxPool2dSame")
        steps = kernel if stride is None else _pair(stride, "stride", "MaxPool2dSame")
        super().__init__(kernel, steps, (0, 0), _pair(dilation, "dilation", "MaxPool2dSame"), ceil_mode=ceil_mode)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = pad_same(input, self.kernel_size, self.stride, self.dilation, value=-float("inf"))  # type: ignore[arg-type]
        return F.max_pool2d(x, self.kernel_size, self.stride, (0, 0), self.dilation, self.ceil_mode)


class AvgPool2dSame(nn.AvgPool2d):
    """``nn.AvgPool2d`` with TensorFlow's "SAME" padding (timm's ``AvgPool2dSame``): pads with zeros, which
    count in the average, so the output is ``ceil(size / stride)`` along H and W. ``stride`` defaults to
    ``kernel_size``."""

    def __init__(
        self,
        kernel_size: _size_2_t,
        stride: _size_2_t | None = None,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        kernel = _pair(kernel_size, "kernel_size", "AvgPool2dSame")
        steps = kernel if stride is None else _pair(stride, "stride", "AvgPool2dSame")
        super().__init__(kernel, steps, (0, 0), ceil_mode, count_include_pad)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        x = pad_same(input, self.kernel_size, self.stride)  # type: ignore[arg-type]
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)


__all__ = ["AvgPool2dSame", "Conv2dSame", "MaxPool2dSame", "pad_same", "same_padding"]
