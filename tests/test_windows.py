"""netspec's Swin window attention (catalog/windows.py) against torchvision's: same state_dict names and
shapes, a strict load, and bit-identical outputs in eval and train mode (same seed) on maps that are not
window multiples (the padding path) and with shifted windows (the mask path); usable as a spec layer."""

from __future__ import annotations

import pytest
import torch
from zoo import import_torchvision

import netspec
from netspec.catalog.windows import ShiftedWindowAttention, ShiftedWindowAttentionV2, patch_merging_pad

swin = import_torchvision().models.swin_transformer


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [(ShiftedWindowAttention, swin.ShiftedWindowAttention), (ShiftedWindowAttentionV2, swin.ShiftedWindowAttentionV2)],
    ids=["v1", "v2"],
)
@pytest.mark.parametrize("shift", [[0, 0], [2, 2]], ids=["plain", "shifted"])
def test_window_attention_matches_torchvision(ours: type, theirs: type, shift: list[int]) -> None:
    torch.manual_seed(0)
    want = theirs(16, [4, 4], shift, 2, attention_dropout=0.25, dropout=0.1)
    got = ours(16, [4, 4], shift, 2, attention_dropout=0.25, dropout=0.1)
    assert [(k, v.shape) for k, v in got.state_dict().items()] == [(k, v.shape) for k, v in want.state_dict().items()]
    got.load_state_dict(want.state_dict(), strict=True)
    x = torch.randn(2, 9, 11, 16)  # 9x11: padded to 12x12 windows of 4
    with torch.no_grad():
        torch.testing.assert_close(got.eval()(x), want.eval()(x), rtol=0, atol=0)
        torch.manual_seed(5)
        drawn = want.train()(x)
        torch.manual_seed(5)
        torch.testing.assert_close(got.train()(x), drawn, rtol=0, atol=0)


def test_patch_merging_pad_matches_torchvision() -> None:
    x = torch.randn(2, 7, 5, 3)
    torch.testing.assert_close(patch_merging_pad(x), swin._patch_merging_pad(x), rtol=0, atol=0)
    assert patch_merging_pad(x).shape == (2, 4, 3, 12)


def test_window_attention_is_a_spec_layer_type() -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [8, 8, 16]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "layers": {
                "attn": {
                    "type": "ShiftedWindowAttention",
                    "dim": 16,
                    "window_size": [4, 4],
                    "shift_size": [2, 2],
                    "num_heads": 2,
                }
            },
            "forward": ["y = patch_merging_pad(attn(x))"],
            "outputs": "y",
        },
    }
    model = netspec.build(spec).model
    assert type(model.attn) is ShiftedWindowAttention
    assert model(torch.randn(1, 8, 8, 16)).shape == (1, 4, 4, 64)


def test_bad_window_arguments_are_a_spec_error() -> None:
    spec = {
        "netspec": 1,
        "model": {
            "type": "ShiftedWindowAttention",
            "dim": 15,
            "window_size": [4, 4],
            "shift_size": [0, 0],
            "num_heads": 2,
        },
    }
    with pytest.raises(netspec.SpecError, match=r"dim \(15\) must be divisible by num_heads \(2\)"):
        netspec.build(spec)


def test_relative_position_index_is_torchvisions_table() -> None:
    from netspec.catalog.windows import relative_position_index

    tv = import_torchvision()
    swin_index = swin.ShiftedWindowAttention(8, [7, 7], [0, 0], 2).relative_position_index
    got = relative_position_index(tuple(swin_index.shape), torch.int64, torch.device("cpu"))
    assert torch.equal(got, swin_index)
    maxvit_index = tv.models.maxvit._get_relative_position_index(7, 7)
    assert torch.equal(relative_position_index((49, 49), torch.int64, torch.device("cpu")), maxvit_index)
    with pytest.raises(ValueError, match=r"needs shape \[w\*\*4\] or \[w\*\*2, w\*\*2\], got \[50\]"):
        relative_position_index((50,), torch.int64, torch.device("cpu"))


def test_maxvit_attention_matches_torchvision() -> None:
    from netspec.catalog.windows import RelativePositionalMultiHeadAttention

    maxvit = import_torchvision().models.maxvit
    torch.manual_seed(0)
    want = maxvit.RelativePositionalMultiHeadAttention(16, 8, 9)
    got = RelativePositionalMultiHeadAttention(16, 8, 9)
    assert [(k, v.shape) for k, v in got.state_dict().items()] == [(k, v.shape) for k, v in want.state_dict().items()]
    assert torch.equal(got.relative_position_index, want.relative_position_index)
    got.load_state_dict(want.state_dict(), strict=True)
    x = torch.randn(2, 5, 9, 16)
    torch.testing.assert_close(got(x), want(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"max_seq_len \(10\) must be a square"):
        RelativePositionalMultiHeadAttention(16, 8, 10)


@pytest.mark.parametrize("kind", ["swin_v2", "maxvit"])
def test_emit_writes_torchvisions_attention_as_the_netspec_layer(kind: str) -> None:
    tv = import_torchvision()
    torch.manual_seed(0)
    if kind == "swin_v2":
        layer = swin.ShiftedWindowAttentionV2(16, [4, 4], [2, 2], 2, qkv_bias=False, attention_dropout=0.5)
        x = torch.randn(2, 6, 7, 16)
    else:
        layer = tv.models.maxvit.RelativePositionalMultiHeadAttention(16, 8, 9)
        x = torch.randn(2, 3, 9, 16)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), layer).eval()
    spec = netspec.emit(model)
    node = spec.to_dict()["model"]["layers"][1]
    want_type = "ShiftedWindowAttentionV2" if kind == "swin_v2" else "RelativePositionalMultiHeadAttention"
    assert node["type"] == want_type, node
    rebuilt = netspec.build(spec).model
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    for training in (False, True):
        model.train(training)
        rebuilt.train(training)
        torch.manual_seed(3)
        want = model(x)
        torch.manual_seed(3)
        torch.testing.assert_close(rebuilt(x), want, rtol=0, atol=0)


class WindowTable(torch.nn.Module):
    """A traced module owning Swin's relative position index as a non-persistent int64 buffer (timm's way)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.randn(9, 2))
        index = swin.ShiftedWindowAttention(8, [2, 2], [0, 0], 2).relative_position_index
        self.register_buffer("index", index, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.table[self.index].sum()


def test_an_integer_relative_position_index_buffer_is_emitted_with_its_init() -> None:
    model = WindowTable()
    spec = netspec.emit(model)
    assert spec.to_dict()["model"]["buffers"]["index"] == {
        "shape": [16],
        "init": "relative_position_index",
        "persistent": False,
        "dtype": "int64",
    }
    rebuilt = netspec.build(spec).model
    assert torch.equal(rebuilt.index, model.index)  # not in the state_dict: the init made it
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(3)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


def test_a_float_init_on_an_integer_buffer_names_the_integer_inits() -> None:
    spec = {
        "netspec": 1,
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "buffers": {"idx": {"shape": [16], "init": "sinusoidal", "dtype": "int64"}},
            "forward": ["y = x * 2"],
            "outputs": "y",
        },
    }
    with pytest.raises(
        netspec.SpecError,
        match=r"int64 buffers are initialised with zeros, ones, constant, relative_position_index, "
        r"attention_bias_index or arange, or written out as \{fn: values, data: \[\.\.\.\]\}, got 'sinusoidal'",
    ):
        netspec.read(spec)
