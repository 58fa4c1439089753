"""Emit of real model zoos: every torchvision classifier and the smallest model of every timm family either
round-trips exactly or emit says precisely why not (module path, class, reason); so does each Hugging Face
model built from a small config. The default run covers a fast set whose round trip must be exact;
``pytest --zoo tests/test_zoo.py`` runs every torchvision classifier up to 150M parameters and every timm
family (bench/zoo.py prints the pass rates, grouped refusals and emit times recorded in docs/emit.md).
Emit must leave the model it reads exactly as it was."""

from __future__ import annotations

import contextlib
import copy

import pytest
import torch
import torch.nn as nn
from zoo import (
    VOCAB,
    Outcome,
    hf_cases,
    hf_round_trip,
    import_timm,
    import_torchvision,
    make_timm,
    model_state,
    round_trip,
    state_change,
    timm_families,
    timm_input_shape,
)

import netspec

torchvision = import_torchvision()

# Small classifiers covering the families' building blocks (residuals, depthwise + SE, channel shuffle,
# fire modules, RegNet's group convs, dense concatenation): their round trip must be exact.
FAST_EXACT = [
    "resnet18",
    "mobilenet_v3_small",
    "squeezenet1_1",
    "shufflenet_v2_x0_5",
    "mnasnet0_5",
    "regnet_x_400mf",
    "efficientnet_b0",  # StochasticDepth becomes netspec's StochasticDepth (same random draws)
    "swin_t",  # ShiftedWindowAttention becomes netspec's (same computation), _patch_merging_pad patch_merging_pad
]
MAX_PARAMS = 150_000_000


def classifiers() -> list[str]:
    return list(torchvision.models.list_models(module=torchvision.models))


def input_shape(name: str) -> tuple[int, int, int]:
    return (3, 299, 299) if name == "inception_v3" else (3, 224, 224)


def check(name: str) -> Outcome:
    torch.set_num_threads(1)
    return round_trip(name, lambda: torchvision.models.get_model(name, weights=None), input_shape(name))


@pytest.mark.parametrize("name", FAST_EXACT)
def test_fast_set_round_trips_exactly(name: str) -> None:
    outcome = check(name)
    assert outcome.status == "exact", outcome


# timm families whose smallest variant must round-trip: a ResNet, ConvNeXt, MLP-Mixer, and RegNet, whose
# BatchNormAct2d (F.batch_norm plus an int64 num_batches_tracked counted in training) is written with a
# `num_batches_tracked.add_(1) if training else None` statement; the harness compares the counter too.
# fasternet_t0: each Partial_conv3 picks its forward in __init__ (self.forward = self.forward_split_cat).
TIMM_EXACT = ["resnet18", "convnext_atto", "mixer_s16_224", "regnetx_002", "fasternet_t0"]


def check_timm(name: str) -> Outcome:
    torch.set_num_threads(1)
    return round_trip(name, make_timm(name), timm_input_shape(name))


@pytest.mark.parametrize("name", TIMM_EXACT)
def test_timm_fast_set_round_trips_exactly(name: str) -> None:
    outcome = check_timm(name)
    assert outcome.status == "exact", outcome


def test_timm_family_table_matches_the_installed_timm() -> None:
    """tests/data/timm_families.json names one model of each timm module (rebuilt by bench/zoo.py --refresh-timm)."""
    timm = import_timm()
    families = timm_families()
    assert set(families) == {m for m in timm.list_modules() if timm.list_models(module=m)}
    for family, name in families.items():
        assert name in timm.list_models(module=family), (family, name)


