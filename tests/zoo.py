"""The model-zoo round trip shared by tests/test_zoo.py and bench/zoo.py.

For one model: emit it, rebuild the spec, and either the round trip is exact — state_dict keys in
order with their shapes, a strict load, eval outputs equal, and one train-mode forward equal under
the same seed — or ``emit`` raised an ``EmitError`` that names the module path, its class and the
reason. Anything else (a spec that builds but differs, another exception) is a failure.
"""

from __future__ import annotations

import copy
import re
import sys
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass
class Outcome:
    name: str
    status: str  # "exact" | "refused" | "FAILED"
    detail: str
    emit_seconds: float | None = None


def round_trip(name: str, make: Callable[[], nn.Module], input_shape: tuple[int, ...]) -> Outcome:
    torch.manual_seed(0)
    model = make().eval()
    before = copy.deepcopy(model.state_dict())
    start = time.perf_counter()
    try:
        spec = netspec.emit(model, input_shape=input_shape)
    except netspec.EmitError as err:
        message = str(err)
        ok = REFUSAL.match(message) is not None
        return Outcome(name, "refused" if ok else "FAILED", message.splitlines()[0][:300])
    seconds = time.perf_counter() - start
    # emit must leave the model exactly as it was
    after = model.state_dict()
    if list(after) != list(before) or any(not torch.equal(after[k], before[k]) for k in before):
        return Outcome(name, "FAILED", "emit changed the model's state", seconds)
    rebuilt = netspec.build(spec).model
    want = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in rebuilt.state_dict().items()]
    if want != got:
        first = next((a, b) for a, b in zip(want + [None] * len(got), got + [None] * len(want), strict=False) if a != b)
        return Outcome(name, "FAILED", f"state_dict differs at {first}", seconds)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(1, *input_shape, generator=torch.Generator().manual_seed(1))
    # train mode with a batch of 2: BatchNorm refuses one value per channel (a 1x1 map of one sample)
    x2 = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x))
        train_model, train_rebuilt = copy.deepcopy(model).train(), copy.deepcopy(rebuilt).train()
        torch.manual_seed(2)
        want_out = train_model(x2)
        torch.manual_seed(2)
        got_out = train_rebuilt(x2)
        torch.testing.assert_close(got_out, want_out)
    return Outcome(name, "exact", "", seconds)
