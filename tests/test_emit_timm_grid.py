"""Emit of what timm's rotary-embedding ViTs (EVA/DINOv3, DeepSeek, Qwen3, Gemma 4), EdgeNeXt and EfficientViT
(MIT) write (issue 12): a helper marked ``@torch.fx.wrap`` (timm's ``_build_grid``) followed op by op,
``torch.meshgrid`` and ``F.rms_norm`` statements, ``.to(device=..., dtype=...)``, a ``with
torch.autocast(device_type=v.device.type, enabled=False)`` region, and a child whose tensors the parent reads
but whose forward nobody calls (``self.rope.get_embed(...)``). Each hand-written module is emitted with an
input shape (guarded tracing), rebuilt from the spec's YAML and compared with the original; what cannot be
written is refused naming the module, its class and the reason."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F
import yaml
from torch.fx._symbolic_trace import _wrapped_fns_to_patch

import netspec
from netspec.errors import EmitError


def rebuild(model: nn.Module, shape: tuple[int, ...]) -> tuple[netspec.Spec, nn.Module]:
    """Emit ``model`` for per-sample ``shape``, rebuild it from the YAML, load its state strictly."""
    model.eval()
    spec = netspec.emit(model, input_shape=shape)
    rebuilt = netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model
    assert list(rebuilt.state_dict()) == list(model.state_dict())
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    return spec, rebuilt


def same_outputs(model: nn.Module, rebuilt: nn.Module, x: torch.Tensor) -> None:
    for training in (False, True):
        model.train(training)
        rebuilt.train(training)
        torch.manual_seed(0)
        want = model(x)
        torch.manual_seed(0)
        torch.testing.assert_close(rebuilt(x), want, rtol=0, atol=0)


def forward_text(spec: netspec.Spec) -> str:
    return yaml.safe_dump(spec.to_dict())


# -- a helper marked @torch.fx.wrap --------------------------------------------------------------------------
@torch.fx.wrap
def build_grid(feat_shape: list[int], device: torch.device | None = None) -> torch.Tensor:
    """timm's ``_build_grid`` in small: integer positions of a feature map, stacked as (H, W, 2)."""
    if len(feat_shape) != 2:
        raise ValueError("two spatial sizes")
    t = [torch.arange(s, device=device, dtype=torch.int64).to(torch.float32) for s in feat_shape]
    return torch.stack(torch.meshgrid(t, indexing="ij"), dim=-1).to(dtype=torch.float32)


