"""The summary's multiply-adds against torch's own ``FlopCounterMode``, run here on the same model.

The summary counts MACs from the calls inference logged (layer rules and Graph statement rules) and
runs torch's counter only where some layer has no rule. Either way every row must equal what torch's
counter says for that module (a ModuleList, never called itself, sums its elements). The reference
runs on meta tensors, as the summary's own trace does: on CPU, torch's counter has no formula for the
fused ``_scaled_dot_product_flash_attention_for_cpu`` and counts attention as 0.
"""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import SPECS
from torch.utils.flop_counter import FlopCounterMode

import netspec
from netspec.compiler.meta import DTYPES
from netspec.summary import Summary, collect, summarize, summarize_built

DATA = Path(__file__).parent / "data" / "summary"
LLAMA_SMALL = {"vars.dim": 64, "vars.layers": 2, "vars.heads": 4, "vars.kv_heads": 2, "vars.ffn": 96, "vars.vocab": 100}
ROOT = Path(__file__).resolve().parents[1]


def torch_macs(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Per-sample MACs per module name from torch's FlopCounterMode (2 FLOPs a multiply-add)."""
    model = copy.deepcopy(model).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    per = 2 * x.shape[0]
    counts = counter.get_flop_counts()
    return {("" if k == "Global" else k.partition(".")[2]): sum(v.values()) // per for k, v in counts.items()}


def expected_rows(model: nn.Module, counted: dict[str, int]) -> dict[str, int]:
    rows = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.ModuleList, nn.ModuleDict)) and name not in counted:
            prefix = name + "." if name else ""
            rows[name] = sum(v for n, v in counted.items() if n.startswith(prefix) and "." not in n[len(prefix) :])
        else:
            rows[name] = counted.get(name, 0)
    return rows


def meta_input(spec: netspec.Spec, batch: int = 2) -> torch.Tensor:
    inp = spec.document.input
    return torch.empty((batch, *inp.shape), dtype=DTYPES[inp.dtype], device="meta")


def check_against_torch(built: netspec.Built) -> Summary:
    summary = summarize_built(built, columns=("output", "macs"))
    reference = torch_macs(built.spec.inferred.meta_model, meta_input(built.spec))
    assert summary.total_macs == reference[""] > 0
    assert {r.name: r.macs for r in summary.rows} == expected_rows(built.model, reference)
    return summary


def no_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the FLOP counter ran: some layer had no rule")

    monkeypatch.setattr(collect, "trace_meta", refuse)


# Specs whose every layer and statement has a rule: counted without torch's counter.
ANALYTIC = ["lenet5", "mlp", "vgg11", "resnet18", "mobilenet_v2", "unet", "gpt_block", "modulelist_chain", "ops"]


