"""A Graph statement reads a child's own parameter or buffer in place (``linear(x, qkv.weight, qkv.bias)``),
as BEiT, Swin v2 and CoAtNet's attention do; emit writes such reads for a forward that does the same.
Compared against hand-written PyTorch and against timm's own modules."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from specfiles import write_spec_file
from zoo import import_timm, round_trip

import netspec
from netspec import SpecError

SPEC = """
netspec: 1
input: {shape: [4, 8]}
model:
  type: Graph
  inputs: [x]
  layers:
    qkv: {type: Linear, in_features: 8, out_features: 24}
    rel:
      type: Graph
      inputs: [y]
      parameters: {table: {shape: [8], init: ones}}
      forward: [z = y * table]
      outputs: z
    blocks: {type: ModuleList, layers: [{type: Linear, in_features: 8, out_features: 8}]}
  forward:
    - h = linear(x, qkv.weight * 2, qkv.bias)
    - y = h[..., :8] + rel.table + blocks[0].bias
  outputs: y
"""


class _HandWritten(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24)
        self.rel = nn.Module()
        self.rel.table = nn.Parameter(torch.ones(8))
        self.blocks = nn.ModuleList([nn.Linear(8, 8)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.linear(x, self.qkv.weight * 2, self.qkv.bias)
        return h[..., :8] + self.rel.table + self.blocks[0].bias


def test_a_statement_reads_a_childs_tensors_as_hand_written_torch_does(tmp_path: Path) -> None:
    built = netspec.build(write_spec_file(tmp_path, SPEC))
    model = built.model
    torch.manual_seed(0)
    want = _HandWritten()
    with torch.no_grad():
        for p in want.parameters():
            p.normal_()
    assert list(model.state_dict()) == list(want.state_dict())
    model.load_state_dict(want.state_dict(), strict=True)
    x = torch.randn(2, 4, 8)
    torch.testing.assert_close(model(x), want(x), rtol=0, atol=0)
    assert not [p for p in built.warnings if "never used" in p.message]  # a read child counts as used
    # the gradient reaches the child's weight through the read
    model(x).sum().backward()
    assert model.qkv.weight.grad is not None and model.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("statement", "wanted", "hint"),
    [
        # a layer's tensors are known once it is built: checked at validation, with the names it has
        (
            "h = linear(x, qkv.wieght, qkv.bias)",
            "qkv (Linear) has no parameter or buffer 'wieght'; it has weight, bias",
            "did you mean 'weight'?",
        ),
        # a Graph's own tensors are known from the spec: checked when the statement is compiled
        ("h = x + rel.tabel", "rel (Graph) has no parameter or buffer 'tabel'; it has table", "did you mean 'table'?"),
        ("h = x + blocks[0].weigth", "blocks.0 (Linear) has no parameter or buffer 'weigth'", "did you mean 'weight'?"),
        ("h = x + blocks.bias", "blocks (ModuleList) has no parameter or buffer 'bias'", None),
    ],
)
def test_an_unknown_child_tensor_is_an_error_at_its_statement(
    tmp_path: Path, statement: str, wanted: str, hint: str | None
) -> None:
    text = SPEC.replace("    - h = linear(x, qkv.weight * 2, qkv.bias)", f"    - {statement}")
    with pytest.raises(SpecError) as err:
        netspec.read(write_spec_file(tmp_path, text))
    message = str(err.value)
    assert "spec.yaml:16:" in message and "model.forward.0" in message, message
    assert wanted in message, message
    if hint is not None:
        assert hint in message, message


class _BeitStyle(nn.Module):
    """BEiT's attention: the qkv projection's weight is used with a bias assembled from two parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(8, 24, bias=False)
        self.q_bias = nn.Parameter(torch.randn(8))
        self.v_bias = nn.Parameter(torch.randn(8))
        self.register_buffer("k_bias", torch.zeros(8), persistent=False)
        self.proj = nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = torch.cat((self.q_bias, self.k_bias, self.v_bias))
        q, k, v = F.linear(x, weight=self.qkv.weight, bias=bias).chunk(3, dim=-1)
        return self.proj(F.scaled_dot_product_attention(q, k, v))


def test_emit_writes_a_read_of_a_childs_weight_and_round_trips() -> None:
    outcome = round_trip("beit-style", _BeitStyle, (5, 8))
    assert outcome.status == "exact", outcome
    spec = netspec.emit(_BeitStyle(), input_shape=(5, 8))
    assert "qkv.weight" in "\n".join(spec.to_dict()["model"]["forward"])


def test_timm_coatnet_attention_reading_its_relative_position_table_round_trips() -> None:
    """timm's CoAtNet/MaxViT ``Attention2d`` adds ``rel_pos.get_bias()``: a method of the child that reads the
    child's table and index (test_coatnet, the maxxvit family, is exact through this)."""
    maxxvit = import_timm().models.maxxvit
    make = functools.partial(
        maxxvit.Attention2d, 16, 16, dim_head=8, rel_pos_cls=functools.partial(maxxvit.RelPosBias, window_size=(4, 4))
    )
    outcome = round_trip("timm Attention2d", make, (16, 4, 4))
    assert outcome.status == "exact", outcome


