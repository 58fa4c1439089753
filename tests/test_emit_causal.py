"""Emit of what Hugging Face's causal language models need (issue 12): a traced child given a tuple of
computed values (Llama's ``position_embeddings=(cos, sin)``) takes its items as Graph inputs of their own
(``emitter/lists``);
constants and computed values a parent passes into a child's ``**kwargs`` reach the child's Graph (GPT-2's
``use_cache=False``, Llama's ``position_ids``); ``masking_utils``' causal masks are traced by broadcasting
instead of ``torch.vmap``; ``& | ^`` and ``diff`` in statements. Each round trip (tests/zoo.py) compares the
rebuilt model with the original in eval and train mode; the Hugging Face models are also compared at
sequence lengths other than the traced ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from zoo import VOCAB, hf_cases, import_torchvision, round_trip

import netspec
from netspec.errors import EmitError


class _Rotary(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("inv_freq", 1.0 / (100 ** (torch.arange(0, 8, 2).float() / 8)), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(x.shape[1], device=x.device).float()
        freqs = pos[:, None] * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos(), emb.sin()


class _Attention(nn.Module):
    """Takes the tuple without a default (as LlamaAttention does) and reads ``**kwargs``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(8, 8)

    def forward(self, h: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor], **kwargs: object):
        cos, sin = position_embeddings
        out = self.proj(h * cos + h.flip(-1) * sin)
        if kwargs.get("double"):  # a constant the caller passes into **kwargs: the Graph must compute it
            out = out * 2
        bias = kwargs.get("bias")
        return out if bias is None else out + bias  # a computed value passed into **kwargs


class _Layer(nn.Module):
    """Takes the tuple with a default (as LlamaDecoderLayer does) and passes **kwargs on."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = _Attention()
        self.norm = nn.LayerNorm(8)

    def forward(self, h: torch.Tensor, position_embeddings: tuple | None = None, **kwargs: object) -> torch.Tensor:
        return h + self.attn(self.norm(h), position_embeddings, **kwargs)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rotary = _Rotary()
        self.bias = nn.Linear(8, 8)
        self.layers = nn.ModuleList([_Layer(), _Layer()])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = self.rotary(x)
        bias = self.bias(x)
        for layer in self.layers:
            x = layer(x, position_embeddings=pe, double=True, bias=bias)
        return x


def test_a_tuple_and_kwargs_reach_the_traced_children() -> None:
    outcome = round_trip("net", _Net, (5, 8))
    assert outcome.status == "exact", outcome
    spec = netspec.emit(_Net().eval(), input_shape=(5, 8))
    layer = next(b["body"] for name, b in spec.to_dict()["blocks"].items() if name == "_Layer")
    attention = next(b["body"] for name, b in spec.to_dict()["blocks"].items() if name == "_Attention")
    assert layer["inputs"] == ["h", "position_embeddings_0", "position_embeddings_1", "bias"]
    assert attention["inputs"] == ["h", "position_embeddings_0", "position_embeddings_1", "bias"]
    assert any("* 2" in line for line in attention["forward"]), attention["forward"]
    notes = "\n".join(str(w) for w in spec.emit_warnings)
    assert "_Attention.forward's **kwargs is traced with bias (the values its caller passes)" in notes


def test_the_constant_in_kwargs_is_not_dropped() -> None:
    """Without ``double=True`` reaching the attention's Graph, the rebuilt output would be half as large."""
    torch.manual_seed(0)
    model = _Net().eval()
    rebuilt = netspec.build(netspec.emit(model, input_shape=(5, 8))).model
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(3, 6, 8)  # another batch and length than traced
    torch.testing.assert_close(rebuilt.eval()(x), model(x))


class _Mixed(nn.Module):
    """Calls one child with a pair at one place and a triple at another."""

    def __init__(self) -> None:
        super().__init__()
        self.rotary = _Rotary()
        self.layer = _Layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cos, sin = self.rotary(x)
        x = self.layer(x, position_embeddings=(cos, sin))
        return self.layer(x, position_embeddings=(cos, sin, cos))


def test_tuples_of_different_lengths_are_refused() -> None:
    with pytest.raises(EmitError, match=r"^layer \(_Layer\): forward's 'position_embeddings' is called with lists"):
        netspec.emit(_Mixed().eval(), input_shape=(5, 8))


def test_without_examples_a_value_for_kwargs_stays_refused() -> None:
    """Plain tracing (no input_shape) has no example calls for the children: the keyword only ``**kwargs``
    takes is refused, as before, naming the caller, the child and the keyword."""
    expected = r"^the model \(_Net\): calls layers.0 \(_Layer\) with double=\.\.\., which only its \*\*kwargs takes"
    with pytest.raises(EmitError, match=expected):
        netspec.emit(_Net().eval())


def test_bitwise_operators_and_diff_in_statements() -> None:
    spec = {
        "netspec": 1,
        "input": {"shape": [6]},
        "model": {
            "type": "Graph",
            "inputs": ["x"],
            "forward": [
                "m = (x > 0) & (x < 1) | ~(x > -1) ^ (x > 2)",
                "d = diff(x, dim=-1)",
            ],
            "outputs": ["m", "d"],
        },
    }
    model = netspec.build(spec).model
    x = torch.randn(4, 6)
    m, d = model(x)
    torch.testing.assert_close(m, (x > 0) & (x < 1) | ~(x > -1) ^ (x > 2))
    torch.testing.assert_close(d, torch.diff(x, dim=-1))


