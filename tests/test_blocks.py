"""Blocks (reusable, parameterised sub-networks) and the reference architectures built from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import SPECS
from specfiles import write_spec_file

import netspec
from netspec import SpecError

# torchvision's state_dict layouts (key, shape) and parameter counts, kept with the tests.
REFERENCE = Path(__file__).resolve().parent / "data"


def reference_state(name: str) -> tuple[list[tuple[str, list[int]]], int]:
    """Rows of ``tests/data/NAME.state_dict.tsv``; a missing file fails the test (it is part of the repo)."""
    path = REFERENCE / f"{name}.state_dict.tsv"
    rows, total = [], 0
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            total = int(line.rsplit(",", 1)[1].split()[0].replace(",", ""))
            continue
        key, shape = line.split("\t")
        rows.append((key, [int(d) for d in shape.strip("[]").split(",") if d.strip()]))
    return rows, total


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_state_dict_equals_torchvision(name: str) -> None:
    expected, total = reference_state(name)
    model = netspec.build(SPECS / f"{name}.yaml", device="meta").model
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == expected
    assert sum(p.numel() for p in model.parameters()) == total


def test_torchvision_style_checkpoint_loads_strictly_and_runs() -> None:
    expected, _ = reference_state("resnet18")
    generator = torch.Generator().manual_seed(0)
    checkpoint = {k: torch.randn(shape, generator=generator) if shape else torch.tensor(0) for k, shape in expected}
    for key in checkpoint:
        if key.endswith("running_var"):
            checkpoint[key] = checkpoint[key].abs() + 0.5
    model = netspec.load(SPECS / "resnet18.yaml").model
    model.load_state_dict(checkpoint, strict=True)
    out = model.eval()(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 1000) and torch.isfinite(out).all()


def test_block_instance_is_one_module_named_after_the_block() -> None:
    model = netspec.build(SPECS / "resnet18.yaml", device="meta").model
    block = model.layer1[0]
    assert type(block).__name__ == "BasicBlock"
    assert type(model.layer2[0]).__name__ == "DownBlock"
    assert repr(block).startswith("BasicBlock(")
    # The body's children are the block's own: no extra level in parameter names.
    assert "layer1.0.conv1.weight" in model.state_dict()
    assert [name for name, _ in block.named_children()] == ["conv1", "bn1", "relu", "conv2", "bn2"]


def test_sequential_block_matches_hand_written(tmp_path: Path) -> None:
    model = netspec.load(SPECS / "vgg11.yaml").model.eval()
    first = model.features[0]
    assert type(first).__name__ == "ConvBNReLU" and isinstance(first, nn.Sequential)
    hand = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(inplace=True)).eval()
    hand.load_state_dict(first.state_dict(), strict=True)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(first(x), hand(x))


def write(tmp_path: Path, text: str) -> Path:
    return write_spec_file(tmp_path, text, "blocks.yaml")


BLOCKS = """
netspec: 1
input: {shape: [8]}
blocks:
  Dense:
    params: {width: int, act: {type: str, default: ReLU}}
    body:
      type: Sequential
      layers:
        fc: {type: Linear, out_features: "${width}"}
        act: "${act}"
  Tower:
    params: {depth: int, width: int}
    body: {type: Sequential, repeat: "${depth}", layer: {type: Dense, width: "${width * (i + 1)}"}}