class _Constant(nn.Module):
    """fx stores the tensor made in forward as a ``_tensor_constant0`` attribute of the module it traces."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("scale", torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * torch.tensor(2.0) + self.scale * 2


class _Cache(nn.Module):
    """LeViT-style: eval mode caches a tensor computed from a parameter in a dict attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.cache: dict[str, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.fc(x) + self.fc.bias
        if "bias" not in self.cache:
            self.cache["bias"] = self.fc.bias * 1
        return self.fc(x) + self.cache["bias"]


def _timm(name: str) -> nn.Module:
    return make_timm(name)()


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: import_torchvision().models.get_model("squeezenet1_1", weights=None), (3, 64, 64)),
        (lambda: _timm("regnetx_002"), (3, 64, 64)),  # BatchNormAct2d: in-place num_batches_tracked.add_(1)
        (_Constant, (4,)),
        (_Cache, (4,)),
    ],
    ids=["torchvision-squeezenet1_1", "timm-regnetx_002", "tensor-made-in-forward", "eval-cache"],
)
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_emit_leaves_the_model_exactly_as_it_was(make: object, shape: tuple[int, ...], mode: str) -> None:
    torch.manual_seed(0)
    model = getattr(make(), mode)()  # type: ignore[operator]
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    probe = copy.deepcopy(model).eval()
    with torch.no_grad():
        want = probe(x)
    before = model_state(model)
    counters = {k: int(v) for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    with contextlib.suppress(netspec.EmitError):  # refused or not, the model must be untouched
        netspec.emit(model, input_shape=shape)
    assert state_change(before, model_state(model)) is None
    assert {k: int(v) for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")} == counters
    assert not [n for m in model.modules() for n in vars(m) if n.startswith("_tensor_constant")]
    assert getattr(model, "cache", {}) == {}  # nothing the traced forward stored reached the model
    with torch.no_grad():
        torch.testing.assert_close(copy.deepcopy(model).eval()(x), want, rtol=0, atol=0)


def test_googlenet_auxiliary_outputs_follow_the_mode() -> None:
    """Training mode returns (logits, aux2, aux1), eval mode the logits: both exact (round_trip checks
    eval and train outputs), and the rebuilt model's training output is the 3-tuple."""
    outcome = check("googlenet")
    assert outcome.status == "exact", outcome


HF_CASES = {case.name: case for case in hf_cases()}
# Hugging Face models whose round trip must be exact (guarded tracing follows their shape and dtype checks;
# each emits in about 1-5 s). The causal LMs (GPT-2, Llama, Mistral, Qwen2) are built with use_cache=False
# and build their causal mask through masking_utils (emit's hf_masks broadcasts it instead of torch.vmap).
HF_EXACT = ["bert", "roberta", "distilbert", "gpt2", "llama", "mistral", "qwen2", "t5-encoder", "vit"]


def test_every_hugging_face_case_must_round_trip_exactly() -> None:
    assert sorted(HF_CASES) == sorted(HF_EXACT)


@pytest.mark.parametrize("name", HF_EXACT)
def test_hugging_face_fast_set_round_trips_exactly(name: str) -> None:
    outcome = hf_round_trip(HF_CASES[name])
    assert outcome.status == "exact", outcome


def test_a_refusal_names_the_module_path_its_class_and_the_reason() -> None:
    """GPT-2 with its default use_cache=True passes a DynamicCache to every block: refused, naming the model,
    the cache, the library's line the trace stopped at and the fix (emit does not change the config)."""
    import transformers as tf

    gpt2 = HF_CASES["gpt2"]
    config = tf.GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=64, vocab_size=VOCAB)
    assert config.use_cache
    model = tf.GPT2Model(config)
    outcome = round_trip("gpt2-cache", lambda: model, gpt2.input_shape, vocab=gpt2.vocab, inputs=gpt2.inputs)
    assert outcome.status == "refused", outcome
    assert outcome.detail.startswith("the model (GPT2Model): forward cannot be traced: "), outcome.detail
    assert "DynamicCache" in outcome.detail and "KV cache object" in outcome.detail, outcome.detail
    assert "(at transformers/" in outcome.detail, outcome.detail
    with pytest.raises(netspec.EmitError, match="built with use_cache=False"):
        netspec.emit(model, input_shape=gpt2.input_shape, inputs=gpt2.inputs, input_dtype="int64")
    assert model.config.use_cache  # emit left the config as it was


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The full zoos only with --zoo: one parameter per classifier / timm family outside the fast sets."""
    full = metafunc.config.getoption("--zoo")
    opt_in = [pytest.param("", marks=pytest.mark.skip(reason="the full zoo runs with pytest --zoo"))]
    if metafunc.function.__name__ == "test_every_torchvision_classifier":
        names = [n for n in classifiers() if n not in FAST_EXACT] if full else opt_in
        metafunc.parametrize("name", names)
    if metafunc.function.__name__ == "test_every_timm_family":
        models = [n for n in timm_families().values() if n not in TIMM_EXACT] if full else opt_in
        metafunc.parametrize("name", models)


def test_every_torchvision_classifier(name: str) -> None:
    params = sum(p.numel() for p in torchvision.models.get_model(name, weights=None).parameters())
    if params > MAX_PARAMS:
        pytest.skip(f"{params:,} parameters: over the zoo's {MAX_PARAMS:,} limit")
    outcome = check(name)
    assert outcome.status in ("exact", "refused"), outcome


def test_every_timm_family(name: str) -> None:
    outcome = check_timm(name)
    assert outcome.status in ("exact", "refused"), outcome