@pytest.mark.parametrize("name", ANALYTIC)
def test_macs_from_rules_equal_torchs_flop_counter(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    path = DATA / f"{name}.yaml" if (DATA / f"{name}.yaml").exists() else SPECS / f"{name}.yaml"
    built = netspec.build(path, device="meta")
    no_trace(monkeypatch)
    check_against_torch(built)


def test_a_llama_block_is_counted_from_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    # RMSNorm, grouped-query attention through scaled_dot_product_attention, a SwiGLU MLP
    built = netspec.build(SPECS / "scale" / "llama_model.yaml", device="meta", overrides=LLAMA_SMALL)
    no_trace(monkeypatch)
    summary = check_against_torch(built)
    # by hand: 2 blocks x (4 projections 16x64x64 except k, v at 2 of 4 heads: 16x64x32; attention
    # 4 heads x 16x16x16 twice; 3 MLP matmuls 16x64x96) + the output layer 16x64x100
    block = 2 * 16 * 64 * 64 + 2 * 16 * 64 * 32 + 2 * 4 * 16 * 16 * 16 + 3 * 16 * 64 * 96
    assert summary.total_macs == 2 * block + 16 * 64 * 100


@pytest.mark.parametrize("name", ["vit_tiny", "lstm"])
def test_layers_without_a_rule_fall_back_to_torchs_counter(name: str) -> None:
    path = DATA / f"{name}.yaml" if (DATA / f"{name}.yaml").exists() else SPECS / f"{name}.yaml"
    check_against_torch(netspec.build(path, device="meta"))


def test_a_child_called_twice_counts_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    built = netspec.build(DATA / "ops.yaml", device="meta")
    no_trace(monkeypatch)
    summary = summarize_built(built, columns=("macs",))
    fc = next(r for r in summary.rows if r.name == "fc")
    assert fc.macs == 2 * 6 * 8 * 8  # y = fc(fc(x)) on [B, 6, 8]


def test_a_subclass_with_its_own_forward_gets_no_rule() -> None:
    from netspec.summary.macs import layer_rule

    class Conv2dSame(nn.Conv2d):  # timm's: pads, then convolves
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(nn.functional.pad(x, (1, 1, 1, 1)))

    class Plain(nn.Conv2d):
        pass

    assert layer_rule(Conv2dSame(3, 4, 3)) is None
    assert layer_rule(Plain(3, 4, 3)) is not None
    assert layer_rule(nn.LSTM(3, 4)) is None


def test_parameter_views_passed_to_children_are_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    """CaiT's ``cls_token.expand(B, -1, -1)`` handed to an attention child: a view of a parameter made
    under no_grad requires grad without a gradient function, which torch's counter choked on."""
    built = netspec.build(DATA / "cait_like.yaml", device="meta")
    spec = built.spec
    # the counter path itself (no call log), as for a layer without a rule
    traced = summarize(built.model, lambda: spec.inferred.meta_model, spec.name, (4, 8))
    reference = torch_macs(spec.inferred.meta_model, meta_input(spec))
    assert traced.total_macs == reference[""]
    # by hand: q 1x8x8, k and v 5x8x8 each, attention 1x5x8 twice, out_proj 1x8x8, proj 1x8x8
    assert traced.total_macs == 64 + 2 * 320 + 2 * 40 + 64 + 64
    no_trace(monkeypatch)
    assert check_against_torch(built).total_macs == traced.total_macs


def import_timm() -> types.ModuleType:
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    return pytest.importorskip("timm")


def test_emitted_timm_cait_summarises() -> None:
    timm = import_timm()
    torch.manual_seed(0)
    model = timm.create_model(
        "cait_xxs24_224", pretrained=False, img_size=32, patch_size=8, depth=2, depth_token_only=1
    ).eval()
    spec = netspec.emit(model, input_shape=(3, 32, 32))
    built = netspec.build(spec, device="meta")
    summary = summarize_built(built, columns=("output", "macs"))
    # timm's own model under torch's counter, on meta as the summary counts (on CPU torch's counter counts
    # the fused attention kernel as 0)
    reference = torch_macs(copy.deepcopy(model).to("meta"), torch.empty(2, 3, 32, 32, device="meta"))
    assert summary.total_macs == reference[""] > 0
    with torch.no_grad():  # and the emitted spec computes what timm's model computes
        x = torch.randn(2, 3, 32, 32)
        rebuilt = netspec.build(spec).model.eval()
        rebuilt.load_state_dict(model.state_dict())
        torch.testing.assert_close(rebuilt(x), model(x))
    traced = summarize(built.model, lambda: built.spec.inferred.meta_model, "cait", (3, 32, 32))
    assert traced.total_macs == summary.total_macs


def test_the_summary_of_a_llama_spec_imports_no_dynamo() -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import netspec
        from netspec.summary import summarize_built
        built = netspec.build({str(SPECS / "scale" / "llama_model.yaml")!r}, device="meta", overrides={LLAMA_SMALL!r})
        summary = summarize_built(built)
        print(summary.total_macs, "torch._dynamo" in sys.modules)
        """
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300, check=True)
    macs, dynamo = out.stdout.split()
    assert int(macs) > 0
    assert dynamo == "False"


def test_every_statement_function_is_classified() -> None:
    """A function added to the Graph allow-list must be given a rule, a zero, or a known lack of one."""
    from netspec.compiler.allowlists import FUNCTIONS, TENSOR_METHODS
    from netspec.summary.macs import STATEMENT_RULES, UNCOUNTED_FUNCTIONS, ZERO_FUNCTIONS

    for name, fn in FUNCTIONS.items():
        kinds = [fn in STATEMENT_RULES, name in ZERO_FUNCTIONS, name in UNCOUNTED_FUNCTIONS]
        assert kinds.count(True) == 1, (name, kinds)
    assert not ZERO_FUNCTIONS - set(FUNCTIONS)
    assert "matmul" in STATEMENT_RULES and "matmul" in TENSOR_METHODS