@torch.fx.wrap
def sizes_of(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A wrapped helper whose result is a tuple: recorded as fx records it, then refused by name."""
    return x.sum(-1), x.mean(-1)


class GridEmbed(nn.Module):
    """Adds a projected coordinate grid of the map's own size (as rotary ViTs build theirs every call)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(2, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = build_grid([x.shape[-2], x.shape[-1]], device=x.device)
        return x + self.proj(grid).permute(2, 0, 1)


def test_a_wrapped_helper_is_followed_and_computes_the_same() -> None:
    before = dict(_wrapped_fns_to_patch)
    model = GridEmbed()
    spec, rebuilt = rebuild(model, (3, 5, 7))
    text = forward_text(spec)
    assert "build_grid" not in text and "meshgrid(" in text and "stack(" in text
    for shape in ((2, 3, 5, 7), (1, 3, 5, 7)):
        x = torch.randn(*shape)
        same_outputs(model, rebuilt, x)
    # fx's table of wrapped functions is as it was, and plain fx still records the helper as one call
    # (torch may import modules that wrap functions of their own meanwhile: only that nothing was removed counts)
    assert set(before) <= set(_wrapped_fns_to_patch) and (id(globals()), "build_grid") in before
    traced = fx.symbolic_trace(GridEmbed())
    assert any(n.op == "call_function" and n.target is build_grid for n in traced.graph.nodes)


@torch.fx.wrap
def positive_part(x: torch.Tensor) -> torch.Tensor:
    """A wrapped helper branching on tensor data: no trace follows it, so it stays fx's one call."""
    return x.clamp_min(0) if bool(x.sum() > 0) else x


class DataHelper(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return positive_part(x) * 2


def test_a_wrapped_helper_the_trace_cannot_follow_is_refused_by_name() -> None:
    with pytest.raises(EmitError, match=r"^the model \(DataHelper\): calls test_emit_timm_grid\.positive_part, which"):
        netspec.emit(DataHelper(), input_shape=(4,))


class TupleHelper(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = sizes_of(x)
        return a + b


def test_a_wrapped_helper_returning_a_tuple_is_refused_by_name() -> None:
    with pytest.raises(EmitError, match=r"the model \(TupleHelper\): calls test_emit_timm_grid\.sizes_of, which"):
        netspec.emit(TupleHelper(), input_shape=(4,))


# -- meshgrid and rms_norm statements -------------------------------------------------------------------------
def test_meshgrid_and_rms_norm_statements_compute_what_torch_computes() -> None:
    text = """
netspec: 1
input: {shape: [6]}
model:
  type: Graph
  inputs: [x]
  parameters: {w: {shape: [6], init: ones}}
  forward:
    - ij = meshgrid([x[0], x[1, :4]], indexing='ij')
    - xy = meshgrid(x[0], x[1, :4], indexing='xy')
    - g = stack(ij, dim=-1).sum(-1) + stack(xy, dim=-1).sum(-1).transpose(0, 1)
    - n = rms_norm(x, (6,), weight=w, eps=1e-06)
  outputs: [g, n]
"""
    model = netspec.build(netspec.read(yaml.safe_load(text))).model
    with torch.no_grad():
        model.w.copy_(torch.rand(6) + 0.5)
    x = torch.randn(2, 6)
    g, n = model(x)
    a, b = torch.meshgrid(x[0], x[1, :4], indexing="ij")
    c, d = torch.meshgrid(x[0], x[1, :4], indexing="xy")
    want = torch.stack([a, b], -1).sum(-1) + torch.stack([c, d], -1).sum(-1).transpose(0, 1)
    torch.testing.assert_close(g, want, rtol=0, atol=0)
    torch.testing.assert_close(n, F.rms_norm(x, (6,), model.w, 1e-6), rtol=0, atol=0)


def test_meshgrid_of_a_matrix_is_a_spec_error(expect_spec_error: Callable[..., netspec.SpecError]) -> None:
    text = """\
        netspec: 1
        input: {shape: [4]}
        model:
          type: Graph
          inputs: [x]
          forward:
            - y = meshgrid([x, x], indexing='ij')
          outputs: y
        """
    expect_spec_error(text, line=7, path="model.forward.0", words=("meshgrid",))


class TimmRmsNorm(nn.Module):
    """timm's RmsNorm: ``F.rms_norm(x, self.normalized_shape, self.weight, self.eps)``."""

    def __init__(self) -> None:
        super().__init__()
        self.normalized_shape = (6,)
        self.weight = nn.Parameter(torch.rand(6) + 0.5)
        self.eps = 1e-6

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)


def test_rms_norm_round_trips() -> None:
    model = TimmRmsNorm()
    spec, rebuilt = rebuild(model, (6,))
    assert "rms_norm(" in forward_text(spec)
    same_outputs(model, rebuilt, torch.randn(3, 6))


# -- .to(device=..., dtype=...) --------------------------------------------------------------------------------
class ToBoth(nn.Module):
    """EdgeNeXt's positional encoding: ``~torch.zeros(shape).to(device=device, dtype=torch.bool)``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        device = self.proj.weight.device
        mask = ~torch.zeros(x.shape).to(device=device, dtype=torch.bool)
        wide = x.to(device, torch.float64)  # by position: to(device, dtype)
        return self.proj(x).masked_fill(~mask, 5.0) + wide.sum(-1, keepdim=True).to(dtype=x.dtype)


def test_to_with_a_device_and_a_dtype_is_written_as_a_move_and_a_cast() -> None:
    model = ToBoth()
    spec, rebuilt = rebuild(model, (4,))
    text = forward_text(spec)
    assert ".bool()" in text and ".double()" in text and ".to(getattr" in text.replace("\n", "")
    out = rebuilt(torch.randn(2, 4))
    assert out.dtype == torch.float32
    same_outputs(model, rebuilt, torch.randn(2, 4))


@pytest.mark.parametrize(
    ("call", "shown"),
    [
        ("x.to(device='cpu', dtype=torch.float64)", r"device='cpu', dtype=torch\.float64"),
        ("x.to(x.device, copy=True)", r"copy=True"),
        ("x.to(torch.float64, non_blocking=True)", r"torch\.float64, non_blocking=True"),
        ("x.to(x.device, memory_format=torch.channels_last)", r"memory_format="),
    ],
)
def test_to_with_a_fixed_device_or_other_arguments_is_refused(call: str, shown: str) -> None:
    namespace: dict[str, object] = {"torch": torch, "nn": nn}
    exec(f"class ToOther(nn.Module):\n    def forward(self, x):\n        return {call}\n", namespace)
    model = namespace["ToOther"]()  # type: ignore[operator]
    with pytest.raises(EmitError, match=rf"the model \(ToOther\): calls \.to\(.*{shown}.*\) with a fixed device"):
        netspec.emit(model, input_shape=(4, 4, 4))  # type: ignore[arg-type]


# -- autocast turned off ---------------------------------------------------------------------------------------
class LinearAttention(nn.Module):
    """EfficientViT's LiteMLA: the attention runs in float32 with autocast off."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = nn.Linear(4, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        v = F.pad(v, (0, 1), mode="constant", value=1.0)
        if v.device.type != "meta":
            with torch.autocast(device_type=v.device.type, enabled=False):
                dtype = v.dtype
                kv = k.float().transpose(-1, -2) @ v.float()
                out = q.float() @ kv
                out = (out[..., :-1] / (out[..., -1:] + 1e-5)).to(dtype)
        else:
            out = q
        return out + v[..., :-1]


def test_autocast_turned_off_round_trips_and_the_rebuilt_model_refuses_autocast() -> None:
    model = LinearAttention()
    spec, rebuilt = rebuild(model, (5, 4))
    assert "expect_no_autocast(" in forward_text(spec)
    assert torch.autocast is torch.amp.autocast_mode.autocast and torch.amp.autocast is torch.autocast
    x = torch.randn(2, 5, 4)
    same_outputs(model, rebuilt, x)
    model.eval()
    rebuilt.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)  # the original computes its attention in float32 here
        with pytest.raises(RuntimeError, match=r"refuses to run under torch\.autocast"):
            rebuilt(x)


class AutocastOn(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16):
            return x @ x.transpose(-1, -2)


@pytest.mark.parametrize(
    ("model", "reason"),
    [
        (AutocastOn(), r"AutocastOn\): forward cannot be traced: forward enters torch.autocast with enabled=True"),
    ],
)
def test_other_autocast_regions_are_refused(model: nn.Module, reason: str) -> None:
    with pytest.raises(EmitError, match=reason):
        netspec.emit(model, input_shape=(3, 4))
    assert torch.autocast is torch.amp.autocast_mode.autocast


class AutocastOff(nn.Module):
    """Autocast turned off around a Linear, the context made by ``make``. With ``torch.autocast("cpu",
    enabled=False)``, a trace without examples used to enter the real context, record nothing and emit a spec
    that computes the region under an enclosing autocast."""

    def __init__(self, make: Callable[[], object]) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.make = make

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self.make():  # type: ignore[attr-defined]
            return self.fc(x).float() * 2


def test_an_autocast_region_without_an_input_shape_is_refused_not_dropped() -> None:
    model = AutocastOff(lambda: torch.autocast("cpu", enabled=False))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 4)).dtype == torch.float32  # the region really is float32
    with pytest.raises(EmitError, match=r"AutocastOff\): .*forward enters torch.autocast; .*pass input_shape="):
        netspec.emit(model)
    assert torch.autocast is torch.amp.autocast_mode.autocast and torch.amp.autocast is torch.autocast
    spec, rebuilt = rebuild(model, (4,))  # with examples it is followed and checked at run time
    assert "expect_no_autocast(x, 'cpu')" in forward_text(spec)
    same_outputs(model, rebuilt, torch.randn(2, 4))


