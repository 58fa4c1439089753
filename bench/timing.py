"""The one timer every benchmark uses: interleaved samples, medians.

``median_times({"netspec": f, "hand": g}, repeats=9)`` warms every function up, then takes
``repeats`` rounds; in each round every function runs ``number`` times back to back (one
sample), in alternating order (``f g``, then ``g f``, ...) so slow drifts of the machine
(other processes, thermal state, allocator growth) hit both sides alike. The garbage
collector is run before each sample, not disabled: a user's build pays for its own garbage.

It returns, per function, the median seconds per call, and, for two or more functions, the
median over rounds of each function's time divided by the first function's time in the same
round (``paired`` ratios): on a shared, noisy machine a ratio of neighbouring samples is much
steadier than a ratio of two medians taken minutes apart.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass
class Timing:
    """Median seconds per call for each name, and paired ratios against the first name."""

    seconds: dict[str, float]
    ratios: dict[str, float]
    samples: dict[str, list[float]]
    number: int


def median_times(
    fns: Mapping[str, Callable[[], object]],
    *,
    repeats: int,
    warmup: int = 1,
    number: int | None = None,
    min_sample_s: float = 0.0,
) -> Timing:
    """Time each function ``repeats`` times, interleaved; see the module docstring.

    ``number`` calls make one sample; when it is None it is chosen after the warm-up so that
    one sample of the slowest function lasts at least ``min_sample_s`` (1 when that is 0).
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
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            fn = fns[name]
            gc.collect()
            start = time.perf_counter()
            for _ in range(number):
                fn()
            samples[name].append((time.perf_counter() - start) / number)

    seconds = {name: statistics.median(s) for name, s in samples.items()}
    base = samples[names[0]]
    ratios = {name: statistics.median(a / b for a, b in zip(s, base, strict=True)) for name, s in samples.items()}
    return Timing(seconds, ratios, samples, number)
