"""netspec.emit round trips: hand-written models -> spec -> YAML -> rebuilt model, same weights, same outputs."""

from __future__ import annotations

import glob
import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netspec
from netspec.emitter.walker import emit

ROOT = Path(__file__).resolve().parents[1]


def rebuild(spec: netspec.Spec) -> nn.Module:
    """Spec -> YAML text -> netspec.read -> netspec.build: what a user does with an emitted spec."""
    import yaml

    again = netspec.read(yaml.safe_load(spec.to_yaml()))
    return netspec.build(again).model


def assert_round_trip(
    model: nn.Module, *inputs: torch.Tensor, input_shape: tuple[int, ...] | None = None
) -> netspec.Spec:
    model.eval()
    spec = emit(model, input_shape=input_shape)
    rebuilt = rebuild(spec)
    want = model.state_dict()
    got = rebuilt.state_dict()
    assert list(got) == list(want)
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    assert sum(p.numel() for p in rebuilt.parameters()) == sum(p.numel() for p in model.parameters())
    rebuilt.load_state_dict(want, strict=True)
    rebuilt.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(*inputs), model(*inputs))
    return spec


# -- models written the way people write them ----------------------------------------------------------


class LeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.dropout(x, p=0.3, training=self.training)
        return self.fc3(F.relu(self.fc2(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class SmallResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, stride=2), BasicBlock(32, 32))
        self.head = nn.Linear(32, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(x)


class UNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU()
            )

        self.enc1 = double(1, 8)
        self.enc2 = double(8, 16)
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ConvTranspose2d(16, 8, kernel_size=2, stride=2)
        self.dec1 = double(16, 8)
        self.out = nn.Conv2d(8, 2, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        d1 = self.dec1(torch.cat([self.up(e2), e1], dim=1))
        return self.out(d1)


class TinyViT(nn.Module):
    def __init__(self, image: int = 16, patch: int = 4, dim: int = 32, depth: int = 2, heads: int = 4) -> None:
        super().__init__()
        n = (image // patch) ** 2
        self.patch_embed = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, n + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, dim * 2, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class Scaled(nn.Module):
    """A registered buffer (persistent) and a non-persistent one that init reproduces."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)
        self.register_buffer("scale", torch.full((8,), 0.5))
        self.register_buffer("offset", torch.ones(1, 8), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) * self.scale + self.offset


class TwoHeads(nn.Module):
    """Several inputs and a dict output; a ModuleDict indexed by constant keys."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(6, 12)
        self.heads = nn.ModuleDict({"cls": nn.Linear(12, 3), "reg": nn.Linear(12, 1)})

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(a - b))
        return {"logits": self.heads["cls"](h), "value": self.heads.reg(h).squeeze(-1)}


# -- round trips -----------------------------------------------------------------------------------------


def test_lenet_with_functional_relu_and_view() -> None:
    spec = assert_round_trip(LeNet(), torch.randn(2, 1, 28, 28), input_shape=(1, 28, 28))
    node = spec.to_dict()["model"]
    assert node["type"] == "Graph" and list(node["layers"]) == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    text = "\n".join(node["forward"])
    assert "max_pool2d(relu(conv1(x)), 2)" in text
    assert ".view(" in text and ".size(0)" in text
    # F.dropout(training=self.training) is written without the flag: the Graph language adds it.
    assert "dropout(" in text and "training" not in text
    assert spec.to_dict()["input"] == {"shape": [1, 28, 28]}


def test_dropout_follows_train_and_eval_mode_after_rebuild() -> None:
    model = LeNet()
    rebuilt = rebuild(emit(model))
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(4, 1, 28, 28)
    rebuilt.train()
    torch.manual_seed(0)
    a = rebuilt(x)
    torch.manual_seed(1)
    b = rebuilt(x)
    assert not torch.equal(a, b)  # dropout active in training
    rebuilt.eval()
    assert torch.equal(rebuilt(x), rebuilt(x))


def test_residual_blocks_become_reused_blocks() -> None:
    spec = assert_round_trip(SmallResNet(), torch.randn(2, 3, 16, 16), input_shape=(3, 16, 16))
    data = spec.to_dict()
    assert set(data["blocks"]) <= {"BasicBlock", "BasicBlock_2", "BasicBlock_3"}
    uses = data["model"]["layers"]["layer1"]
    # Two identical blocks: one block used twice (as a repeat).
    # (each use passes the block's parameters: in_channels, which the other BasicBlock instances vary)
    assert uses == {"type": "Sequential", "repeat": 2, "layer": {"type": "BasicBlock", "in_channels": 16}}
    built = rebuild(spec)
    assert type(built.layer1[0]).__name__ == "BasicBlock"
    assert "layer2.0.shortcut.0.weight" in built.state_dict()


def test_unet_with_concatenated_skips() -> None:
    spec = assert_round_trip(UNet(), torch.randn(2, 1, 16, 16), input_shape=(1, 16, 16))
    assert any("cat([" in s for s in spec.to_dict()["model"]["forward"])


def test_tiny_vit_parameters_become_graph_tensors() -> None:
    spec = assert_round_trip(TinyViT(), torch.randn(2, 3, 16, 16), input_shape=(3, 16, 16))
    node = spec.to_dict()["model"]
    assert node["parameters"]["cls_token"] == {"shape": [1, 1, 32], "init": "zeros"}
    assert node["parameters"]["pos_embed"]["shape"] == [1, 17, 32]
    blocks = node["layers"]["blocks"]
    assert blocks["type"] == "ModuleList" and blocks["repeat"] == 2
    assert blocks["layer"]["activation"] == "gelu" and blocks["layer"]["norm_first"] is True
    # `for block in self.blocks: x = block(x)` over the whole list is written as one call.
    assert any("blocks(" in s for s in node["forward"])


def test_registered_buffers_keep_values_and_persistence() -> None:
    spec = assert_round_trip(Scaled(), torch.randn(3, 8))
    buffers = spec.to_dict()["model"]["buffers"]
    assert buffers["scale"] == {"shape": [8], "init": {"fn": "constant", "val": 0.5}}
    assert buffers["offset"] == {"shape": [1, 8], "init": "ones", "persistent": False}
    rebuilt = rebuild(spec)
    assert "offset" not in rebuilt.state_dict() and torch.equal(rebuilt.offset, torch.ones(1, 8))


def test_several_inputs_and_dict_outputs() -> None:
    spec = assert_round_trip(TwoHeads(), torch.randn(4, 6), torch.randn(4, 6))
    node = spec.to_dict()["model"]
    assert node["inputs"] == ["a", "b"]
    assert set(node["outputs"]) == {"logits", "value"}
    text = "\n".join(node["forward"])
    assert "heads.cls(" in text and "heads.reg(" in text  # self.heads["cls"] and self.heads.reg alike


def test_indexed_list_elements_and_partial_chains() -> None:
    class Picky(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.blocks[2](self.blocks[0](x)) - self.blocks[-2](x)

    spec = assert_round_trip(Picky(), torch.randn(2, 4))
    text = "\n".join(spec.to_dict()["model"]["forward"])
    assert "blocks[2](blocks[0](x))" in text and "blocks[1](x)" in text


def test_model_on_meta_device_emits_without_memory() -> None:
    with torch.device("meta"):
        model = SmallResNet()
    spec = emit(model)
    assert netspec.build(spec, device="meta").model.state_dict().keys() == model.state_dict().keys()


def test_yaml_and_json_forms_read_back() -> None:
    spec = emit(SmallResNet(), input_shape=(3, 16, 16))
    path_json = netspec.read(__import__("json").loads(spec.to_json()))
    assert path_json.to_dict() == spec.to_dict()


# -- torch's own composite layers -------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:enable_nested_tensor")
@pytest.mark.parametrize(
    ("model", "inputs"),
    [
        (
            nn.Transformer(
                d_model=16,
                nhead=2,
                num_encoder_layers=2,
                num_decoder_layers=1,
                dim_feedforward=32,
                dropout=0.0,
                batch_first=True,
            ),
            (torch.randn(2, 5, 16), torch.randn(2, 3, 16)),
        ),
        (
            nn.TransformerEncoder(
                nn.TransformerEncoderLayer(16, 4, 24, activation="gelu"),
                3,
                norm=nn.LayerNorm(16),
                enable_nested_tensor=False,
            ),
            (torch.randn(5, 2, 16),),
        ),
        (
            nn.LSTM(8, 16, num_layers=2, batch_first=True, bidirectional=True, dropout=0.2, proj_size=4),
            (torch.randn(2, 5, 8),),
        ),
        (nn.GRU(4, 6, bias=False), (torch.randn(3, 2, 4),)),
    ],
    ids=["Transformer", "TransformerEncoder", "LSTM", "GRU"],
)
def test_torch_composite_layers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    assert_round_trip(model, *inputs)


def test_transformer_encoder_nests_its_layer_node() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 4, 24, batch_first=True), 3, norm=nn.LayerNorm(16))
    node = emit(model).to_dict()["model"]
    assert node["encoder_layer"] == {
        "type": "TransformerEncoderLayer",
        "d_model": 16,
        "nhead": 4,
        "dim_feedforward": 24,
        "batch_first": True,
    }
    assert node["num_layers"] == 3
    assert node["norm"] == {"type": "LayerNorm", "normalized_shape": 16}


def test_multihead_attention_with_kdim_vdim() -> None:
    class Attend(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = nn.MultiheadAttention(16, 4, kdim=8, vdim=12, bias=False, batch_first=True)

        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            out, _ = self.attn(q, k, v)
            return out

    spec = assert_round_trip(Attend(), torch.randn(2, 3, 16), torch.randn(2, 4, 8), torch.randn(2, 4, 12))
    assert spec.to_dict()["model"]["layers"]["attn"] == {
        "type": "MultiheadAttention",
        "embed_dim": 16,
        "num_heads": 4,
        "bias": False,
        "kdim": 8,
        "vdim": 12,
        "batch_first": True,
    }


def test_embedding_and_lstm_with_unused_state_outputs() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(20, 8, padding_idx=0)
            self.lstm = nn.LSTM(8, 16, batch_first=True)
            self.out = nn.Linear(16, 5)

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            h, (_hn, _cn) = self.lstm(self.emb(tokens))
            return self.out(h)

    spec = assert_round_trip(Tagger(), torch.randint(0, 20, (2, 7)))
    layers = spec.to_dict()["model"]["layers"]
    assert layers["emb"] == {"type": "Embedding", "num_embeddings": 20, "embedding_dim": 8, "padding_idx": 0}
    assert all("hn" not in s and "cn" not in s for s in spec.to_dict()["model"]["forward"])


# -- the shipped specs: emit(build(spec)) gives an equivalent spec ---------------------------------------


SPECS = sorted(glob.glob(str(ROOT / "specs" / "*.yaml")))


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("path", SPECS, ids=[Path(p).stem for p in SPECS])
def test_emit_of_built_shipped_spec_is_equivalent(path: str) -> None:
    built = netspec.load(path)
    model = built.model.eval()
    spec = emit(model, optimizer=built.optimizer)
    rebuilt = rebuild(spec)
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    rebuilt.eval()
    inp = built.spec.document.input
    if inp is None:
        return
    x = torch.randint(0, 16, (2, *inp.shape)) if inp.dtype.startswith("int") else torch.randn(2, *inp.shape)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_resnet18_blocks_come_back_as_parameterised_blocks() -> None:
    built = netspec.load(ROOT / "specs" / "resnet18.yaml")
    data = emit(built.model).to_dict()
    assert set(data["blocks"]) == {"BasicBlock", "DownBlock"}
    # a parameter has no default taken from one instance: every use says its own value
    params = data["blocks"]["DownBlock"]["params"]
    assert params and all("default" not in decl for decl in params.values()), params
    uses = [layer for stage in ("layer2", "layer3", "layer4") for layer in data["model"]["layers"][stage]["layers"]]
    downs = [u for u in uses if isinstance(u, dict) and u.get("type") == "DownBlock"]
    assert len(downs) == 3 and all(set(params) <= set(u) for u in downs), downs
    rebuilt = rebuild(emit(built.model))
    assert type(rebuilt.layer2[0]).__name__ == "DownBlock"
    assert sum(p.numel() for p in rebuilt.parameters()) == 11_689_512
    assert math.isclose(sum(p.numel() for p in built.model.parameters()), 11_689_512)


class _Residual(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class _C3(nn.Module):
    """YOLO-style: the same block with n = 1, 2, 3 repeated children."""

    def __init__(self, c: int, n: int) -> None:
        super().__init__()
        self.cv1 = nn.Conv2d(c, c, 1)
        self.m = nn.Sequential(*(_Residual(c) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.m(self.cv1(x))


def test_depth_variants_become_one_block_with_a_count_parameter() -> None:
    model = nn.Sequential(_C3(4, 1), _C3(4, 2), _C3(4, 3))
    data = emit(model, input_shape=(4, 8, 8)).to_dict()
    assert set(data["blocks"]) == {"_C3", "_Residual"}  # not _C3, _C3_2, _C3_3
    assert data["blocks"]["_C3"]["params"] == {"depth": {"type": "int"}}
    assert data["blocks"]["_C3"]["body"]["layers"]["m"] == {
        "type": "Sequential",
        "repeat": "${depth}",
        "layer": "_Residual",
    }
    assert [use["depth"] for use in data["model"]["layers"]] == [1, 2, 3]
    rebuilt = netspec.build(netspec.read(data)).model
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 4, 8, 8)
    torch.testing.assert_close(rebuilt(x), model(x))
