"""Graph nodes: statements compiled to generated forward code, and what users do with them."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import SPECS
from specfiles import write_spec_file

import netspec
from netspec import SpecError


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    return write_spec_file(tmp_path, text, name)


RESIDUAL = """
netspec: 1
seed: 0
input: {shape: [8, 6, 6]}
model:
  type: Graph
  inputs: [x]
  layers:
    conv1: {type: Conv2d, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
    bn1: BatchNorm2d
    conv2: {type: Conv2d, out_channels: 8, kernel_size: 3, padding: 1, bias: false}
    bn2: BatchNorm2d
    act: ReLU
  forward:
    - h = act(bn1(conv1(x)))
    - h = bn2(conv2(h))
    - y = act(h + x)
  outputs: y
"""


class HandResidual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        return self.act(h + x)


def residual(tmp_path: Path) -> nn.Module:
    return netspec.load(write(tmp_path, RESIDUAL)).model.eval()


def test_residual_graph_matches_hand_written_module(tmp_path: Path) -> None:
    model = residual(tmp_path)
    hand = HandResidual().eval()
    hand.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(model(x), hand(x))
    assert list(model.state_dict()) == list(hand.state_dict())


def test_generated_forward_is_readable_code(tmp_path: Path) -> None:
    model = residual(tmp_path)
    code = model.code
    assert "def forward(self, x)" in code
    assert "self.conv1(x)" in code
    assert "h_1 + x" in code or "h + x" in code
    assert "def forward" in str(model)  # print(model) shows the code too


def test_graph_works_with_jit_script_trace_and_export(tmp_path: Path) -> None:
    model = residual(tmp_path)
    x = torch.randn(2, 8, 6, 6)
    expected = model(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), expected)
    traced = torch.jit.trace(model, x)
    torch.testing.assert_close(traced(x), expected)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), expected)


def test_graph_compiles_without_graph_breaks(tmp_path: Path) -> None:
    model = residual(tmp_path)
    x = torch.randn(2, 8, 6, 6)
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    torch.testing.assert_close(compiled(x), model(x))
    explanation = torch._dynamo.explain(model)(x)
    assert explanation.graph_break_count == 0


def test_child_called_twice_shares_its_weights(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [4]}
        model:
          type: Graph
          inputs: [x]
          layers:
            fc: {type: Linear, out_features: 4}
          forward:
            - y = fc(fc(x))
          outputs: y
        """,
    )
    model = netspec.load(spec).model
    assert [n for n, _ in model.named_parameters()] == ["fc.weight", "fc.bias"]
    x = torch.randn(3, 4)
    torch.testing.assert_close(model(x), model.fc(model.fc(x)))


def test_moduledict_routing_by_forward_input() -> None:
    built = netspec.load(SPECS / "moduledict_routing.yaml")
    net = built.model
    x = torch.randn(1, 10, 8, 8)
    for choice in ("conv", "pool"):
        for act in ("lrelu", "prelu"):
            expected = net.activations[act](net.choices[choice](x))
            torch.testing.assert_close(net(x, choice, act), expected)
    assert isinstance(net.choices, nn.ModuleDict)


def test_modulelist_chain_applies_every_element_in_order() -> None:
    net = netspec.load(SPECS / "modulelist_chain.yaml").model
    assert isinstance(net.linears, nn.ModuleList) and len(net.linears) == 10
    x = torch.randn(2, 10)
    h = x
    for layer in net.linears:
        h = layer(h)
    h = torch.relu(h)
    torch.testing.assert_close(net(x), net.linears[0](h) + net.linears[9](h))


def test_outputs_list_is_a_tuple_and_mapping_is_a_dict(tmp_path: Path) -> None:
    base = """
    netspec: 1
    input: {shape: [4]}
    model:
      type: Graph
      inputs: [x]
      layers:
        a: {type: Linear, out_features: 2}
        b: {type: Linear, out_features: 3}
      forward:
        - ya = a(x)
        - yb = b(x)
      outputs: OUTPUTS
    """
    as_tuple = netspec.load(write(tmp_path, base.replace("OUTPUTS", "[ya, yb]"), "t.yaml")).model
    out = as_tuple(torch.randn(5, 4))
    assert isinstance(out, tuple) and [o.shape[-1] for o in out] == [2, 3]
    as_dict = netspec.load(write(tmp_path, base.replace("OUTPUTS", "{first: ya, second: yb}"), "d.yaml")).model
    out = as_dict(torch.randn(5, 4))
    assert isinstance(out, dict) and out["first"].shape == (5, 2) and out["second"].shape == (5, 3)


