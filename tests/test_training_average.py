"""``init: from:`` reports, ``checkpoint_activations`` and ``average`` (contract section 3), each against
hand-written PyTorch, and their bad inputs."""

from __future__ import annotations

import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from specfiles import write_spec_file
from torch.optim.swa_utils import SWALR, AveragedModel, get_ema_multi_avg_fn

import netspec
from netspec import NetspecError, SpecError
from netspec.cli.main import main

# -- init: from: rename, strict, list match, reports -------------------------------------------------------

FINETUNE = """
netspec: 1
seed: 0
model:
  type: Sequential
  layers:
    features:
      type: Sequential
      layers:
        conv: {type: Conv2d, in_channels: 3, out_channels: 4, kernel_size: 3}
        bn: {type: BatchNorm2d, num_features: 4}
    head: {type: Linear, in_features: 4, out_features: 2}
init:
  - {from: donor.pt, rename: {"backbone.": "features."}}
"""


def donor(tmp_path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(3)
    backbone = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), bn=nn.BatchNorm2d(4)))
    backbone.bn.running_mean.uniform_()
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    state |= {f"fc.{k}": v for k, v in nn.Linear(4, 10).state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "donor.pt")
    return state


def test_partial_load_with_rename_is_reported_in_warnings(tmp_path: Path) -> None:
    state = donor(tmp_path)
    built = netspec.build(write_spec_file(tmp_path, FINETUNE))
    for key, value in built.model.features.state_dict().items():
        assert torch.equal(value, state[f"backbone.{key}"]), key
    fresh = netspec.build(write_spec_file(tmp_path, FINETUNE.replace("init:", "x_init:").split("x_init:")[0]))
    assert torch.equal(built.model.head.weight, fresh.model.head.weight)  # missing: left as initialised
    (warning,) = [w for w in built.warnings if "donor.pt" in w.message]
    assert warning.severity == "warning" and warning.location is not None and warning.location.line == 13
    assert warning.message == (
        "loaded from 'donor.pt': loaded 7 (features), missing 2 (head), unexpected 2 (fc), "
        "shape-mismatched (kept the model's) 0"
    )
    (report,) = built.training.load_reports
    assert report.missing == ["head.weight", "head.bias"] and report.unexpected == ["fc.weight", "fc.bias"]


