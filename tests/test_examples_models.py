"""Shipped example models against real PyTorch: torchvision's MobileNetV2 and a hand-written YOLOv5s backbone.

Same state_dict keys and shapes, and the same outputs once the spec-built model's weights are loaded.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn as nn

import netspec
from tests.conftest import SPECS

sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
torchvision = pytest.importorskip("torchvision")


def assert_same_model(built: nn.Module, hand: nn.Module, x: torch.Tensor) -> None:
    ours = {k: tuple(v.shape) for k, v in built.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in hand.state_dict().items()}
    assert list(ours) == list(theirs)
    assert ours == theirs
    hand.load_state_dict(built.state_dict())
    built.eval(), hand.eval()
    with torch.no_grad():
        torch.testing.assert_close(built(x), hand(x), rtol=1e-4, atol=1e-5)


def test_mobilenet_v2_is_torchvisions() -> None:
    built = netspec.build(SPECS / "mobilenet_v2.yaml").model
    assert sum(p.numel() for p in built.parameters()) == 3_504_872
    torch.manual_seed(0)
    assert_same_model(built, torchvision.models.mobilenet_v2(), torch.randn(2, 3, 224, 224))


# -- YOLOv5s backbone, written by hand after ultralytics/yolov5 models/common.py (v6.0) ---------------


class Conv(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=0.001, momentum=0.03)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c1: int, c2: int, shortcut: bool = True) -> None:
        super().__init__()
        self.cv1 = Conv(c1, c2, 1)
        self.cv2 = Conv(c2, c2, 3)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_)
        self.cv2 = Conv(c1, c_)
        self.cv3 = Conv(2 * c_, c2)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1: int, c2: int, k: int = 5) -> None:
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_)
        self.cv2 = Conv(c_ * 4, c2)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


def yolov5s_backbone() -> nn.Sequential:
    return nn.Sequential(
        Conv(3, 32, 6, 2, 2),
        Conv(32, 64, 3, 2),
        C3(64, 64, 1),
        Conv(64, 128, 3, 2),
        C3(128, 128, 2),
        Conv(128, 256, 3, 2),
        C3(256, 256, 3),
        Conv(256, 512, 3, 2),
        C3(512, 512, 1),
        SPPF(512, 512, 5),
    )


def test_yolov5s_backbone_matches_the_hand_written_one() -> None:
    built = netspec.build(SPECS / "yolov5s_backbone.yaml").model
    hand = yolov5s_backbone()
    assert sum(p.numel() for p in built.parameters()) == sum(p.numel() for p in hand.parameters())
    torch.manual_seed(0)
    assert_same_model(built, hand, torch.randn(2, 3, 128, 128))
    # The shortcut is there only where it was asked for: C3's bottlenecks add their input.
    assert "x + h" in built[2].m[0].code
