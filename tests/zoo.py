"""The model-zoo round trip shared by tests/test_zoo.py and bench/zoo.py.

For one model: emit it, rebuild the spec, and either the round trip is exact — state_dict keys in
order with their shapes and dtypes, the same parameters shared, a strict load, eval outputs equal, and
one train-mode forward equal under the same seed, leaving the same state (running statistics,
counters) — or ``emit`` raised an ``EmitError`` that names the module path, its class and the reason.
Anything else (a spec that builds but differs, another exception, emit changing the model it read) is
a failure.

The zoos: torchvision's classifiers; timm's families — each timm model module (``timm.models.resnet``,
``timm.models.vision_transformer``, ...) with its smallest variant by parameter count, from
``tests/data/timm_families.json`` (``python bench/zoo.py --refresh-timm`` rebuilds that table from the
installed timm; counting every model takes a while); Hugging Face models built from small configs.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import netspec

# "features.1.0.attn (ShiftedWindowAttention): reason" or "the model (GoogLeNet): reason"
REFUSAL = re.compile(r"^(the model|[\w.]+) \(([\w.]+)\): \S")


def import_torchvision() -> types.ModuleType:
    """torchvision, imported with the CPU torch: the registry's wheel is built against CUDA torch, so its
    C ops (nms, roi_align, ...) fail to register their meta kernels at import; classification models
    never call them, so an empty stand-in for that one module lets the rest import."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision


TIMM_FAMILIES = Path(__file__).resolve().parent / "data" / "timm_families.json"


def import_timm() -> types.ModuleType:
    """timm (which imports torchvision: see ``import_torchvision``)."""
    import_torchvision()
    import timm

    return timm


def timm_families() -> dict[str, str]:
    """timm model module -> its smallest model (by parameter count), as recorded for the installed timm."""
    return {family: row["model"] for family, row in json.loads(TIMM_FAMILIES.read_text())["families"].items()}


def timm_input_shape(name: str) -> tuple[int, ...]:
    """The input size timm's config gives the model (its pretrained resolution; no weights are loaded)."""
    timm = import_timm()
    return tuple(timm.models.get_pretrained_cfg(name).to_dict()["input_size"])


def make_timm(name: str) -> Callable[[], nn.Module]:
    timm = import_timm()
    return lambda: timm.create_model(name, pretrained=False)


def _attributes(module: nn.Module) -> list[tuple[str, str]]:
    """A module's attribute names, with the keys or length of each container attribute (a cache filled)."""
    out = []
    for name, value in sorted(vars(module).items()):
        if name in ("_parameters", "_buffers", "_modules"):
            out.append((name, repr(list(value))))
        elif isinstance(value, dict):
            out.append((name, repr(sorted(map(str, value)))))
        elif isinstance(value, (list, set)):
            out.append((name, f"{len(value)} items"))
        else:
            out.append((name, ""))
    return out


def model_state(model: nn.Module) -> dict[str, Any]:
    """What emit must leave exactly as it was: tensors (values, dtypes), attribute names, modes."""
    return {
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "buffers": [(k, v.dtype, tuple(v.shape)) for k, v in model.named_buffers()],
        "attributes": {name: _attributes(m) for name, m in model.named_modules()},
        "modes": {name: m.training for name, m in model.named_modules()},
    }


def state_change(before: dict[str, Any], after: dict[str, Any]) -> str | None:
    """How ``after`` differs from ``before`` (``model_state``), or None."""
    for part in ("buffers", "attributes", "modes"):
        if before[part] != after[part]:
            if isinstance(before[part], dict):
                key = next(k for k in {**before[part], **after[part]} if before[part].get(k) != after[part].get(k))
                return f"{part} of {key or 'the model'!r}: {before[part].get(key)} -> {after[part].get(key)}"
            return f"{part}: {before[part]} -> {after[part]}"
    b, a = before["state"], after["state"]
    if list(a) != list(b):
        return f"state_dict keys: {list(b)} -> {list(a)}"
    for k in b:
        if a[k].dtype != b[k].dtype or not torch.equal(a[k], b[k]):
            return f"state_dict value {k!r}"
    return None