def test_netspec_build_prints_the_load_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    donor(tmp_path)
    path = write_spec_file(tmp_path, FINETUNE)
    assert main(["build", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:13:" in err and "init.0.from" in err
    assert "loaded 7 (features), missing 2 (head), unexpected 2 (fc)" in err


def test_strict_load_is_an_error_with_counts_and_patterns(tmp_path: Path) -> None:
    donor(tmp_path)
    text = FINETUNE.replace('"features."}}', '"features."}, strict: true}')
    with pytest.raises(SpecError) as info:
        netspec.read(write_spec_file(tmp_path, text))
    (problem,) = info.value.problems
    assert problem.location is not None and problem.location.line == 13
    assert problem.path == ("init", 0, "strict")
    assert problem.message == "strict load from 'donor.pt': 2 missing from the file (head); 2 not in the model (fc)"


def test_match_takes_a_list(tmp_path: Path) -> None:
    state = donor(tmp_path)
    text = FINETUNE.replace('"features."}}', '"features."}, match: ["features.conv.*", features.bn.weight]}')
    built = netspec.build(write_spec_file(tmp_path, text))
    (report,) = built.training.load_reports
    assert report.loaded == ["features.conv.weight", "features.conv.bias", "features.bn.weight"]
    assert report.missing == [] and report.unexpected == []
    assert torch.equal(built.model.features.bn.weight, state["backbone.bn.weight"])
    assert not torch.equal(built.model.features.bn.running_mean, state["backbone.bn.running_mean"])


def test_init_match_list_for_functions(tmp_path: Path) -> None:
    text = FINETUNE.replace(
        '  - {from: donor.pt, rename: {"backbone.": "features."}}',
        "  - {match: [features.conv.bias, head.bias], fn: constant, val: 0.5}",
    )
    built = netspec.build(write_spec_file(tmp_path, text))
    assert torch.equal(built.model.features.conv.bias, torch.full((4,), 0.5))
    assert torch.equal(built.model.head.bias, torch.full((2,), 0.5))
    assert not torch.equal(built.model.head.weight, torch.full((2, 4), 0.5))


def test_rename_prefix_that_starts_no_name(tmp_path: Path, expect_spec_error: Callable[..., SpecError]) -> None:
    donor(tmp_path)
    expect_spec_error(
        FINETUNE.replace('"backbone."', '"encoder."'),
        line=14,
        path="init.0.rename.encoder.",
        words=("rename prefix 'encoder.' starts none of the file's names (e.g. 'backbone.conv.weight')",),
        count=1,
    )


def test_match_list_entry_selecting_nothing(tmp_path: Path, expect_spec_error: Callable[..., SpecError]) -> None:
    text = FINETUNE.replace(
        '  - {from: donor.pt, rename: {"backbone.": "features."}}', "  - {match: [head.bias, haed.weight], fn: zeros}"
    )
    expect_spec_error(text, line=14, path="init.0.match.1", words=("'haed.weight'", "did you mean"), count=1)


# -- checkpoint_activations ---------------------------------------------------------------------------------

CKPT = """
netspec: 1
seed: 0
input: {shape: [8]}
model:
  type: Sequential
  layers:
    layers:
      type: Sequential
      layers:
        - {type: Sequential, layers: [{type: Linear, out_features: 16}, GELU, {type: Dropout, p: 0.5}]}
        - {type: Sequential, layers: [{type: Linear, out_features: 16}, GELU, {type: Dropout, p: 0.5}]}
    out: {type: Linear, out_features: 1}
checkpoint_activations: ["layers.*"]
"""


def hand_mlp() -> nn.Sequential:
    def block(n: int) -> nn.Sequential:
        return nn.Sequential(nn.Linear(n, 16), nn.GELU(), nn.Dropout(0.5))

    return nn.Sequential(OrderedDict(layers=nn.Sequential(block(8), block(16)), out=nn.Linear(16, 1)))


def test_checkpointed_modules_give_the_same_outputs_and_gradients(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, CKPT))
    model = built.model.train()
    hand = hand_mlp().train()
    assert list(model.state_dict()) == list(hand.state_dict())
    hand.load_state_dict(model.state_dict())
    assert built.training.checkpointed == ["layers.0", "layers.1"]
    calls: list[str] = []
    model.layers[0][0].register_forward_hook(lambda *_: calls.append("ran"))
    x = torch.randn(4, 8)
    torch.manual_seed(7)
    out = model(x)
    out.sum().backward()
    torch.manual_seed(7)
    expected = hand(x)
    expected.sum().backward()
    torch.testing.assert_close(out, expected, rtol=0, atol=0)  # same dropout masks, recomputation included
    assert calls == ["ran", "ran"]  # forward, then recomputed in backward: activations were not kept
    for (name, p), q in zip(model.named_parameters(), hand.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0, msg=name)
    with torch.no_grad():
        calls.clear()
        model(x)
        assert calls == ["ran"]


def test_checkpointed_model_compiles_without_graph_breaks_and_pickles(tmp_path: Path) -> None:
    model = netspec.build(write_spec_file(tmp_path, CKPT.replace("p: 0.5", "p: 0.0"))).model
    x = torch.randn(3, 8, requires_grad=True)
    expected = model(x)
    expected.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, grad)
    again = pickle.loads(pickle.dumps(model))
    assert again.layers[0].forward.func is model.layers[0].forward.func
    torch.testing.assert_close(again(x), expected)


def test_checkpointed_model_deep_copies_and_averages(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, CKPT + "average: {type: ema, decay: 0.5}\n"))
    averaged = built.averaged
    assert averaged is not None
    x = torch.randn(2, 8)
    built.model.eval()
    averaged.eval()
    torch.testing.assert_close(averaged(x), built.model(x))
    assert averaged.module.layers[0].forward.args[0].__self__ is averaged.module.layers[0]


def test_checkpoint_pattern_matching_nothing(expect_spec_error: Callable[..., SpecError]) -> None:
    expect_spec_error(
        CKPT.replace('["layers.*"]', '["layer.*"]'),
        line=14,
        path="checkpoint_activations.0",
        words=("pattern 'layer.*' matches no module name", "'layers'"),
        count=1,
    )


# -- average ------------------------------------------------------------------------------------------------

AVG = """
netspec: 1
seed: 0
input: {shape: [4]}
model:
  type: Sequential
  layers:
    fc: {type: Linear, out_features: 6}
    bn: BatchNorm1d
    out: {type: Linear, out_features: 1}
optimizer: {type: SGD, lr: 0.1, momentum: 0.9}
scheduler: {type: StepLR, step_size: 1, gamma: 0.5}
average: AVERAGE
"""


def hand_avg() -> nn.Sequential:
    return nn.Sequential(OrderedDict(fc=nn.Linear(4, 6), bn=nn.BatchNorm1d(6), out=nn.Linear(6, 1)))


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    x = torch.randn(8, 4, generator=torch.Generator().manual_seed(step))
    optimizer.zero_grad()
    model(x).square().mean().backward()
    optimizer.step()


