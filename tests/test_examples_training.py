"""The training examples in specs/ against hand-written PyTorch: a GPT whose head is its token
embedding (``tie:``), and a fine-tuning spec (``eval:`` BatchNorm, layer-wise lr, EMA, a partial
pretrained load whose report ``netspec build`` shows).

``python tests/test_examples_training.py`` rewrites specs/finetune_backbone.pt from ``pretrained_state``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import netspec
from netspec.cli.main import main

SPECS = Path(__file__).resolve().parents[1] / "specs"

# -- GPT with tied embedding and head ------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, ctx: int, p: float) -> None:
        super().__init__()
        self.c_attn = nn.Linear(dim, 3 * dim)
        self.c_proj = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(p)
        self.resid_dropout = nn.Dropout(p)
        self.heads = heads
        self.register_buffer("bias", torch.tril(torch.ones(ctx, ctx)).view(1, 1, ctx, ctx), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
        y = (self.attn_dropout(F.softmax(att, dim=-1)) @ v).transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, ctx: int, p: float) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, ctx, p)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(
                c_fc=nn.Linear(dim, 4 * dim), gelu=nn.GELU(), c_proj=nn.Linear(4 * dim, dim), dropout=nn.Dropout(p)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TiedGPT(nn.Module):
    """nanoGPT's layout with ``self.transformer.wte.weight = self.lm_head.weight``, flattened."""

    def __init__(self, vocab: int = 512, ctx: int = 64, dim: int = 128, heads: int = 4, depth: int = 2) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(ctx, dim)
        self.drop = nn.Dropout(0.1)
        self.h = nn.ModuleList([Block(dim, heads, ctx, 0.1) for _ in range(depth)])
        self.ln_f = nn.LayerNorm(dim)
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.wte(idx) + self.wpe(torch.arange(idx.size(1))))
        for block in self.h:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def test_gpt_tied_equals_hand_written() -> None:
    built = netspec.load(SPECS / "gpt_tied.yaml")
    model = built.model
    hand = TiedGPT()
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(got) == list(hand.state_dict())
    assert got == {k: tuple(v.shape) for k, v in hand.state_dict().items()}
    assert model.lm_head.weight is model.wte.weight  # one shared tensor, as in the hand-written model
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in hand.parameters())
    model.load_state_dict(hand.state_dict())
    assert model.lm_head.weight is model.wte.weight  # loading copies into the one tensor
    idx = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(0))
    model.eval()
    hand.eval()
    torch.testing.assert_close(model(idx), hand(idx), rtol=1e-5, atol=1e-5)
    # Trained once: the shared tensor is in one optimizer group, under its first name.
    optimizer = built.optimizer
    owners = [g for g in optimizer.param_groups for p in g["params"] if p is model.wte.weight]
    assert len(owners) == 1 and owners[0]["weight_decay"] == pytest.approx(0.1)


# -- fine-tuning --------------------------------------------------------------------------------------------


def pretrained_state() -> dict[str, torch.Tensor]:
    """What finetune_backbone.pt holds: a seeded backbone under ``backbone.`` and a 10-class ``fc`` head."""
    torch.manual_seed(0)
    backbone = hand_features()
    with torch.no_grad():
        for bn in (backbone.bn1, backbone.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
            bn.num_batches_tracked.fill_(1000)
    state = {f"backbone.{k}": v.clone() for k, v in backbone.state_dict().items()}
    return state | {f"fc.{k}": v.clone() for k, v in nn.Linear(16, 10).state_dict().items()}


def hand_features() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(3, 8, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(8),
            relu1=nn.ReLU(),
            conv2=nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
            bn2=nn.BatchNorm2d(16),
            relu2=nn.ReLU(),
        )
    )


def hand_finetune() -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(features=hand_features(), pool=nn.AdaptiveAvgPool2d(1), flatten=nn.Flatten(), head=nn.Linear(16, 5))
    )


def test_shipped_backbone_is_what_pretrained_state_writes() -> None:
    shipped = torch.load(SPECS / "finetune_backbone.pt", weights_only=True)
    expected = pretrained_state()
    assert list(shipped) == list(expected)
    for key, value in expected.items():
        assert torch.equal(shipped[key], value), key


