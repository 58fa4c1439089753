"""Emit of patterns timm's models use (issue 12): tensor methods such as ``.tile()`` (SAM2's Hiera), a forward
chosen per instance in ``__init__`` (FasterNet), a child forward never calls (Hiera's ``Reroll``), Ellipsis
indexing (LowFormer), a nested tuple output (XCiT's ``return x, (Hp, Wp)``), and the train/eval comparison
of traces whose tensor constants are numbered differently (item B). Each hand-written module is emitted,
rebuilt from the spec's YAML and compared with the original in eval and train mode; what cannot be written
is refused with an EmitError naming the module path, class and reason."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import yaml
from test_emit_gaps import round_trip

import netspec
from netspec.errors import EmitError


class Methods(nn.Module):
    """Tensor methods a user of torch expects to write as methods: tiling, repeating, flipping, masking."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, 4, 2, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pos = self.pos.tile(1, 1, 2, 2)  # SAM2's Hiera tiles its window position embedding
        h = x + pos.expand_as(x)
        h = h + h.flip(-1).roll(1, dims=2) + h.repeat_interleave(2, dim=-1)[..., ::2]
        h = h.masked_fill(h > 1.5, 0.0) + h.tril() - h.triu(1)
        h = h + h.cos() * h.sign() + h.floor() - h.round() + h.clamp_min(0.0) + h.erf()
        values, _ = h.sort(dim=-1)
        flat = values.flatten(0, 1)  # (8, 4, 4)
        return flat.bmm(flat.transpose(-1, -2)).unflatten(0, (2, 4))


def test_tile_and_its_neighbours_round_trip() -> None:
    forward = round_trip(Methods(), torch.randn(2, 4, 4, 4))
    text = "\n".join(forward)
    for method in ("tile", "expand_as", "flip", "roll", "repeat_interleave", "masked_fill", "tril", "triu"):
        assert f".{method}(" in text, method
    assert "[..., ::2]" in text


class PartialConv(nn.Module):
    """FasterNet's Partial_conv3: ``__init__`` picks the forward (``self.forward = self.forward_split_cat``)."""

    def __init__(self, dim: int, mode: str) -> None:
        super().__init__()
        self.part = dim // 4
        self.conv = nn.Conv2d(self.part, self.part, 3, 1, 1, bias=False)
        self.forward = self.forward_slicing if mode == "slicing" else self.forward_split_cat  # type: ignore[method-assign]

    def forward_slicing(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x[:, : self.part]), x[:, self.part :]], 1)

    def forward_split_cat(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.part, x.shape[1] - self.part], dim=1)
        return torch.cat((self.conv(x1), x2), 1) * 2


class TwoPartials(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = PartialConv(8, "split_cat")
        self.b = PartialConv(8, "slicing")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x))


def test_a_forward_assigned_per_instance_is_the_one_emitted() -> None:
    model = TwoPartials()
    forward = round_trip(model, torch.randn(1, 8, 5, 5))
    assert forward
    spec = netspec.emit(model).to_dict()
    bodies = [b.get("body", b) for b in spec["blocks"].values()]
    texts = ["\n".join(b["forward"]) for b in bodies]
    assert any("split(" in t and "* 2" in t for t in texts), texts  # forward_split_cat, not another
    assert any("split(" not in t for t in texts), texts  # forward_slicing


