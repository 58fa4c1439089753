"""Emit round trips over torchvision's classifiers: pass rate and emit time (median, p90).

Run: python bench/zoo.py [--max-params 150000000]   (one thread; takes a while on 2 cores)
Prints one line per model (exact / refused with emit's reason / FAILED) and the totals that
docs/emit.md records.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import import_torchvision, round_trip


def _params(tv: object, name: str) -> int:
    """Parameter count, on meta where the model's init allows it (some copy data while initialising)."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in tv.models.get_model(name, weights=None).parameters())
    except NotImplementedError:
        return sum(p.numel() for p in tv.models.get_model(name, weights=None).parameters())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-params", type=int, default=150_000_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tv = import_torchvision()
    outcomes = []
    for name in tv.models.list_models(module=tv.models):
        params = _params(tv, name)
        if params > args.max_params:
            continue
        shape = (3, 299, 299) if name == "inception_v3" else (3, 224, 224)
        outcome = round_trip(name, lambda name=name: tv.models.get_model(name, weights=None), shape)
        outcomes.append(outcome)
        print(f"{outcome.status:8} {name:24} {outcome.detail}", flush=True)
    exact = [o for o in outcomes if o.status == "exact"]
    times = sorted(o.emit_seconds for o in exact if o.emit_seconds is not None)
    failed = [o for o in outcomes if o.status == "FAILED"]
    print(
        f"torchvision {tv.__version__}: {len(exact)}/{len(outcomes)} exact, "
        f"{len(outcomes) - len(exact) - len(failed)} refused with a reason, {len(failed)} failed"
    )
    if times:
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"emit time of the exact ones: median {statistics.median(times):.2f} s, p90 {p90:.2f} s")


if __name__ == "__main__":
    main()