def test_several_inputs_tuple_unpacking_and_functions(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        model:
          type: Graph
          inputs: [x, y]
          layers:
            proj: {type: Linear, in_features: 8, out_features: 8}
          forward:
            - a, b = chunk(proj(x), 2, dim=1)
            - z = cat([a * y, b.sigmoid()], dim=1).view(x.size(0), -1)
            - s = softmax(z, dim=-1)
          outputs: s
        """,
    )
    net = netspec.load(spec).model
    x, y = torch.randn(3, 8), torch.randn(3, 4)
    a, b = torch.chunk(net.proj(x), 2, dim=1)
    expected = torch.softmax(torch.cat([a * y, b.sigmoid()], dim=1).view(3, -1), dim=-1)
    torch.testing.assert_close(net(x, y), expected)


def test_dropout_in_statements_follows_train_and_eval(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        model:
          type: Graph
          inputs: [x]
          forward:
            - y = dropout(x, 0.5)
          outputs: y
        """,
    )
    net = netspec.load(spec).model
    x = torch.ones(1000)
    net.eval()
    torch.testing.assert_close(net(x), x)
    net.train()
    out = net(x)
    assert (out == 0).any() and (out == 2).any()


def test_graph_owned_parameters_and_buffers_are_registered() -> None:
    vit = netspec.load(SPECS / "vit_tiny.yaml").model
    params = dict(vit.named_parameters())
    assert isinstance(params["cls_token"], nn.Parameter) and params["cls_token"].shape == (1, 1, 192)
    assert params["pos_embed"].shape == (1, 65, 192)
    assert torch.equal(params["cls_token"], torch.zeros(1, 1, 192))
    assert 0.005 < params["pos_embed"].std().item() < 0.03  # trunc_normal std 0.02
    gpt = netspec.load(SPECS / "gpt_block.yaml").model
    mask = gpt.h[0].attn.bias
    assert torch.equal(mask[0, 0], torch.ones(64, 64).tril())
    assert "h.0.attn.bias" not in gpt.state_dict()  # persistent: false
    assert "h.0.attn.bias" in dict(gpt.named_buffers())


def test_sinusoidal_buffer_matches_the_transformer_formula(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        model:
          type: Graph
          inputs: [x]
          buffers:
            pe: {shape: [1, 16, 8], init: sinusoidal}
          forward:
            - y = x + pe
          outputs: y
        """,
    )
    pe = netspec.load(spec).model.pe[0]
    pos, i = 5, 3
    assert pe[pos, 2 * i].item() == pytest.approx(torch.sin(torch.tensor(pos / 10000 ** (2 * i / 8))).item(), abs=1e-6)
    assert pe[pos, 2 * i + 1].item() == pytest.approx(
        torch.cos(torch.tensor(pos / 10000 ** (2 * i / 8))).item(), abs=1e-6
    )
    assert "pe" in netspec.load(spec).model.state_dict()


def test_parameter_list_and_dict_nodes(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        model:
          type: Sequential
          layers:
            plist:
              type: ParameterList
              parameters: [{shape: [2, 3], init: ones}, {shape: [4], init: zeros, requires_grad: false}]
            pdict:
              type: ParameterDict
              parameters: {scale: {shape: [3], init: {fn: constant, val: 0.5}}}
        """,
    )
    model = netspec.load(spec).model
    assert isinstance(model.plist, nn.ParameterList) and isinstance(model.pdict, nn.ParameterDict)
    state = model.state_dict()
    assert list(state) == ["plist.0", "plist.1", "pdict.scale"]
    assert torch.equal(state["pdict.scale"], torch.full((3,), 0.5))
    assert not model.plist[1].requires_grad


def test_gpt_block_matches_a_hand_written_attention() -> None:
    built = netspec.load(SPECS / "gpt_block.yaml")
    gpt = built.model.eval()
    attn = gpt.h[0].attn
    x = torch.randn(2, 10, 128)
    q, k, v = attn.c_attn(x).split(128, dim=2)
    q, k, v = (t.view(2, 10, 4, 32).transpose(1, 2) for t in (q, k, v))
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 10, 128)
    torch.testing.assert_close(attn(x), attn.c_proj(y), atol=1e-5, rtol=1e-5)
    idx = torch.randint(0, 512, (2, 16))
    assert gpt(idx).shape == (2, 16, 512)


def test_unet_concatenates_skips(tmp_path: Path) -> None:
    model = netspec.load(SPECS / "unet.yaml").model.eval()
    assert "torch.cat" in model.code
    x = torch.randn(1, 3, 32, 32)
    assert model(x).shape == (1, 2, 32, 32)
    assert model.dec3[0].in_channels == 128  # 64 upsampled + 64 skip, inferred through cat


# -- errors ------------------------------------------------------------------------------------


