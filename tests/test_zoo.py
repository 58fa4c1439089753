"""Emit of real model zoos: every torchvision classifier either round-trips exactly or emit says precisely
why not (module path, class, reason); so does each Hugging Face model built from a small config. The default
run covers a fast set whose round trip must be exact; ``pytest --zoo tests/test_zoo.py`` runs every
classifier up to 150M parameters (bench/zoo.py prints the pass rates and emit times recorded in
docs/emit.md)."""

from __future__ import annotations

import pytest
import torch
from zoo import HFCase, Outcome, hf_cases, hf_round_trip, import_torchvision, round_trip

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


# timm families whose smallest variant round-trips today (timm's BatchNormAct2d, which most families use,
# is refused with its reason: see docs/emit.md).
TIMM_EXACT = ["resnet18", "convnext_atto", "mixer_s16_224"]


@pytest.mark.parametrize("name", TIMM_EXACT)
def test_timm_fast_set_round_trips_exactly(name: str) -> None:
    import timm

    torch.set_num_threads(1)
    shape = tuple(timm.create_model(name, pretrained=False).pretrained_cfg["input_size"])
    outcome = round_trip(name, lambda: timm.create_model(name, pretrained=False), shape)
    assert outcome.status == "exact", outcome


def test_timm_batchnormact_is_refused_with_its_path_and_class() -> None:
    import timm

    outcome = round_trip("regnetx_002", lambda: timm.create_model("regnetx_002", pretrained=False), (3, 224, 224))
    assert outcome.status == "refused", outcome
    assert outcome.detail.startswith("stem.bn"), outcome.detail
    assert "(BatchNormAct2d" in outcome.detail, outcome.detail


def test_googlenet_auxiliary_outputs_follow_the_mode() -> None:
    """Training mode returns (logits, aux2, aux1), eval mode the logits: both exact (round_trip checks
    eval and train outputs), and the rebuilt model's training output is the 3-tuple."""
    outcome = check("googlenet")
    assert outcome.status == "exact", outcome


HF_CASES = {case.name: case for case in hf_cases()}


@pytest.mark.parametrize("case", HF_CASES.values(), ids=HF_CASES)
def test_hugging_face_model_round_trips_or_is_refused_precisely(case: HFCase) -> None:
    """Small-config models (no download): the round trip is exact, or emit names the module path, its class
    and the reason; a refusal while tracing also names the library's line the trace stopped at."""
    outcome = hf_round_trip(case)
    assert outcome.status in ("exact", "refused"), outcome
    if outcome.status == "refused" and "cannot be traced" in outcome.detail:
        assert " (at transformers/" in outcome.detail, outcome.detail


def test_a_refusal_names_the_module_path_its_class_and_the_reason() -> None:
    outcome = hf_round_trip(HF_CASES["bert"])
    assert outcome.status == "refused", outcome
    assert outcome.detail.startswith("the model (BertModel): forward cannot be traced: "), outcome.detail
    assert "(at transformers/models/bert/modeling_bert.py:" in outcome.detail, outcome.detail


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The full zoo only with --zoo: one parameter per classifier outside the fast set."""
    if metafunc.function.__name__ == "test_every_torchvision_classifier":
        names = [n for n in classifiers() if n not in FAST_EXACT] if metafunc.config.getoption("--zoo") else []
        metafunc.parametrize("name", names)


def test_every_torchvision_classifier(name: str) -> None:
    params = sum(p.numel() for p in torchvision.models.get_model(name, weights=None).parameters())
    if params > MAX_PARAMS:
        pytest.skip(f"{params:,} parameters: over the zoo's {MAX_PARAMS:,} limit")
    outcome = check(name)
    assert outcome.status in ("exact", "refused"), outcome
