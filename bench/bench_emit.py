"""Emit-time benchmark: ``netspec.emit`` on a 1,000-layer Sequential and on a hand-written ResNet-50.

In: nothing (models are built here, in plain PyTorch; there is no torchvision dependency).
Out: the wall time of ``emit`` for each model (median of a few runs, after one warm-up), and a
check that the emitted spec rebuilds the same state_dict. Run as ``python bench/bench_emit.py``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from handwritten import resnet50  # the torchvision-layout ResNet-50 the build benchmark uses too

from netspec import build
from netspec.emitter.walker import emit


def deep_mlp(pairs: int = 500, width: int = 64) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(pairs):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers)


def timed(fn: Callable[[], object], runs: int = 5) -> tuple[float, object]:
    result = fn()  # warm-up: the layer catalogue scan and first-call caches
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def check(model: nn.Module, spec: object) -> None:
    rebuilt = build(spec, device="meta").model  # type: ignore[arg-type]
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    if want != got:
        raise SystemExit("emitted spec does not rebuild the same state_dict")


def main() -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for label, model, shape in (
        ("Sequential of 500 Linear+ReLU pairs (1,000 layers)", deep_mlp(), (64,)),
        ("ResNet-50 (torchvision layout, hand-written)", resnet50(), (3, 224, 224)),
    ):
        seconds, spec = timed(lambda m=model, s=shape: emit(m, input_shape=s))
        check(model, spec)
        n_blocks = len(spec.document.blocks)  # type: ignore[attr-defined]
        print(
            f"{label}: emit {seconds * 1000:.0f} ms (median of 5), {n_blocks} block(s), "
            f"{len(spec.to_yaml().splitlines())} YAML lines"
        )  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