class AutocastOffComputedDevice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type.lower(), enabled=False):
            return x * 2


def test_autocast_off_for_a_device_type_no_value_names_is_refused() -> None:
    reason = r"forward turns autocast off for the device type .*; a Graph can only check the device of one of"
    with pytest.raises(EmitError, match=r"AutocastOffComputedDevice\): .*" + reason):
        netspec.emit(AutocastOffComputedDevice(), input_shape=(4,))
    assert torch.autocast is torch.amp.autocast_mode.autocast


@pytest.mark.parametrize("shape", [(4,), None])
@pytest.mark.parametrize(
    ("make", "shown"),
    [
        (lambda: torch.amp.autocast_mode.autocast("cpu", enabled=False), "torch.amp.autocast_mode.autocast"),
        (lambda: torch.cpu.amp.autocast(enabled=False), "torch.cpu.amp.autocast_mode.autocast"),
    ],
)
def test_autocast_made_another_way_is_refused_not_dropped(
    make: Callable[[], object], shown: str, shape: tuple[int, ...] | None
) -> None:
    model = AutocastOff(make)
    with pytest.raises(EmitError, match=rf"forward enters {shown}, which a trace would not record"):
        netspec.emit(model, input_shape=shape)
    assert torch.amp.autocast_mode.autocast.__enter__.__module__ == "torch.amp.autocast_mode"  # restored
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(2, 4)).dtype == torch.float32