model: MODEL
"""


def test_nested_blocks_repeat_and_index(tmp_path: Path) -> None:
    spec = write(tmp_path, BLOCKS.replace("MODEL", "{type: Tower, depth: 3, width: 4}"))
    model = netspec.load(spec).model
    assert type(model).__name__ == "Tower"
    assert [type(m).__name__ for m in model] == ["Dense"] * 3
    assert [m.fc.out_features for m in model] == [4, 8, 12]
    assert model[1].fc.in_features == 4  # inferred from the previous block's output
    assert model(torch.randn(2, 8)).shape == (2, 12)


def test_block_default_and_override(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        BLOCKS.replace(
            "MODEL", "{type: Sequential, layers: [{type: Dense, width: 3}, {type: Dense, width: 2, act: GELU}]}"
        ),
    )
    model = netspec.load(spec).model
    assert isinstance(model[0].act, nn.ReLU) and isinstance(model[1].act, nn.GELU)


@pytest.mark.parametrize(
    ("model", "line", "wanted"),
    [
        ("{type: Dense, widht: 3}", 14, "block Dense has no parameter 'widht'"),
        ("{type: Dense}", 14, "block Dense needs parameter 'width' (int)"),
        ("{type: Dense, width: wide}", 14, "block Dense parameter 'width' expects int, got str 'wide'"),
        ("{type: Dence, width: 3}", 14, "did you mean 'Dense'?"),
    ],
)
def test_block_parameter_errors_at_the_use_site(tmp_path: Path, model: str, line: int, wanted: str) -> None:
    spec = write(tmp_path, BLOCKS.replace("MODEL", model))
    with pytest.raises(SpecError) as err:
        netspec.read(spec)
    assert f"blocks.yaml:{line}:" in str(err.value)
    assert wanted in str(err.value)


def test_misspelled_block_param_suggests_the_right_one(tmp_path: Path) -> None:
    spec = write(tmp_path, BLOCKS.replace("MODEL", "{type: Dense, widht: 3}"))
    with pytest.raises(SpecError, match="did you mean 'width'"):
        netspec.read(spec)


def test_recursive_blocks_are_an_error(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        blocks:
          A: {body: {type: Sequential, layers: [B]}}
          B: {body: {type: Sequential, layers: [A]}}
        model: A
        """,
    )
    with pytest.raises(SpecError, match="blocks use each other recursively: A -> B -> A"):
        netspec.read(spec)


def test_block_name_may_not_shadow_torch(tmp_path: Path) -> None:
    spec = write(tmp_path, "netspec: 1\nblocks:\n  Linear: {body: ReLU}\nmodel: Linear\n")
    with pytest.raises(SpecError, match=r"blocks.yaml:3:3: blocks.Linear: block name 'Linear' shadows torch.nn.Linear"):
        netspec.read(spec)


def test_error_inside_a_block_body_names_the_instance(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [8]}
        blocks:
          Bad:
            params: {p: float}
            body: {type: Dropout, p: "${p}"}
        model: {type: Sequential, layers: {ok: {type: Bad, p: 0.1}, broken: {type: Bad, p: 1.5}}}
        """,
    )
    with pytest.raises(SpecError) as err:
        netspec.read(spec)
    text = str(err.value)
    assert "blocks.yaml:6:" in text and "p is a probability and must be in [0, 1], got 1.5" in text


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class _ResNet18(nn.Module):
    """torchvision.models.resnet18, written out: same construction order, same init loop."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(_BasicBlock(64, 64), _BasicBlock(64, 64))
        self.layer2 = nn.Sequential(_BasicBlock(64, 128, 2), _BasicBlock(128, 128))
        self.layer3 = nn.Sequential(_BasicBlock(128, 256, 2), _BasicBlock(256, 256))
        self.layer4 = nn.Sequential(_BasicBlock(256, 512, 2), _BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, 1000)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def test_resnet18_spec_is_torchvision_resnet18_weight_for_weight() -> None:
    """Same seed, same construction order, same init rules: bit-identical weights and outputs."""
    built = netspec.load(SPECS / "resnet18.yaml").model.eval()
    torch.manual_seed(0)
    hand = _ResNet18().eval()
    state = hand.state_dict()
    assert list(built.state_dict()) == list(state)
    assert all(torch.equal(v, state[k]) for k, v in built.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(built(x), hand(x))


def test_errors_in_a_shared_body_name_the_instance_and_the_copy(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [16, 4, 4]}
        blocks:
          Unit:
            params: {g: int}
            body:
              type: Sequential
              layers:
                norm: {type: GroupNorm, num_groups: "${g}"}
        model: {type: Sequential, layers: {a: {type: Unit, g: 4}, b: {type: Unit, g: 3}}}
        """,
    )
    with pytest.raises(SpecError, match=r"\(in block Unit, used by b at model\.layers\.b\)"):
        netspec.read(spec)
    repeated = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [8]}
        model:
          type: Sequential
          repeat: 3
          layer: {type: Linear, in_features: 8, out_features: "${8 if i < 1 else 4}"}
        """,
    )
    with pytest.raises(SpecError, match=r"layer 2 expects 8 input features but layer 1 produces 4 \(in copy i=2"):
        netspec.read(repeated)