def test_finetune_equals_a_hand_written_fine_tuning_set_up() -> None:
    built = netspec.load(SPECS / "finetune.yaml")
    model = built.model
    hand = hand_finetune()
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in hand.state_dict().items()}
    assert list(model.state_dict()) == list(hand.state_dict())
    # The partial load: the backbone is the file's, the new head is not.
    pretrained = pretrained_state()
    for key, value in model.features.state_dict().items():
        assert torch.equal(value, pretrained[f"backbone.{key}"]), key
    assert model.head.weight.std() < 0.05 and torch.equal(model.head.bias, torch.zeros(5))
    (report,) = [w.message for w in built.warnings if "finetune_backbone.pt" in w.message]
    assert report == (
        "loaded from 'finetune_backbone.pt': loaded 12 (features), missing 2 (head), unexpected 2 (fc), "
        "shape-mismatched (kept the model's) 0"
    )
    # The hand-written loop: BatchNorm in eval mode, backbone at lr 0.001, head at 0.01, biases and
    # norm parameters without weight decay, EMA of parameters and buffers.
    hand.load_state_dict(model.state_dict())
    backbone = [p for n, p in hand.features.named_parameters() if "bn" not in n]
    norms = [p for n, p in hand.features.named_parameters() if "bn" in n]
    hand_opt = torch.optim.SGD(
        [
            {"params": backbone, "lr": 0.001},
            {"params": norms, "lr": 0.001, "weight_decay": 0.0},
            {"params": [hand.head.weight]},
            {"params": [hand.head.bias], "weight_decay": 0.0},
        ],
        lr=0.01,
        momentum=0.9,
        weight_decay=1e-4,
    )
    ema = torch.optim.swa_utils.AveragedModel(
        hand, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999), use_buffers=True
    )
    for step in range(3):
        x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(step))
        y = torch.tensor([0, 1, 2, 3])
        model.train()
        hand.train()
        hand.features.bn1.eval()
        hand.features.bn2.eval()
        assert not model.features.bn1.training and model.features.conv1.training
        for m, opt in ((model, built.optimizer), (hand, hand_opt)):
            opt.zero_grad()
            F.cross_entropy(m(x), y).backward()
            opt.step()
        built.update_average()
        ema.update_parameters(hand)
    for (name, a), b in zip(model.state_dict().items(), hand.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    for (name, a), b in zip(built.averaged.state_dict().items(), ema.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert torch.equal(model.features.bn1.running_mean, pretrained["backbone.bn1.running_mean"])
    assert not torch.equal(model.features.bn1.weight, pretrained["backbone.bn1.weight"])  # trained


def test_finetune_checkpoint_resumes_model_optimizer_and_ema(tmp_path: Path) -> None:
    built = netspec.load(SPECS / "finetune.yaml")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 3])

    def step(b: netspec.Built) -> None:
        b.model.train()
        b.optimizer.zero_grad()
        F.cross_entropy(b.model(x), y).backward()
        b.optimizer.step()
        b.update_average()

    step(built)
    netspec.save(built, tmp_path / "ft.pt")
    resumed = netspec.load(tmp_path / "ft.pt")  # the embedded spec reads no file: weights come from ft.pt
    assert not resumed.model.features.bn2.train().training
    for b in (built, resumed):
        step(b)
    for (name, a), c in zip(resumed.averaged.state_dict().items(), built.averaged.state_dict().values(), strict=True):
        torch.testing.assert_close(a, c, rtol=0, atol=0, msg=name)


def test_netspec_build_shows_the_partial_load(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", str(SPECS / "finetune.yaml")]) == 0
    captured = capsys.readouterr()
    assert "finetune.yaml:32:" in captured.err and "init.1.from: warning:" in captured.err
    assert "loaded 12 (features), missing 2 (head), unexpected 2 (fc)" in captured.err
    assert "Eval mode: features.bn1, features.bn2" in captured.out


if __name__ == "__main__":
    torch.save(pretrained_state(), SPECS / "finetune_backbone.pt")
