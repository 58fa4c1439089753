"""``tie``, ``eval``, ``no_decay`` keywords, ``init: from:`` reports, ``checkpoint_activations`` and
``average`` (contract section 3), each against hand-written PyTorch, and their bad inputs."""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import assert_problem
from specfiles import write_spec_file

import netspec
from netspec import SpecError
from netspec.cli.main import main
from netspec.emitter.walker import emit

# -- tie --------------------------------------------------------------------------------------------------

TINY_LM = """
netspec: 1
seed: 0
model:
  type: Graph
  inputs: [idx]
  layers:
    wte: {type: Embedding, num_embeddings: 10, embedding_dim: 4}
    mix: {type: Linear, in_features: 4, out_features: 4}
    lm_head: {type: Linear, in_features: 4, out_features: 10, bias: false}
  forward: ["h = mix(wte(idx))", "logits = lm_head(h)"]
  outputs: logits
tie:
  lm_head.weight: wte.weight
optimizer: {type: AdamW, lr: 0.1, weight_decay: 0.5}
"""


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.mix = nn.Linear(4, 4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.mix(self.wte(idx)))


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, idx: torch.Tensor) -> None:
    optimizer.zero_grad()
    model(idx).logsumexp(-1).sum().backward()
    optimizer.step()


def test_tie_is_one_tensor_trained_and_decayed_once(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, TINY_LM))
    model, optimizer = built.model, built.optimizer
    hand = TinyLM()
    assert list(model.state_dict()) == list(hand.state_dict())  # both names kept, as PyTorch does
    assert {k: v.shape for k, v in model.state_dict().items()} == {k: v.shape for k, v in hand.state_dict().items()}
    assert model.lm_head.weight is model.wte.weight
    model.load_state_dict(hand.state_dict())
    idx = torch.tensor([[1, 2, 3], [4, 5, 9]])
    torch.testing.assert_close(model(idx), hand(idx), rtol=0, atol=0)
    # One tensor in one optimizer group: a step equals the hand-written one (twice-decayed would differ).
    assert sum(1 for g in optimizer.param_groups for p in g["params"] if p is model.wte.weight) == 1
    hand_opt = torch.optim.AdamW(hand.parameters(), lr=0.1, weight_decay=0.5)
    for _ in range(3):
        _step(model, optimizer, idx)
        _step(hand, hand_opt, idx)
    torch.testing.assert_close(model.wte.weight, hand.wte.weight)
    assert model.lm_head.weight is model.wte.weight
    # Ties survive .to(), the summary and --explain count the tensor once.
    model.to(torch.float64)
    assert model.lm_head.weight is model.wte.weight and model.wte.weight.dtype == torch.float64
    expected = sum(p.numel() for p in hand.parameters())
    from netspec.summary import summarize, training_footer

    summary = summarize(built.model, lambda: built.spec.inferred.meta_model, "m", None)
    assert summary.total_params == expected == 40 + 20
    assert ("Tied", "wte.weight = lm_head.weight") in training_footer(built)


def test_tie_in_cli_summary_and_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_spec_file(tmp_path, TINY_LM)
    assert main(["build", str(path)]) == 0
    out = capsys.readouterr().out
    assert "Total params: 60" in out and "Tied: wte.weight = lm_head.weight" in out
    assert main(["build", str(path), "--explain"]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [r.split()[0] for r in rows] == ["wte.weight", "mix.weight", "mix.bias"]
    assert rows[0].startswith("wte.weight (= lm_head.weight)")


def test_tie_survives_checkpoint_round_trip(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, TINY_LM))
    idx = torch.tensor([[1, 2, 3]])
    _step(built.model, built.optimizer, idx)
    netspec.save(built, tmp_path / "run.pt")
    loaded = netspec.load(tmp_path / "run.pt")
    assert loaded.model.lm_head.weight is loaded.model.wte.weight
    torch.testing.assert_close(loaded.model(idx), built.model(idx), rtol=0, atol=0)
    # The optimizer resumes over the one tensor: the next step matches the uninterrupted run.
    _step(built.model, built.optimizer, idx)
    _step(loaded.model, loaded.optimizer, idx)
    torch.testing.assert_close(loaded.model.wte.weight, built.model.wte.weight, rtol=0, atol=0)