@dataclass
class Outcome:
    name: str
    status: str  # "exact" | "refused" | "FAILED"
    detail: str
    emit_seconds: float | None = None


def _example(batch: int, shape: tuple[int, ...], vocab: int, seed: int) -> torch.Tensor:
    """A random input: normal floats, or token ids below ``vocab`` when it is set."""
    generator = torch.Generator().manual_seed(seed)
    if vocab:
        return torch.randint(0, vocab, (batch, *shape), generator=generator)
    return torch.randn(batch, *shape, generator=generator)


def _pick(out: object, field: str | None) -> object:
    """The compared part of an output: a Hugging Face ``ModelOutput`` (a mapping) by its field name."""
    if field is not None and isinstance(out, Mapping):
        return out[field]
    return out


def round_trip(
    name: str,
    make: Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    *,
    vocab: int = 0,
    inputs: Sequence[str] | None = None,
    output: str | None = None,
) -> Outcome:
    """``vocab``: the input is token ids below it (int64); ``inputs``: the forward arguments the spec takes
    (emit's ``inputs=``, for forwards whose every argument has a default); ``output``: the field of a
    mapping output (a Hugging Face ``ModelOutput``) that is compared."""
    torch.manual_seed(0)
    model = make().eval()
    before = model_state(model)
    start = time.perf_counter()
    try:
        spec = netspec.emit(model, input_shape=input_shape, inputs=inputs, input_dtype="int64" if vocab else None)
    except netspec.EmitError as err:
        message = str(err)
        ok = REFUSAL.match(message) is not None
        seconds = time.perf_counter() - start
        change = state_change(before, model_state(model))
        if change is not None:
            return Outcome(name, "FAILED", f"emit (refusing) changed the model: {change}", seconds)
        return Outcome(name, "refused" if ok else "FAILED", message.splitlines()[0][:300], seconds)
    seconds = time.perf_counter() - start
    change = state_change(before, model_state(model))
    if change is not None:  # emit must leave the model exactly as it was
        return Outcome(name, "FAILED", f"emit changed the model: {change}", seconds)
    try:
        detail = compare(model, netspec.build(spec).model, input_shape, vocab, output)
    except (AssertionError, RuntimeError) as err:  # assert_close's mismatch, or the rebuilt forward failing
        detail = f"{type(err).__name__}: {' '.join(str(err).split())[:300]}"
    if detail is not None:
        return Outcome(name, "FAILED", detail, seconds)
    return Outcome(name, "exact", "", seconds)


def _entries(model: nn.Module) -> list[tuple[str, tuple[int, ...], torch.dtype]]:
    return [(k, tuple(v.shape), v.dtype) for k, v in model.state_dict().items()]


