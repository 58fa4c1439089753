"""Emit of forwards that iterate over traced values (issue 12: timm's Twins unpacks ``x, size = embed(x)``
and passes ``size`` on, MobileNetV5's fusion adapter loops over a list of feature maps). Plain symbolic
tracing stops there ("Proxy object cannot be iterated"); guarded tracing gives the values examples, so
the loop is unrolled for the example's structure. Each round trip (tests/zoo.py) compares the rebuilt
model with the original in eval and train mode."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from zoo import round_trip


class _Embed(nn.Module):
    """Twins' patch embedding: the tokens and the feature map's (H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 8, 2, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        size = (x.shape[2], x.shape[3])
        return x.flatten(2).transpose(1, 2), size


class _Positional(nn.Module):
    """Twins' PEG: tokens back to a map of the given size, a depthwise conv, and back."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        feat = x.transpose(1, 2).reshape(b, c, *size)
        return self.conv(feat).flatten(2).transpose(1, 2) + x


class _TwinsStyle(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = _Embed()
        self.pos = _Positional()
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        x, size = self.embed(x)
        x = self.pos(x, size)
        x = x.reshape(b, *size, -1).permute(0, 3, 1, 2).contiguous()
        return self.head(x.mean((2, 3)))


def test_a_childs_tuple_output_unpacked_and_passed_on_round_trips() -> None:
    outcome = round_trip("twins-style", _TwinsStyle, (3, 8, 8))
    assert outcome.status == "exact", outcome


class _Fusion(nn.Module):
    """MobileNetV5's multi-scale fusion adapter: resize every map to the first one's size, then concatenate."""

    def __init__(self) -> None:
        super().__init__()
        self.ffn = nn.Conv2d(12, 4, 1)

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        high = inputs[0].shape[-2:]
        resized = []
        for img in inputs:
            if img.shape[-2] < high[0] or img.shape[-1] < high[1]:
                img = F.interpolate(img, size=high, mode="nearest")
            resized.append(img)
        return self.ffn(torch.cat(resized, dim=1))


class _MobileNetV5Style(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.msfa = _Fusion()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        return self.msfa([a, self.down(a)])


def test_a_loop_over_a_list_of_feature_maps_round_trips() -> None:
    outcome = round_trip("mobilenetv5-style", _MobileNetV5Style, (3, 8, 8))
    assert outcome.status == "exact", outcome
