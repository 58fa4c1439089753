"""The one timer every benchmark uses: interleaved samples, medians.

``median_times({"hand": g, "netspec": f}, repeats=9)`` warms every function up, then takes
up to ``repeats`` rounds; in each round every function runs ``number`` times back to back
(one sample), in alternating order (``g f``, then ``f g``, ...) so that slow drifts of the
machine (other processes, thermal state, allocator growth) hit both sides alike. By default
the garbage collector is run before each sample and left on during it: a user's build pays
for its own garbage (``disable_gc`` shows how much of a figure is the cyclic GC).

It returns, per function, the median seconds per call and, against the first function, the
median and quartiles over rounds of the ratio of the two samples taken in the same round
(paired ratios): on a shared, noisy machine a ratio of neighbouring samples is much steadier
than a ratio of two medians, and the quartiles say how far a ratio can be trusted.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class Timing:
    """Median seconds per call for each name, and paired ratios against the first name (median, quartiles)."""

    seconds: dict[str, float]
    ratios: dict[str, float]
    quartiles: dict[str, tuple[float, float]]
    samples: dict[str, list[float]]
    number: int


def median_times(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    number: int | None = None,
    min_sample_s: float = 0.0,
    max_seconds: float | None = None,
    collect: bool = True,
    disable_gc: bool = False,
) -> Timing:
    """Time each function ``repeats`` times, interleaved; see the module docstring.

    ``number`` calls make one sample; when it is None it is chosen after the warm-up so that
    one sample of the slowest function lasts at least ``min_sample_s`` (1 when that is 0).
    ``max_seconds`` ends the rounds early (after at least 5) once they have taken that long.
    ``collect`` runs ``gc.collect()`` before each sample; ``disable_gc`` keeps the GC off during it.
    """
    names = list(fns)
    per_call = dict.fromkeys(names, 0.0)
    for _ in range(max(warmup, 1 if number is None else 0)):
        for name in names:
            start = time.perf_counter()
            fns[name]()
            per_call[name] = time.perf_counter() - start
    if number is None:
        slowest = max(per_call.values()) or 1e-9
        number = max(1, round(min_sample_s / slowest)) if min_sample_s else 1

    samples: dict[str, list[float]] = {name: [] for name in names}
    began = time.perf_counter()
    for r in range(repeats):
        if max_seconds is not None and r >= 5 and time.perf_counter() - began > max_seconds:
            break
        for name in names if r % 2 == 0 else reversed(names):
            fn = fns[name]
            if collect:
                gc.collect()
            if disable_gc:
                gc.disable()
            try:
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                samples[name].append((time.perf_counter() - start) / number)
            finally:
                gc.enable()

    seconds = {name: statistics.median(s) for name, s in samples.items()}
    paired = {name: [a / b for a, b in zip(s, samples[names[0]], strict=True)] for name, s in samples.items()}
    ratios = {name: statistics.median(r) for name, r in paired.items()}
    quartiles = {name: _quartiles(r) for name, r in paired.items()}
    return Timing(seconds, ratios, quartiles, samples, number)


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q1, _, q3 = statistics.quantiles(values, n=4)
    return q1, q3