def graph_error(tmp_path: Path, forward: list[str], layers: str = "fc: {type: Linear, out_features: 4}") -> SpecError:
    statements = "\n".join(f"    - {s}" for s in forward)
    text = (
        "netspec: 1\ninput: {shape: [4]}\nmodel:\n  type: Graph\n  inputs: [x]\n"
        f"  layers:\n    {layers}\n  forward:\n{statements}\n  outputs: y\n"
    )
    path = tmp_path / "g.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        netspec.read(path)
    return err.value


@pytest.mark.parametrize(
    ("forward", "line", "wanted"),
    [
        (["y = fc(h)"], 9, "name 'h' is not defined before this statement"),
        (["y = fc(x)", "z = rleu(y)", "y = z"], 10, "unknown function or layer 'rleu'"),
        (["y = fc(x, x)"], 9, "fc takes 1 input(s) (input), got 2"),
        (["y = x.__class__"], 9, "attribute '__class__' is not allowed"),
        (["'y = (lambda a: a)(x)'"], 9, "Lambda expressions are not allowed"),
        (["y = (lambda a: a)(x)"], 9, "YAML read this one as a mapping"),
        (["y = __import__('os')"], 9, "__import__"),
        (["y = fc"], 9, "layer 'fc' must be called"),
        (["y = x.numpy()"], 9, "method 'numpy' is not allowed"),
        (["y = fc(x) + x[:, :3]"], 9, "failed on inputs [B, 4], [B, 3]"),
        (["y = cat([fc(x), x.unsqueeze(1)], dim=1)"], 9, "failed"),
        (["y == fc(x)"], 9, "a statement must be one assignment"),
        (["import os"], 9, "a statement must be one assignment"),
    ],
)
def test_statement_errors_point_at_the_statement(tmp_path: Path, forward: list[str], line: int, wanted: str) -> None:
    err = graph_error(tmp_path, forward)
    text = str(err)
    assert f"g.yaml:{line}:" in text
    assert f"model.forward.{line - 9}" in text
    assert wanted in text


def test_did_you_mean_for_misspelled_names(tmp_path: Path) -> None:
    err = graph_error(tmp_path, ["h = fc(x)", "y = relu(hh)"])
    assert "did you mean 'h'?" in str(err)
    err = graph_error(tmp_path, ["y = fcc(x)"])
    assert "did you mean 'fc'?" in str(err)


def test_residual_shape_mismatch_names_both_shapes_and_the_line(tmp_path: Path) -> None:
    err = graph_error(
        tmp_path,
        ["h = fc(x)", "y = h + fc2(x)"],
        layers="fc: {type: Linear, out_features: 4}\n    fc2: {type: Linear, out_features: 6}",
    )
    text = str(err)
    assert "g.yaml:11:" in text and "[B, 4], [B, 6]" in text


def test_unused_child_stays_registered_and_is_a_warning(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [4]}
        model:
          type: Graph
          inputs: [x]
          layers:
            fc: {type: Linear, out_features: 4}
            spare: {type: Linear, in_features: 4, out_features: 2}
          forward:
            - y = fc(x)
          outputs: y
        """,
    )
    built = netspec.load(spec)
    assert "spare.weight" in built.model.state_dict()
    assert any("'spare' is never used" in p.message and p.severity == "warning" for p in built.warnings)


def test_undefined_output_is_an_error(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        model:
          type: Graph
          inputs: [x]
          forward:
            - y = relu(x)
          outputs: z
        """,
    )
    with pytest.raises(SpecError, match=r"spec.yaml:7:\d+: model.outputs: output 'z' is not defined"):
        netspec.read(spec)


@pytest.mark.parametrize(
    ("inputs", "wanted"),
    [
        ("[self, y]", "input name 'self' is reserved by the generated forward"),
        ("[torch]", "input name 'torch' is reserved"),
        ("[x, x]", "input 'x' is listed twice"),
        ("[class]", "input name 'class' must be an identifier, not a keyword"),
        ("[fc]", "input 'fc' has the name of a layer or tensor of this Graph"),
    ],
)
def test_graph_input_names_are_checked(tmp_path: Path, inputs: str, wanted: str) -> None:
    text = (
        f"netspec: 1\nmodel:\n  type: Graph\n  inputs: {inputs}\n  layers:\n"
        "    fc: {type: Linear, in_features: 4, out_features: 4}\n  forward: ['y2 = fc(fc)']\n  outputs: y2\n"
    )
    path = tmp_path / "in.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as err:
        netspec.read(path)
    assert "in.yaml:4:" in str(err.value) and "model.inputs." in str(err.value) and wanted in str(err.value)


