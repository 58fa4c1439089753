"""Emit round trips over real model zoos: pass rate per source, the refusals grouped by reason, and emit
time (median, p90) of the exact ones.

Run: python bench/zoo.py [--source torchvision|timm|hf|all] [--max-params 150000000] [--only A,B]
     python bench/zoo.py --refresh-timm   # rewrite tests/data/timm_families.json from the installed timm
One thread; takes a while on 2 cores. Prints one line per model (exact / refused with emit's reason /
FAILED), then per source the totals and the grouped reasons that docs/emit.md records.

torchvision: every classifier up to --max-params. timm: the smallest variant (by parameter count,
``pretrained=False``) of each model module (``timm.models.resnet``, ...), at the input size of its
config. hf: Hugging Face models built from small configs (tests/zoo.py's ``hf_cases``).
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import re
import statistics
import sys
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from zoo import (
    TIMM_FAMILIES,
    Outcome,
    hf_cases,
    hf_round_trip,
    import_timm,
    import_torchvision,
    make_timm,
    round_trip,
    timm_families,
    timm_input_shape,
)

from netspec.io.atomic import atomic_write


def _params(make: object) -> int:
    """Parameter count, on meta where the model's init allows it (some copy data while initialising)."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in make().parameters())  # type: ignore[operator]
    except (NotImplementedError, RuntimeError):
        return sum(p.numel() for p in make().parameters())  # type: ignore[operator]


def refresh_timm() -> None:
    """The smallest model of each timm module, counted on meta, written to tests/data/timm_families.json."""
    timm = import_timm()
    best: dict[str, dict[str, object]] = {}
    for family in sorted(timm.list_modules()):
        for name in timm.list_models(module=family):
            try:
                count = _params(lambda name=name: timm.create_model(name, pretrained=False))
            except Exception as err:  # noqa: BLE001 - a timm model that cannot be built here is left out, and said so
                print(f"skipped  {name}: {type(err).__name__}: {str(err)[:120]}", flush=True)
                continue
            if family not in best or count < best[family]["params"]:  # type: ignore[operator]
                best[family] = {"model": name, "params": count}
        print(f"{family:28} {best.get(family)}", flush=True)
    table = {"timm": timm.__version__, "families": best}
    text = json.dumps(table, indent=1, sort_keys=True) + "\n"
    atomic_write(TIMM_FAMILIES, lambda f: f.write(text.encode()))


def reason(outcome: Outcome) -> tuple[str, str]:
    """A refusal's class and its reason without the module path and positions, so that alike refusals group."""
    found = re.match(r"^(the model|[\w.]+) \(([\w.]+)\): (.*)$", outcome.detail)
    if found is None:
        return "", outcome.detail
    return found.group(2), re.sub(r"\b\d+\b", "N", found.group(3))[:150]


def report(source: str, outcomes: list[Outcome]) -> None:
    exact = [o for o in outcomes if o.status == "exact"]
    refused = [o for o in outcomes if o.status == "refused"]
    failed = [o for o in outcomes if o.status == "FAILED"]
    print(
        f"\n{source}: {len(exact)}/{len(outcomes)} exact, {len(refused)} refused with a reason, "
        f"{len(failed)} wrong or failed"
    )
    for what, chosen in (("exact", exact), ("refused", refused)):
        times = sorted(o.emit_seconds for o in chosen if o.emit_seconds is not None)
        if times:
            p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
            print(f"emit time of the {what} ones: median {statistics.median(times):.2f} s, p90 {p90:.2f} s")
    groups = collections.defaultdict(list)
    for o in refused:
        cls, text = reason(o)
        groups[text].append(f"{o.name} ({cls})")
    for text, names in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        print(f"  {len(names):3} refused: {text}\n        {', '.join(names)}")
    for o in failed:
        print(f"  FAILED {o.name}: {o.detail}")


def run_one(name: str, make: object, shape: tuple[int, ...]) -> Outcome:
    try:
        outcome = round_trip(name, make, shape)  # type: ignore[arg-type]
    except Exception as err:  # noqa: BLE001 - a crash in emit or build is this model's failure, not the run's end
        outcome = Outcome(name, "FAILED", f"{type(err).__name__}: {' '.join(str(err).split())[:300]}")
    print(f"{outcome.status:8} {name:32} {outcome.detail}", flush=True)
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--source", choices=["torchvision", "timm", "hf", "all"], default="all")
    parser.add_argument("--max-params", type=int, default=150_000_000)
    parser.add_argument("--refresh-timm", action="store_true")
    parser.add_argument(
        "--only", default="", help="comma-separated model or timm family names: run just those (while fixing one)"
    )
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    if args.refresh_timm:
        refresh_timm()
        return
    only = {name for name in args.only.split(",") if name}

    def wanted(*names: str) -> bool:
        return not only or any(name in only for name in names)

    print(f"{datetime.date.today()}, torch {torch.__version__}")
    if args.source in ("torchvision", "all"):
        tv = import_torchvision()
        outcomes = []
        for name in tv.models.list_models(module=tv.models):
            if not wanted(name):
                continue

            def make(name: str = name) -> torch.nn.Module:
                return tv.models.get_model(name, weights=None)

            if _params(make) > args.max_params:
                continue
            shape = (3, 299, 299) if name == "inception_v3" else (3, 224, 224)
            outcomes.append(run_one(name, make, shape))
        report(f"torchvision {tv.__version__}", outcomes)
    if args.source in ("timm", "all"):
        timm = import_timm()
        outcomes = [
            run_one(f"{family}/{name}", make_timm(name), timm_input_shape(name))
            for family, name in timm_families().items()
            if wanted(family, name)
        ]
        report(f"timm {timm.__version__} (smallest model of each of {len(outcomes)} families)", outcomes)
    if args.source in ("hf", "all"):
        import transformers

        hf = []
        for case in hf_cases():
            if not wanted(case.name):
                continue
            outcome = hf_round_trip(case)
            hf.append(outcome)
            print(f"{outcome.status:8} {case.name:32} {outcome.detail}", flush=True)
        report(f"transformers {transformers.__version__}", hf)


if __name__ == "__main__":
    main()