class _EfficientFormerAttention(nn.Module):
    """timm's EfficientFormer attention (its ``train`` returns None, so it sits in a plain parent)."""

    def __init__(self) -> None:
        super().__init__()
        efficientformer = import_timm().models.efficientformer
        self.attn = efficientformer.Attention(dim=16, key_dim=8, num_heads=2, attn_ratio=2, resolution=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


def test_timm_efficientformer_eval_cache_of_its_attention_bias_round_trips() -> None:
    """Eval mode keys a cache on ``str(x.device)`` and stores what training mode computes
    (``attention_biases[:, attention_bias_idxs]``): the spec computes it on every call, and eval outputs
    match the original's, whose cache filled on its first call (round_trip compares both modes)."""
    outcome = round_trip("timm efficientformer Attention", _EfficientFormerAttention, (9, 16))
    assert outcome.status == "exact", outcome
    model = _EfficientFormerAttention().eval()
    model(torch.randn(1, 9, 16))
    assert model.attn.attention_bias_cache  # the original's cache is in use: the comparison is against it
    rebuilt = netspec.build(netspec.emit(model, input_shape=(9, 16))).model.eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 9, 16)
    torch.testing.assert_close(rebuilt(x), model(x), rtol=0, atol=0)


class _Entries(nn.Module):
    """Entries of a ParameterList (by position) and a ParameterDict (by name, not always an identifier)."""

    def __init__(self) -> None:
        super().__init__()
        self.scales = nn.ParameterList([nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))])
        self.tables = nn.ParameterDict({"a": nn.Parameter(torch.randn(4)), "b-c": nn.Parameter(torch.randn(4))})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scales[1] + self.tables["a"] - self.tables["b-c"]


def test_emit_writes_parameter_list_and_dict_entries_by_position_and_name() -> None:
    outcome = round_trip("entries", _Entries, (4,))
    assert outcome.status == "exact", outcome
    forward = netspec.emit(_Entries(), input_shape=(4,)).to_dict()["model"]["forward"]
    assert forward == ["sub_out = x * scales[1] + tables['a'] - tables['b-c']"]


ENTRIES = """
netspec: 1
input: {shape: [4]}
model:
  type: Graph
  inputs: [x]
  layers:
    scales: {type: ParameterList, parameters: [{shape: [4], init: ones}, {shape: [4], init: zeros}]}
  forward:
    - y = x * scales[-2] + scales[1]
  outputs: y
"""


def test_a_parameter_list_entry_is_read_by_position(tmp_path: Path) -> None:
    model = netspec.build(write_spec_file(tmp_path, ENTRIES)).model
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), x * model.scales[0] + model.scales[1], rtol=0, atol=0)


@pytest.mark.parametrize(
    ("statement", "wanted"),
    [
        ("y = x * scales[2]", "index 2 is out of range for scales (2 entries)"),
        ("y = x * scales['a']", "scales (ParameterList) has no parameter or buffer 'a'; it has 0, 1"),
        ("y = x * scales[x]", "scales is indexed by a constant position or name"),
    ],
)
def test_a_bad_parameter_list_index_is_an_error_at_its_statement(tmp_path: Path, statement: str, wanted: str) -> None:
    with pytest.raises(SpecError) as err:
        netspec.read(write_spec_file(tmp_path, ENTRIES.replace("y = x * scales[-2] + scales[1]", statement)))
    message = str(err.value)
    assert "spec.yaml:9:" in message and "model.forward.0" in message and wanted in message, message


GRANDCHILD = """
netspec: 1
input: {shape: [4, 8]}
model:
  type: Graph
  inputs: [x]
  layers:
    rel:
      type: Graph
      inputs: [y]
      layers:
        mlp:
          type: Graph
          inputs: [u]
          layers: {fc: {type: Linear, in_features: 8, out_features: 8}}
          forward: [v = fc(u).relu()]
          outputs: v
      buffers: {table: {shape: [4, 8], init: ones}}
      forward: [z = mlp(y)]
      outputs: z
  forward:
    - y = x + rel.mlp(rel.table)
  outputs: y
"""


def test_a_statement_calls_a_childs_own_graph_child_with_its_buffer(tmp_path: Path) -> None:
    """timm's RelPosMlp: ``self.rel_pos.mlp(self.rel_pos.rel_coords_log)``, where ``mlp`` is a Graph."""
    model = netspec.build(write_spec_file(tmp_path, GRANDCHILD)).model
    x = torch.randn(2, 4, 8)
    fc = model.rel.mlp.fc
    want = x + torch.relu(F.linear(torch.ones(4, 8), fc.weight, fc.bias))
    torch.testing.assert_close(model(x), want, rtol=0, atol=0)