# -- Hugging Face: the masks of masking_utils -----------------------------------------------------------------


def _masking_utils():
    import_torchvision()
    from transformers import masking_utils

    return masking_utils


class _Masked(nn.Module):
    """Scores masked by a masking_utils mask built from the input's sizes (as create_causal_mask does)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.proj = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = _masking_utils()
        n = x.shape[1]
        positions = torch.arange(n, device=x.device)
        if self.kind == "causal":
            fn = mu.causal_mask_function
        elif self.kind == "sliding":
            fn = mu.sliding_window_causal_mask_function(3)
        elif self.kind == "packed":
            # Llama's case: position_ids given, no attention mask
            packed = mu.find_packed_sequence_indices(positions[None].expand(x.shape[0], -1))
            fn = mu.and_masks(mu.causal_mask_function, mu.packed_sequence_mask_function(packed))
        else:  # a mask function of the model's own: not known to be element by element
            fn = lambda b, h, q, kv: (kv <= q).sum() > 0  # noqa: E731
        mask = mu.sdpa_mask(
            batch_size=x.shape[0], cache_position=positions, kv_length=n, mask_function=fn, allow_is_causal_skip=False
        )
        h = self.proj(x)
        scores = h @ h.transpose(-1, -2)
        return scores.masked_fill(~mask[:, 0], -1e9)


@pytest.mark.parametrize("kind", ["causal", "sliding", "packed"])
def test_masking_utils_masks_are_traced_by_broadcasting(kind: str) -> None:
    """The rebuilt model computes the mask at run time: the same as vmap's, at lengths other than traced."""
    _masking_utils()  # imported before emit, as a model's module imports it
    torch.manual_seed(0)
    model = _Masked(kind).eval()
    spec = netspec.emit(model, input_shape=(7, 4))
    assert not any("vmap" in line for line in spec.to_dict()["model"]["forward"])
    rebuilt = netspec.build(spec).model
    rebuilt.load_state_dict(model.state_dict())
    for length in (1, 5, 12):
        x = torch.randn(2, length, 4)
        torch.testing.assert_close(rebuilt.eval()(x), model(x))


def test_a_mask_function_of_the_models_own_keeps_vmap_and_is_refused() -> None:
    mu = _masking_utils()
    with pytest.raises(EmitError, match=r"^the model \(_Masked\): forward cannot be traced: vmap"):
        netspec.emit(_Masked("own").eval(), input_shape=(7, 4))
    assert mu._vmap_for_bhqkv.__name__ == "_vmap_for_bhqkv"  # the trace put masking_utils back as it was


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_causal_lms_compute_the_original_at_other_lengths(name: str) -> None:
    """Traced at 7 and 8 tokens; the rebuilt model agrees with the original at 1, 3 and 12 tokens, in eval and
    (same seed) train mode; Llama's refuses to run under autocast, which its rotary embedding turns off."""
    case = next(c for c in hf_cases() if c.name == name)
    torch.manual_seed(0)
    model = case.make().eval()
    spec = netspec.emit(model, input_shape=case.input_shape, inputs=case.inputs, input_dtype="int64")
    rebuilt = netspec.build(spec).model
    rebuilt.load_state_dict(model.state_dict())
    for length in (1, 3, 12):
        ids = torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(length))
        with torch.no_grad():
            want = model.eval()(ids).last_hidden_state
            torch.testing.assert_close(rebuilt.eval()(ids)["last_hidden_state"], want)
            torch.manual_seed(1)
            want = model.train()(ids).last_hidden_state
            torch.manual_seed(1)
            torch.testing.assert_close(rebuilt.train()(ids)["last_hidden_state"], want)
    if name == "llama":  # its rotary embedding turns autocast off (traced with the fixed device type 'cpu')
        rotary = spec.to_dict()["blocks"]["LlamaRotaryEmbedding"]["body"]["forward"]
        assert any("expect_no_autocast(x, 'cpu')" in line for line in rotary), rotary
        with torch.autocast("cpu", dtype=torch.bfloat16), pytest.raises(RuntimeError, match="refuses to run under"):
            rebuilt.eval()(ids)


class _AutocastFixedDevice(nn.Module):
    """A fixed device type, as Hugging Face's rotary embeddings are traced (``x.device.type`` is no str then)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            return self.fc(x) @ x.transpose(-1, -2)


def test_autocast_off_for_a_fixed_device_type_is_checked_on_the_input_and_that_type() -> None:
    outcome = round_trip("autocast-cpu", _AutocastFixedDevice, (3, 4))
    assert outcome.status == "exact", outcome
    model = _AutocastFixedDevice().eval()
    spec = netspec.emit(model, input_shape=(3, 4))
    assert "expect_no_autocast(x, 'cpu')" in "\n".join(spec.to_dict()["model"]["forward"])
    rebuilt = netspec.build(spec).model.eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.float32  # the original keeps float32 under autocast
        with pytest.raises(RuntimeError, match=r"refuses to run under torch\.autocast \(enabled for 'cpu'\)"):
            rebuilt(x)
