"""Emit of patterns timm's vision transformers use under guarded tracing (issue 12): SAM's decomposed relative
position bias (``torch.arange(q_size, dtype=torch.float32)`` of a traced size, ``max`` of sizes, a table
indexed by a long tensor). Each hand-written module is emitted with an input shape, rebuilt from the spec's
YAML and compared with the original; what cannot be written is refused with an EmitError naming the line."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import yaml

import netspec


def rebuild(model: nn.Module, spec: netspec.Spec) -> nn.Module:
    out = netspec.build(netspec.read(yaml.safe_load(spec.to_yaml()))).model
    assert list(out.state_dict()) == list(model.state_dict())
    out.load_state_dict(model.state_dict(), strict=True)
    return out


def rel_pos(q_size: int, k_size: int, table: torch.Tensor) -> torch.Tensor:
    """timm's vision_transformer_sam.get_rel_pos without the interpolation branch."""
    max_rel_dist = int(2 * max(q_size, k_size) - 1)
    assert table.shape[0] == max_rel_dist
    q_coords = torch.arange(q_size, dtype=torch.float32)[:, None] * max(k_size / q_size, 1.0)
    k_coords = torch.arange(k_size, dtype=torch.float32)[None, :] * max(q_size / k_size, 1.0)
    relative = (q_coords - k_coords) + (k_size - 1) * max(q_size / k_size, 1.0)
    return table[relative.long()]


class RelPosAttention(nn.Module):
    """SAM's attention with a decomposed relative position bias over an (H, W) grid of tokens."""

    def __init__(self, dim: int, size: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.rel_pos_h = nn.Parameter(torch.randn(2 * size - 1, dim))
        self.rel_pos_w = nn.Parameter(torch.randn(2 * size - 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = self.qkv(x.reshape(b, h * w, c)).chunk(3, dim=-1)
        rh = rel_pos(h, h, self.rel_pos_h)
        rw = rel_pos(w, w, self.rel_pos_w)
        r_q = q.reshape(b, h, w, c)
        bias = (
            torch.einsum("bhwc,hkc->bhwk", r_q, rh)[:, :, :, :, None]
            + torch.einsum("bhwc,wkc->bhwk", r_q, rw)[:, :, :, None, :]
        )
        attn = (q @ k.transpose(-2, -1) + bias.reshape(b, h * w, h * w)).softmax(-1)
        return (attn @ v).reshape(b, h, w, c)


class Patches(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 4, 4)
        self.attn = RelPosAttention(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.embed(x).permute(0, 2, 3, 1))


def test_sam_relative_position_bias_round_trips_exactly() -> None:
    torch.manual_seed(0)
    model = Patches().eval()
    spec = netspec.emit(model, input_shape=(3, 12, 12))
    text = yaml.safe_dump(spec.to_dict())
    assert ".float()" in text and "torch.float32" not in text  # arange(h, dtype=torch.float32) as arange(h).float()
    net = rebuild(model, spec).eval()
    x = torch.randn(2, 3, 12, 12)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)
    # the table fixes the grid: the traces pinned the image size, and the rebuilt model checks it
    with pytest.raises(ValueError, match=r"emitted for an input of shape \[N, 3, 12, 12\]"):
        net(torch.randn(2, 3, 16, 16))


class Factories(nn.Module):
    """Factories with a dtype: of integer sizes they equal the default factory cast to the dtype."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1]
        idx = torch.arange(1, n + 1, 2, dtype=torch.int64)
        count = torch.zeros((x.shape[0], n), dtype=torch.long) + torch.ones(n, dtype=torch.int64)
        return self.fc(x) * torch.arange(n, dtype=torch.float64).float() + count + idx.sum()


def test_factories_with_a_dtype_are_written_with_the_dtype_method() -> None:
    model = Factories().eval()
    spec = netspec.emit(model, input_shape=(5,))
    forward = "\n".join(spec.to_dict()["model"]["forward"])
    assert "arange(n, dtype" not in forward and ".double()" in forward and ".long()" in forward
    net = rebuild(model, spec).eval()
    x = torch.randn(3, 5)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)


class FloatArange(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.arange(0.5, x.shape[1], dtype=torch.float16).float()


def test_an_arange_of_floats_keeps_its_dtype() -> None:
    """arange(0.5, n, dtype=half) computes in half; arange(0.5, n).half() would round float32 values: not the
    same computation, so the dtype is written as a statement dtype name."""
    model = FloatArange()
    spec = netspec.emit(model, input_shape=(5,))
    forward = "\n".join(spec.to_dict()["model"]["forward"])
    assert "dtype=float16" in forward and ".half()" not in forward
    net = rebuild(model, spec)
    x = torch.randn(3, 5)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)


class FactorizedPosEmbed(nn.Module):
    """NaFlexViT's embedding: ``x.add_(pos)`` on the projection (through an ``nn.Identity`` norm), then ``x`` is
    read again by the ``cat`` with the class token."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(6, 8)
        self.norm = nn.Identity()
        self.pos = nn.Parameter(torch.randn(1, 4, 8))
        self.cls = nn.Parameter(torch.randn(1, 1, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.proj(x))
        x.add_(self.pos)
        return torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) * 2


def test_an_in_place_add_read_again_is_written_out_of_place() -> None:
    torch.manual_seed(0)
    model = FactorizedPosEmbed().eval()
    spec = netspec.emit(model, input_shape=(4, 6))
    forward = "\n".join(spec.to_dict()["model"]["forward"])
    assert ".add(pos)" in forward and ".add_(" not in forward
    net = rebuild(model, spec).eval()
    x = torch.randn(3, 4, 6)
    torch.testing.assert_close(net(x), model(x), rtol=0, atol=0)


class SeenThroughAView(nn.Module):
    """``flat`` is a view of ``h`` taken before ``h.add_``: it sees the change, which no statement can say."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc(x)
        flat = h.view(-1)
        h.add_(1.0)
        return h * 2 + flat.view_as(h)


class SeenThroughTheInput(nn.Module):
    """``nn.Identity`` passes the input on: ``h.add_`` changes ``x``, which forward reads again."""

    def __init__(self) -> None:
        super().__init__()
        self.keep = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.keep(x)
        h.add_(1.0)
        return h * 2 + x


@pytest.mark.parametrize("model", [SeenThroughAView(), SeenThroughTheInput()], ids=["view", "identity"])
def test_an_in_place_change_another_name_sees_is_refused(model: nn.Module) -> None:
    with pytest.raises(
        netspec.EmitError, match=r"forward changes a value read again later \(\w+\) in place with \.add_\(\)"
    ):
        netspec.emit(model, input_shape=(4,))