def test_emit_writes_tie_and_the_rebuilt_model_shares_the_tensor() -> None:
    class GPTish(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte = nn.Embedding(16, 8)
            self.ln_f = nn.LayerNorm(8)
            self.lm_head = nn.Linear(8, 16, bias=False)
            self.lm_head.weight = self.wte.weight

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return self.lm_head(self.ln_f(self.wte(idx)))

    torch.manual_seed(0)
    model = GPTish()
    spec = emit(model)
    assert spec.to_dict()["tie"] == {"lm_head.weight": "wte.weight"}
    again = netspec.read(spec.to_dict())
    assert "tie: {lm_head.weight: wte.weight}" in again.to_yaml()
    rebuilt = netspec.build(again).model
    assert rebuilt.lm_head.weight is rebuilt.wte.weight
    rebuilt.load_state_dict(model.state_dict())
    idx = torch.tensor([[0, 3, 15]])
    torch.testing.assert_close(rebuilt(idx), model(idx), rtol=0, atol=0)
    # With its optimizer: the shared tensor is one member of one group, under its first name.
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
    section = emit(model, optimizer).to_dict()
    assert section["tie"] == {"lm_head.weight": "wte.weight"}
    built = netspec.build(section)
    assert sum(1 for g in built.optimizer.param_groups for p in g["params"] if p is built.model.wte.weight) == 1
    assert len(list(built.model.parameters())) == len(optimizer.param_groups[0]["params"]) == 3


def test_tie_unknown_name_has_did_you_mean(expect_spec_error: Callable[..., SpecError]) -> None:
    text = TINY_LM.replace("  lm_head.weight: wte.weight", "  lm_head.weigth: wte.weight")
    expect_spec_error(
        text,
        line=14,
        path="tie.lm_head.weigth",
        words=("'lm_head.weigth' is not a parameter of the model", "did you mean 'lm_head.weight'?"),
        count=1,
    )


def test_tie_shapes_must_match(expect_spec_error: Callable[..., SpecError]) -> None:
    text = TINY_LM.replace("  lm_head.weight: wte.weight", "  mix.weight: wte.weight")
    expect_spec_error(
        text,
        line=14,
        path="tie.mix.weight",
        words=("cannot tie 'mix.weight' of shape [4, 4] to 'wte.weight' of shape [10, 4]", "same shape"),
    )


def test_tie_chain_and_self_are_errors(expect_spec_error: Callable[..., SpecError]) -> None:
    text = TINY_LM.replace("  lm_head.weight: wte.weight", "  wte.weight: wte.weight")
    expect_spec_error(text, line=14, path="tie.wte.weight", words=("'wte.weight' is tied to itself",), count=1)
    text = TINY_LM.replace("  lm_head.weight: wte.weight", "  lm_head.weight: wte.weight\n  wte.weight: mix.weight")
    err = expect_spec_error(text, line=14, path="tie.lm_head.weight", words=("'wte.weight' is tied to 'mix.weight'",))
    assert_problem(err, file=err.problems[0].location.file, line=15, path="tie.wte.weight", words=("[4, 4]",))


# -- eval ---------------------------------------------------------------------------------------------------

CNN = """
netspec: 1
seed: 0
input: {shape: [3, 8, 8]}
model:
  type: Sequential
  layers:
    conv: {type: Conv2d, out_channels: 4, kernel_size: 3, padding: 1}
    bn: BatchNorm2d
    relu: ReLU
    pool: {type: AdaptiveAvgPool2d, output_size: 1}
    flat: Flatten
    fc: {type: Linear, out_features: 3}
eval: [{type: BatchNorm2d}]
optimizer: {type: SGD, lr: 0.5, momentum: 0.9}
"""


def hand_cnn() -> nn.Sequential:
    layers = [nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    names = ["conv", "bn", "relu", "pool", "flat", "fc"]
    return nn.Sequential(OrderedDict(zip(names, [*layers, nn.Linear(4, 3)], strict=True)))


@pytest.mark.parametrize("entry", ["[{type: BatchNorm2d}]", "[bn]", '["b*"]'])
def test_eval_modules_stay_in_eval_and_train(tmp_path: Path, entry: str) -> None:
    built = netspec.build(write_spec_file(tmp_path, CNN.replace("[{type: BatchNorm2d}]", entry)))
    model, optimizer = built.model, built.optimizer
    hand = hand_cnn()
    hand.load_state_dict(model.state_dict())
    hand_opt = torch.optim.SGD(hand.parameters(), lr=0.5, momentum=0.9)
    torch.manual_seed(1)
    x = torch.randn(4, 3, 8, 8) * 3 + 1
    before = model.bn.weight.detach().clone()
    for _ in range(2):
        model.train()
        hand.train()
        hand.bn.eval()  # what eval: means, written by hand
        assert not model.bn.training and model.conv.training
        for m, opt in ((model, optimizer), (hand, hand_opt)):
            opt.zero_grad()
            m(x).square().mean().backward()
            opt.step()
    assert torch.equal(model.bn.running_mean, torch.zeros(4)) and torch.equal(model.bn.running_var, torch.ones(4))
    assert int(model.bn.num_batches_tracked) == 0
    assert model.bn.weight.requires_grad and not torch.equal(model.bn.weight, before)
    for (name, a), b in zip(model.state_dict().items(), hand.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    assert built.training.eval_modules == {"bn"}
    assert not built.training.frozen


def test_eval_and_freeze_are_independent(tmp_path: Path) -> None:
    text = CNN.replace("eval: [{type: BatchNorm2d}]", "eval: [bn]\nfreeze: [fc]")
    built = netspec.build(write_spec_file(tmp_path, text))
    assert not built.model.bn.training and built.model.fc.training
    assert built.model.bn.weight.requires_grad and not built.model.fc.weight.requires_grad
    copied = copy.deepcopy(built.model).train()
    assert not copied.bn.training


def test_eval_pattern_selecting_nothing(expect_spec_error: Callable[..., SpecError]) -> None:
    text = CNN.replace("eval: [{type: BatchNorm2d}]", "eval: [bn2]")
    expect_spec_error(text, line=14, path="eval.0", words=("pattern 'bn2' matches no module name", "'bn'"), count=1)


def test_eval_type_absent_from_model(expect_spec_error: Callable[..., SpecError]) -> None:
    text = CNN.replace("eval: [{type: BatchNorm2d}]", "eval: [{type: BatchNorm1d}]")
    expect_spec_error(text, line=14, path="eval.0.type", words=("no module of type BatchNorm1d", "BatchNorm2d"))
    text = CNN.replace("eval: [{type: BatchNorm2d}]", "eval: [{type: BatchNorn2d}]")
    expect_spec_error(text, line=14, path="eval.0.type", words=("unknown layer type 'BatchNorn2d'", "BatchNorm2d"))


# -- no_decay ------------------------------------------------------------------------------------------------


class MyNorm(nn.LayerNorm):
    """A registered subclass of a torch norm layer."""


class ScaleNorm(nn.Module):
    """A hand-written norm (not a torch subclass) named ...Norm."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gain * x / x.norm(dim=-1, keepdim=True)


NO_DECAY = """
netspec: 1
model:
  type: ModuleDict
  layers:
    attn: {type: MultiheadAttention, embed_dim: 8, num_heads: 2}
    rms: {type: RMSNorm, normalized_shape: 8}
    mine: {type: MyNorm, normalized_shape: 8}
    scale: {type: ScaleNorm, dim: 8}
    emb: {type: Embedding, num_embeddings: 5, embedding_dim: 8}
    fc: {type: Linear, in_features: 8, out_features: 8}
    bn: {type: BatchNorm1d, num_features: 8}
optimizer: {type: AdamW, lr: 0.1, weight_decay: 0.1, no_decay: NO_DECAY}
"""


@pytest.fixture(scope="module", autouse=True)
def _registered() -> None:
    netspec.register(MyNorm, replace=True)
    netspec.register(ScaleNorm, replace=True)


def _undecayed(tmp_path: Path, entries: str) -> set[str]:
    built = netspec.build(write_spec_file(tmp_path, NO_DECAY.replace("NO_DECAY", entries)))
    names = {id(p): n for n, p in built.model.named_parameters()}
    decayed = [names[id(p)] for g in built.optimizer.param_groups if g["weight_decay"] for p in g["params"]]
    zero = {names[id(p)] for g in built.optimizer.param_groups if not g["weight_decay"] for p in g["params"]}
    assert set(decayed).isdisjoint(zero) and len(decayed) + len(zero) == len(names)  # each in exactly one group
    return zero


def test_no_decay_keywords_as_the_contract_words_them(tmp_path: Path) -> None:
    biases = {"attn.in_proj_bias", "attn.out_proj.bias", "mine.bias", "fc.bias", "bn.bias"}
    assert _undecayed(tmp_path, "[bias]") == biases
    norms = {"rms.weight", "mine.weight", "mine.bias", "scale.gain", "bn.weight", "bn.bias"}
    assert _undecayed(tmp_path, "[norm]") == norms
    one_d = biases | {"rms.weight", "mine.weight", "scale.gain", "bn.weight"}
    assert _undecayed(tmp_path, "[1d]") == one_d
    assert _undecayed(tmp_path, "[embedding]") == {"emb.weight"}
    assert _undecayed(tmp_path, '[bias, "attn.in_proj_*"]') == biases | {"attn.in_proj_weight"}


def test_no_decay_unknown_entry(expect_spec_error: Callable[..., SpecError]) -> None:
    expect_spec_error(
        NO_DECAY.replace("NO_DECAY", "[bias, nrom]"),
        line=13,
        path="optimizer.no_decay.1",
        words=("'nrom' is not bias, norm, 1d, embedding or a matching pattern", "did you mean 'norm'?"),
        build=True,
    )