class Lambda(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.forward = lambda x: self.fc(x) * 2  # type: ignore[method-assign]


def test_a_forward_assigned_that_is_not_a_method_is_refused() -> None:
    model = nn.Sequential(Lambda())
    with pytest.raises(EmitError) as err:
        netspec.emit(model)
    message = str(err.value)
    assert message.startswith("0 (Lambda): forward is replaced on this instance by function")
    assert "not a method of the module itself" in message


class Unroll(nn.Module):
    """Hiera's Reroll: a helper that forward_intermediates calls with a Python int, forward never."""

    def __init__(self) -> None:
        super().__init__()
        self.schedule = {0: [2, 2], 1: [2]}

    def forward(self, x: torch.Tensor, block_idx: int) -> torch.Tensor:
        return x.view(-1, *self.schedule[block_idx])


class WithHelper(nn.Module):
    def __init__(self, helper_has_weights: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.reroll = Unroll()
        if helper_has_weights:
            self.reroll.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).relu()

    def forward_intermediates(self, x: torch.Tensor) -> torch.Tensor:
        return self.reroll(self.fc(x), 0)


def test_an_unused_child_without_tensors_that_cannot_be_emitted_is_left_out_with_a_warning() -> None:
    model = WithHelper()
    round_trip(model, torch.randn(2, 4))
    spec = netspec.emit(model)
    assert "reroll" not in spec.to_dict()["model"].get("layers", {})
    notes = [str(w) for w in spec.emit_warnings]
    left_out = [n for n in notes if n.startswith("reroll:") and "Unroll is left out of the spec" in n]
    assert left_out and "never calls it" in left_out[0], notes
    assert any("block_idx" in n for n in notes), notes  # why it could not be emitted


def test_an_unused_child_holding_parameters_is_still_refused() -> None:
    with pytest.raises(EmitError) as err:
        netspec.emit(WithHelper(helper_has_weights=True))
    assert str(err.value).startswith("reroll (Unroll): forward cannot be traced")


class Crop(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., :3, 1:] * 2


class Patch(nn.Module):
    """XCiT's ConvPatchEmbed: returns the tokens and their grid size, ``(x, (Hp, Wp))``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, 6, 2, 2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        hp, wp = x.shape[2], x.shape[3]
        return x.flatten(2).transpose(1, 2), (hp, wp)


class PatchNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = Patch()
        self.crop = Crop()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, (hp, wp) = self.patch(x)
        grid = tokens.transpose(1, 2).reshape(x.shape[0], -1, hp, wp)
        return self.crop(grid)


def test_ellipsis_indexing_and_a_nested_tuple_output_round_trip() -> None:
    forward = round_trip(PatchNet(), torch.randn(2, 3, 8, 10))
    assert any("..." in s for s in netspec.emit(PatchNet()).to_yaml().splitlines())
    assert forward


class Constant(nn.Module):
    """Arithmetic on a plain tensor attribute: tracing computes it eagerly and stores a ``_tensor_constantN``."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = torch.tensor([2.0])  # not registered

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * (self.scale * 3)


def test_tensor_constants_are_refused_for_what_they_are_not_as_a_mode_branch() -> None:
    """Item B. The user traced the module with fx first (which leaves ``_tensor_constant0`` on it): the two
    traces emit makes number their constants on from there, and once read that as 'branches on
    self.training'. The refusal names the real cause, and emit leaves the module as it was."""
    model = Constant()
    fx.symbolic_trace(model)
    x = torch.randn(2, 4)
    want = model(x)
    before = dict(vars(model))
    for _ in range(2):  # fx's own constant counter moves on between emits
        with pytest.raises(EmitError) as err:
            netspec.emit(model)
        message = str(err.value)
        assert message.startswith("the model (Constant): forward computes with a tensor that is not a registered")
        assert "its plain tensor attributes: scale" in message
        assert "self.training" not in message
    assert dict(vars(model)).keys() == before.keys()
    torch.testing.assert_close(model(x), want)


def test_a_registered_buffer_instead_round_trips() -> None:
    """The hint's fix: the same computation on a registered buffer is emitted and rebuilt exactly."""

    class Registered(Constant):
        def __init__(self) -> None:
            super().__init__()
            del self.scale
            self.register_buffer("scale", torch.tensor([2.0]))

    model = Registered()
    round_trip(model, torch.randn(2, 4))
    rebuilt = netspec.build(netspec.read(yaml.safe_load(netspec.emit(model).to_yaml()))).model
    assert torch.equal(rebuilt.state_dict()["scale"], torch.tensor([2.0]))


class FollowsTensors(nn.Module):
    """XCiT's positional encoding: tensors made on a parameter's device, cast to its dtype (``.to(w.dtype)``)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.scale = nn.Parameter(torch.rand(4) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(4, device=self.scale.device).to(self.scale.dtype)
        return (self.fc(x) + ramp).to(x.device).to(x) * self.scale


def test_to_a_dtype_or_device_read_from_a_tensor_round_trips() -> None:
    forward = round_trip(FollowsTensors(), torch.randn(2, 4))
    text = "\n".join(forward)
    assert ".to(scale.dtype)" in text and ".to(x.device).to(x)" in text
    # and the double-precision model follows: the cast is to whatever dtype the parameter has
    model = FollowsTensors().double()
    spec = netspec.emit(model)
    rebuilt = netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model.double()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 4, dtype=torch.float64)
    assert rebuilt(x).dtype == torch.float64
    torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.parametrize("call", ["x.to('cuda')", "x.to(x.dtype, copy=True)", "x.to()"])
def test_to_with_a_constant_or_more_arguments_is_a_spec_error(
    call: str, expect_spec_error: Callable[..., netspec.SpecError]
) -> None:
    text = f"""\
        netspec: 1
        input: {{shape: [4]}}
        model:
          type: Graph
          inputs: [x]
          forward:
            - y = {call}
          outputs: y
        """
    expect_spec_error(
        text, line=7, path="model.forward.0", words=(".to() takes one value read from a tensor", "h.float()")
    )


class Fourier(nn.Module):
    """XCiT's PositionalEncodingFourier: made on the projection's device, cast to the projection's dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.token_projection = nn.Conv2d(4, 6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = self.token_projection.weight.device
        dtype = self.token_projection.weight.dtype
        ramp = torch.arange(1, 5, device=device).to(torch.float32)
        grid = (ramp[None, :, None, None] * x).to(dtype)
        return self.token_projection(grid)


def test_a_childs_tensor_dtype_and_device_round_trip() -> None:
    forward = round_trip(Fourier(), torch.randn(2, 4, 3, 3))
    text = "\n".join(forward)
    assert "token_projection.weight.device" in text and "token_projection.weight.dtype" in text


def test_an_attribute_of_a_childs_missing_tensor_is_a_spec_error(
    expect_spec_error: Callable[..., netspec.SpecError],
) -> None:
    text = """\
        netspec: 1
        input: {shape: [4]}
        model:
          type: Graph
          inputs: [x]
          layers:
            inner: {type: Graph, inputs: [x], parameters: {scale: {shape: [4], init: ones}}, forward: [], outputs: x}
          forward:
            - y = x.to(inner.scael.dtype)
          outputs: y
        """
    expect_spec_error(text, line=9, path="model.forward.0", words=("inner (Graph) has no parameter or buffer 'scael'",))


class Blockified(nn.Module):
    """NesT's deblockify and TinyViT's window check: Python reads sizes (``int(math.sqrt(T))``, ``if H == ws``)."""

    def __init__(self, window: int) -> None:
        super().__init__()
        self.window = window
        self.norm = nn.LayerNorm(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        side = int(math.sqrt(t))
        if side == self.window:  # one window: no partition
            return self.norm(x) + x
        grid = x.reshape(b, side // self.window, self.window, side // self.window, self.window, c)
        return self.norm(grid.transpose(2, 3).reshape(b, t, c)) * 2


class Stage(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(3, 4)
        self.blocks = nn.Sequential(Blockified(2), Blockified(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.embed(x.flatten(2).transpose(1, 2)))


def test_modules_inside_a_sequential_are_traced_with_example_sizes() -> None:
    """The Sequential runs its children one by one on the example, so each traced block inside it knows the
    sizes it is called with (timm's stages of blocks: nest, tiny_vit, mobilevit, cpubone)."""
    model = Stage().eval()
    spec = netspec.emit(model, input_shape=(3, 4, 4))
    net = netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model
    net.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, 3, 4, 4)
    for training in (False, True):
        model.train(training)
        net.train(training)
        torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    bodies = {name: "\n".join(b.get("body", b)["forward"]) for name, b in spec.to_dict()["blocks"].items()}
    assert any("* 2" in text for text in bodies.values())  # the 2-window block partitions
    assert any("* 2" not in text for text in bodies.values())  # the 4-window one does not


def levit_index(r: int) -> torch.Tensor:
    """LeViT's (and TinyViT's, EfficientViT-MSRA's) ``attention_bias_idxs``, as timm builds it."""
    points = list(itertools.product(range(r), range(r)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for p1 in points:
        for p2 in points:
            offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
            offsets.setdefault(offset, len(offsets))
            idxs.append(offsets[offset])
    return torch.LongTensor(idxs).view(len(points), len(points))


class BiasedAttention(nn.Module):
    """TinyViT's attention bias: a learned bias per offset, gathered by a non-persistent index buffer."""

    def __init__(self, r: int) -> None:
        super().__init__()
        self.attention_biases = nn.Parameter(torch.randn(2, r * r))
        self.register_buffer("attention_bias_idxs", levit_index(r), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 2, N, N) attention logits
        return (x + self.attention_biases[:, self.attention_bias_idxs]).softmax(-1)


@pytest.mark.parametrize("r", [1, 2, 3, 7])
def test_the_attention_bias_index_init_is_timms_table(r: int) -> None:
    from netspec.catalog.windows import attention_bias_index

    want = levit_index(r)
    assert torch.equal(attention_bias_index(tuple(want.shape), torch.int64, torch.device("cpu")), want)


def test_a_non_persistent_attention_bias_index_round_trips() -> None:
    model = BiasedAttention(3)
    spec = netspec.emit(model)
    buffers = spec.to_dict()["model"]["buffers"]
    assert buffers["attention_bias_idxs"] == {
        "shape": [9, 9],
        "init": "attention_bias_index",
        "persistent": False,
        "dtype": "int64",
    }
    round_trip(model, torch.randn(2, 2, 9, 9))


class Coordinates(nn.Module):
    """SAM's relative coordinates: ``torch.arange(n, dtype=torch.float32)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.arange(x.shape[-1], dtype=torch.float32)[:, None] * 0.5
        k = torch.arange(x.shape[-1], dtype=torch.float64)[None, :]
        return x + (q - k.float()) + torch.arange(x.shape[-1], dtype=torch.int64)


def test_a_dtype_constant_round_trips() -> None:
    forward = round_trip(Coordinates(), torch.randn(2, 5, 5))
    text = "\n".join(forward)
    assert "dtype=float32" in text and "dtype=float64" in text and "dtype=int64" in text


def test_a_dtype_name_cannot_be_a_variable(expect_spec_error: Callable[..., netspec.SpecError]) -> None:
    text = """\
        netspec: 1
        input: {shape: [4]}
        model:
          type: Graph
          inputs: [x]
          forward:
            - float32 = x * 2
          outputs: float32
        """
    expect_spec_error(text, line=7, path="model.forward.0", words=("the name 'float32' is reserved",))