def test_nested_unpacking_ellipsis_and_constant_outputs(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [5, 4]}
        model:
          type: Graph
          inputs: [x]
          layers:
            lstm: {type: LSTM, hidden_size: 6, batch_first: true}
          forward:
            - out, (h, c) = lstm(x)
            - last = out[..., -1]
            - nothing = None
          outputs: [last, h, nothing]
        """,
    )
    model = netspec.load(spec).model
    last, h, nothing = model(torch.randn(2, 5, 4))
    assert last.shape == (2, 5) and h.shape == (1, 2, 6) and nothing is None


def test_module_prefixed_functions_get_a_hint(tmp_path: Path) -> None:
    err = graph_error(tmp_path, ["y = torch.relu(x)"])
    assert "name 'torch' is not defined" in str(err)
    assert "functions are written without a module prefix" in str(err)


def test_input_shape_with_a_multi_input_graph_says_what_to_do(tmp_path: Path) -> None:
    spec = write(
        tmp_path,
        """
        netspec: 1
        input: {shape: [8]}
        model:
          type: Graph
          inputs: [x, key]
          layers:
            heads: {type: ModuleDict, layers: {a: {type: Linear, out_features: 2}}}
          forward:
            - y = heads[key](x)
          outputs: y
        """,
    )
    with pytest.raises(SpecError) as err:
        netspec.read(spec)
    text = str(err.value)
    assert "spec.yaml:2:1: input: input.shape describes one input, but the model's Graph takes 2 (x, key)" in text
    assert "give input.shape" not in text


BN_COUNTER = """\
netspec: 1
input: {shape: [3, 4, 4]}
model:
  type: Graph
  inputs: [x]
  parameters:
    weight: {shape: [3], init: ones}
    bias: {shape: [3], init: zeros}
  buffers:
    running_mean: {shape: [3], init: zeros}
    running_var: {shape: [3], init: ones}
    num_batches_tracked: {shape: [], init: zeros, dtype: int64}
  forward:
    - num_batches_tracked.add_(1) if training else None
    - y = batch_norm(x, running_mean, running_var, weight, bias, training=training)
  outputs: y
"""


def test_integer_buffer_counted_in_training_as_batchnorm_counts(tmp_path: Path) -> None:
    built = netspec.build(write(tmp_path, BN_COUNTER)).model
    torch_bn = nn.BatchNorm2d(3)
    assert built.num_batches_tracked.dtype == torch.int64
    assert [(k, v.dtype) for k, v in built.state_dict().items()] == [
        (k, v.dtype) for k, v in torch_bn.state_dict().items()
    ]
    x = torch.randn(2, 3, 4, 4)
    for mode in ("train", "train", "eval"):
        getattr(built, mode)()
        getattr(torch_bn, mode)()
        torch.testing.assert_close(built(x), torch_bn(x))
    assert int(built.num_batches_tracked) == int(torch_bn.num_batches_tracked) == 2  # eval does not count
    torch.testing.assert_close(built.running_mean, torch_bn.running_mean)
    built64 = netspec.build(write(tmp_path, BN_COUNTER), dtype="float64").model
    assert built64.num_batches_tracked.dtype == torch.int64 and built64.weight.dtype == torch.float64


@pytest.mark.parametrize(
    ("statement", "wanted"),
    [
        ("y = x.add_(1)", "in-place .add_() only updates one of this Graph's buffers"),
        ("x.add_(1)", "in-place .add_() only updates one of this Graph's buffers"),
        ("weight.mul_(2)", "in-place .mul_() only updates one of this Graph's buffers"),
        ("num_batches_tracked.add_(1) if training else num_batches_tracked", "other branch is None"),
        ("num_batches_tracked.relu()", "a statement must be one assignment"),
    ],
)
def test_in_place_updates_outside_own_buffers_are_errors_at_their_line(
    tmp_path: Path, statement: str, wanted: str
) -> None:
    text = BN_COUNTER.replace("- num_batches_tracked.add_(1) if training else None", f"- {statement}")
    with pytest.raises(SpecError) as err:
        netspec.read(write(tmp_path, text, "bad.yaml"))
    assert "bad.yaml:14:" in str(err.value) and "model.forward.0" in str(err.value), str(err.value)
    assert wanted in str(err.value)


def test_integer_buffer_takes_an_exact_init(tmp_path: Path) -> None:
    text = BN_COUNTER.replace("init: zeros, dtype: int64", "init: normal, dtype: int64")
    with pytest.raises(SpecError) as err:
        netspec.read(write(tmp_path, text, "bad.yaml"))
    assert "bad.yaml:12:" in str(err.value), str(err.value)
    assert (
        "model.buffers.num_batches_tracked.init: int64 buffers are initialised with zeros, ones, constant, "
        "relative_position_index, attention_bias_index or arange, or written out as {fn: values, data: [...]}, "
        "got 'normal'" in str(err.value)
    )