def _same(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_ema_equals_a_hand_written_averaged_model_and_resumes(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, AVG.replace("AVERAGE", "{type: ema, decay: 0.9}")))
    hand = hand_avg()
    hand.load_state_dict(built.model.state_dict())
    hand_opt = torch.optim.SGD(hand.parameters(), lr=0.1, momentum=0.9)
    ema = AveragedModel(hand, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    assert isinstance(built.averaged, AveragedModel)
    for step in range(4):
        _train(built.model, built.optimizer, step)
        assert built.update_average() is True
        _train(hand, hand_opt, step)
        ema.update_parameters(hand)
    _same(built.averaged, ema)
    assert int(built.averaged.n_averaged) == 4
    netspec.save(built, tmp_path / "run.pt")
    resumed = netspec.load(tmp_path / "run.pt")
    _same(resumed.averaged, ema)
    for step in range(4, 6):
        for b in (built, resumed):
            _train(b.model, b.optimizer, step)
            b.update_average()
        _train(hand, hand_opt, step)
        ema.update_parameters(hand)
    _same(resumed.averaged, ema)
    _same(built.averaged, ema)


def test_swa_starts_late_anneals_with_swalr_and_resumes(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, AVG.replace("AVERAGE", "{type: swa, start: 2, lr: 0.05}")))
    hand = hand_avg()
    hand.load_state_dict(built.model.state_dict())
    hand_opt = torch.optim.SGD(hand.parameters(), lr=0.1, momentum=0.9)
    hand_sched = torch.optim.lr_scheduler.StepLR(hand_opt, step_size=1, gamma=0.5)
    swa = AveragedModel(hand)
    swa_sched = SWALR(hand_opt, swa_lr=0.05, anneal_epochs=10, anneal_strategy="cos")
    assert isinstance(built.swa_scheduler, SWALR)

    def epoch(b: netspec.Built, index: int) -> bool:
        _train(b.model, b.optimizer, index)
        averaged = b.update_average()
        (b.swa_scheduler if averaged else b.scheduler).step()
        return averaged

    flags = []
    for index in range(6):
        flags.append(epoch(built, index))
        _train(hand, hand_opt, index)
        if index >= 2:  # the first `start` calls only count
            swa.update_parameters(hand)
            swa_sched.step()
        else:
            hand_sched.step()
        if index == 3:
            netspec.save(built, tmp_path / "swa.pt")
    assert flags == [False, False, True, True, True, True]
    _same(built.averaged, swa)
    assert built.optimizer.param_groups[0]["lr"] == pytest.approx(hand_opt.param_groups[0]["lr"])
    resumed = netspec.load(tmp_path / "swa.pt")
    for index in range(4, 6):
        epoch(resumed, index)
    _same(resumed.averaged, swa)
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(hand_opt.param_groups[0]["lr"])


def test_update_average_without_average_section(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, AVG.replace("average: AVERAGE\n", "")))
    assert built.averaged is None and built.swa_scheduler is None
    with pytest.raises(NetspecError, match="the spec has no average: section"):
        built.update_average()


@pytest.mark.parametrize(
    ("average", "path", "words"),
    [
        ("{type: ema, lr: 0.1}", "average", "lr only apply to type: swa; ema takes decay"),
        ("{type: swa, start: 3}", "average", "type: swa needs lr (the SWALR learning rate)"),
        ("{type: swa, lr: 0.1, decay: 0.9}", "average", "decay only applies to type: ema"),
        ("{type: mean}", "average.type", "'ema' or 'swa'"),
        ("{type: ema, decay: 1.5}", "average.decay", "less than 1"),
    ],
)
def test_bad_average_sections(expect_spec_error: Callable[..., SpecError], average: str, path: str, words: str) -> None:
    expect_spec_error(AVG.replace("AVERAGE", average), line=13, path=path, words=(words,), count=1)


def test_swa_needs_an_optimizer(expect_spec_error: Callable[..., SpecError]) -> None:
    text = AVG.replace("AVERAGE", "{type: swa, lr: 0.05}").replace(
        "scheduler: {type: StepLR, step_size: 1, gamma: 0.5}\n", ""
    )
    text = text.replace("optimizer: {type: SGD, lr: 0.1, momentum: 0.9}\n", "")
    expect_spec_error(text, line=11, path="average.type", words=("the spec has no optimizer", "type: ema"), count=1)


def test_unknown_keys_in_average_and_eval_get_did_you_mean(expect_spec_error: Callable[..., SpecError]) -> None:
    expect_spec_error(
        AVG.replace("AVERAGE", "{type: ema, decy: 0.9}"),
        line=13,
        path="average.decy",
        words=("unknown key 'decy'", "did you mean 'decay'?"),
        count=1,
    )
    text = AVG.replace("average: AVERAGE", "eval: [bn, {typ: BatchNorm1d}]")
    expect_spec_error(text, line=13, path="eval.1.typ", words=("unknown key 'typ'", "did you mean 'type'?"))