def _shared(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that are one tensor (tied weights, a submodule used at two places)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return sorted(g for g in groups.values() if len(g) > 1)


def compare(
    model: nn.Module, rebuilt: nn.Module, input_shape: tuple[int, ...], vocab: int = 0, output: str | None = None
) -> str | None:
    """None when ``rebuilt`` is ``model`` again: state_dict keys in order with shapes and dtypes, the same
    parameters shared, a strict load, eval outputs, one seeded train-mode forward and the state it leaves
    (running statistics, counters); else what differs."""
    want, got = _entries(model), _entries(rebuilt)
    if want != got:
        first = next((a, b) for a, b in zip(want + [None] * len(got), got + [None] * len(want), strict=False) if a != b)
        return f"state_dict differs at {first}"
    if _shared(model) != _shared(rebuilt):
        return f"parameters shared differently: {_shared(model)[:3]} ... vs {_shared(rebuilt)[:3]} ..."
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = _example(1, input_shape, vocab, 1)
    # train mode with a batch of 2: BatchNorm refuses one value per channel (a 1x1 map of one sample)
    x2 = _example(2, input_shape, vocab, 3)
    with torch.no_grad():
        torch.testing.assert_close(_pick(rebuilt.eval()(x), output), _pick(model(x), output))
        train_model, train_rebuilt = copy.deepcopy(model).train(), copy.deepcopy(rebuilt).train()
        torch.manual_seed(2)
        want_out = _pick(train_model(x2), output)
        torch.manual_seed(2)
        got_out = _pick(train_rebuilt(x2), output)
        torch.testing.assert_close(got_out, want_out)
    after_want, after_got = train_model.state_dict(), train_rebuilt.state_dict()
    for k, v in after_want.items():
        same = v.dtype == after_got[k].dtype and (
            torch.allclose(v, after_got[k], rtol=1.3e-6, atol=1e-5)
            if v.is_floating_point()
            else torch.equal(v, after_got[k])
        )
        if not same:
            return f"after one train-mode forward, {k!r} differs (running statistics or a counter not updated alike)"
    return None


@dataclass(frozen=True)
class HFCase:
    """A Hugging Face model built from a small config (no download), with the input its forward takes."""

    name: str
    make: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    vocab: int  # token ids below it; 0: a float input (ViT's pixel_values)
    inputs: tuple[str, ...]
    output: str = "last_hidden_state"


# The configs' sizes (the issue's): two layers, hidden 64, four heads of 16, an odd intermediate size (67) so
# that no two dimensions coincide; a 99-token vocabulary; sequences of 7 tokens; ViT on 32x32 images in 8x8 patches.
VOCAB, SEQUENCE = 99, 7


def hf_cases() -> list[HFCase]:
    """The Hugging Face models of the zoo (transformers imported here, not at collection; it imports
    torchvision, hence the stand-in first)."""
    import_torchvision()
    import transformers as tf

    small = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 67}
    text = {"vocab_size": VOCAB}
    ids = ((SEQUENCE,), VOCAB, ("input_ids",))

    def case(name: str, make: Callable[[], nn.Module], shape: tuple[int, ...], vocab: int, inputs: tuple[str, ...]):
        return HFCase(name, make, shape, vocab, inputs)

    # Causal LMs with use_cache=False, as built for training: with a KV cache their forward passes a DynamicCache
    # object to every layer, which emit refuses (a Graph passes tensors; emit never changes the config itself).
    decoder = {**small, **text, "num_key_value_heads": 2, "max_position_embeddings": 64, "use_cache": False}
    gpt2 = {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 64, "use_cache": False, **text}
    return [
        case("bert", lambda: tf.BertModel(tf.BertConfig(**small, **text)), *ids),
        case("roberta", lambda: tf.RobertaModel(tf.RobertaConfig(**small, **text)), *ids),
        case(
            "distilbert",
            lambda: tf.DistilBertModel(tf.DistilBertConfig(dim=64, n_layers=2, n_heads=4, hidden_dim=67, **text)),
            *ids,
        ),
        case("gpt2", lambda: tf.GPT2Model(tf.GPT2Config(**gpt2)), *ids),
        case("llama", lambda: tf.LlamaModel(tf.LlamaConfig(**decoder)), *ids),
        case("mistral", lambda: tf.MistralModel(tf.MistralConfig(**decoder)), *ids),
        case("qwen2", lambda: tf.Qwen2Model(tf.Qwen2Config(**decoder)), *ids),
        case(
            "t5-encoder",
            lambda: tf.T5EncoderModel(tf.T5Config(d_model=64, num_layers=2, num_heads=4, d_ff=67, d_kv=16, **text)),
            *ids,
        ),
        case(
            "vit",
            lambda: tf.ViTModel(tf.ViTConfig(**small, image_size=32, patch_size=8)),
            (3, 32, 32),
            0,
            ("pixel_values",),
        ),
    ]


def hf_round_trip(case: HFCase) -> Outcome:
    torch.set_num_threads(1)
    return round_trip(case.name, case.make, case.input_shape, vocab=case.vocab, inputs=case.inputs, output=case.output)