SEEN_ELSEWHERE: list[tuple[object, ...]] = []  # not on the module: emit traces copies of it


class CallsFromAnotherThread(nn.Module):
    """A forward during whose trace another thread of the program makes tensors and enters autocast."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        def elsewhere() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16) as context:
                SEEN_ELSEWHERE.append((torch.zeros(3), torch.arange(2), torch.is_autocast_enabled("cpu"), context))

        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join()
        return self.fc(x) + torch.zeros(4)


def test_another_thread_gets_torch_own_factories_and_autocast_while_emit_traces() -> None:
    model = CallsFromAnotherThread()
    SEEN_ELSEWHERE.clear()
    spec, rebuilt = rebuild(model, (4,))
    assert "zeros(4)" in forward_text(spec)  # this thread's factory call is recorded ...
    assert SEEN_ELSEWHERE
    for zeros, arange, autocast_on, context in SEEN_ELSEWHERE:  # ... the other thread's are torch's own
        assert type(zeros) is torch.Tensor and torch.equal(zeros, torch.zeros(3))
        assert type(arange) is torch.Tensor and torch.equal(arange, torch.arange(2))
        assert autocast_on is True and isinstance(context, torch.amp.autocast_mode.autocast)
    same_outputs(model, rebuilt, torch.randn(2, 4))


def test_expect_no_autocast_statement_checks_the_value_device() -> None:
    text = """
netspec: 1
input: {shape: [3]}
model:
  type: Graph
  inputs: [x]
  forward:
    - y = expect_no_autocast(x) * 2
  outputs: y
"""
    model = netspec.build(netspec.read(yaml.safe_load(text))).model
    x = torch.randn(2, 3)
    torch.testing.assert_close(model(x), x * 2)
    with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="enabled for 'cpu'"):
        model(x)


# -- a child whose tensors the parent reads, never called -----------------------------------------------------
class Rope(nn.Module):
    """timm's RotaryEmbeddingCat in small: ``get_embed`` reads ``bands``; ``forward`` iterates the traced
    shape, which no trace without an example can follow."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("bands", torch.linspace(1.0, 3.0, 4), persistent=False)

    def get_embed(self, shape: list[int]) -> torch.Tensor:
        grid = build_grid(shape, device=self.bands.device)  # (H, W, 2)
        return (grid.unsqueeze(-1) * self.bands).flatten(2).sin()  # (H, W, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embed = self.get_embed([s for s in x.shape[2:]])
        return x * embed.permute(2, 0, 1)


class RopeViT(nn.Module):
    def __init__(self, call_rope: bool = False) -> None:
        super().__init__()
        self.rope = Rope()
        self.proj = nn.Conv2d(3, 8, 1)
        self.call_rope = call_rope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.proj(x)
        if self.call_rope:
            return self.rope(h)
        return h + self.rope.get_embed([h.shape[-2], h.shape[-1]]).permute(2, 0, 1)


def test_a_child_read_but_never_called_keeps_its_tensors_and_refuses_calls() -> None:
    model = RopeViT()
    spec, rebuilt = rebuild(model, (3, 4, 5))
    assert [n for n, _ in rebuilt.named_buffers()] == [n for n, _ in model.named_buffers()] == ["rope.bands"]
    torch.testing.assert_close(rebuilt.rope.bands, model.rope.bands, rtol=0, atol=0)
    same_outputs(model, rebuilt, torch.randn(2, 3, 4, 5))
    assert "not_emitted('Rope', x)" in forward_text(spec)
    assert any("Rope.forward is not emitted" in str(w) for w in spec.emit_warnings)
    with pytest.raises(RuntimeError, match="the forward of this Rope was not emitted"):
        rebuilt.rope(torch.randn(2, 8, 4, 5))


def test_a_called_child_whose_forward_cannot_be_traced_is_still_refused() -> None:
    class Opaque(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2 if x.sum() > 0 else x

    class Caller(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Opaque()
            self.register_buffer("scale", torch.ones(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * self.scale

    with pytest.raises(EmitError, match=r"^inner \(Opaque\): forward cannot be traced: Python control flow on tensor"):
        netspec.emit(Caller(), input_shape=(4,))


def test_without_an_input_shape_the_uncalled_child_is_refused_as_before() -> None:
    with pytest.raises(EmitError, match=r"^rope \(Rope\): forward cannot be traced: Proxy object cannot be iterated"):
        netspec.emit(RopeViT())
