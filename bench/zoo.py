"""Emit round trips over torchvision's classifiers and small-config Hugging Face models: pass rate per
source and emit time (median, p90).

Run: python bench/zoo.py [--max-params 150000000] [--source torchvision|hf|all]   (one thread; the
torchvision part takes a while on 2 cores)
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
from zoo import Outcome, hf_cases, hf_round_trip, import_torchvision, round_trip


def _params(tv: object, name: str) -> int:
    """Parameter count, on meta where the model's init allows it (some copy data while initialising)."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in tv.models.get_model(name, weights=None).parameters())
    except NotImplementedError:
        return sum(p.numel() for p in tv.models.get_model(name, weights=None).parameters())


def _totals(source: str, outcomes: list[Outcome]) -> None:
    exact = [o for o in outcomes if o.status == "exact"]
    times = sorted(o.emit_seconds for o in exact if o.emit_seconds is not None)
    failed = [o for o in outcomes if o.status == "FAILED"]
    print(
        f"{source}: {len(exact)}/{len(outcomes)} exact, "
        f"{len(outcomes) - len(exact) - len(failed)} refused with a reason, {len(failed)} failed"
    )
    if times:
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"  emit time of the exact ones: median {statistics.median(times):.2f} s, p90 {p90:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-params", type=int, default=150_000_000)
    parser.add_argument("--source", choices=("torchvision", "hf", "all"), default="all")
    args = parser.parse_args()
    torch.set_num_threads(1)
    tv = import_torchvision()
    if args.source in ("torchvision", "all"):
        outcomes = []
        for name in tv.models.list_models(module=tv.models):
            params = _params(tv, name)
            if params > args.max_params:
                continue
            shape = (3, 299, 299) if name == "inception_v3" else (3, 224, 224)
            outcome = round_trip(name, lambda name=name: tv.models.get_model(name, weights=None), shape)
            outcomes.append(outcome)
            print(f"{outcome.status:8} {name:24} {outcome.detail}", flush=True)
        _totals(f"torchvision {tv.__version__}", outcomes)
    if args.source in ("hf", "all"):
        import transformers

        hf = []
        for case in hf_cases():
            outcome = hf_round_trip(case)
            hf.append(outcome)
            print(f"{outcome.status:8} {case.name:24} {outcome.detail}", flush=True)
        _totals(f"transformers {transformers.__version__}", hf)


if __name__ == "__main__":
    main()
