"""netspec benchmarks against hand-written PyTorch, measured side by side in one run.

    python bench/run.py            # full run (a few minutes on 2 cores)
    python bench/run.py --quick    # smoke mode: fewer repeats, smaller batch-32 images

Sections: (1) build time of VGG-11-bn and ResNet-50, (2) validate/build time of generated
1,000- and 10,000-layer specs, (3) CPU forward time of ResNet-18, a 100-layer MLP Graph and
the GPT spec, (4) ``bench/bench_emit.py`` when it exists. Every figure is a median of
interleaved samples (``timing.median_times``) and every ratio is netspec / hand-written,
paired round by round. Each section prints a table with a PASS/FAIL column; ``--strict``
makes any FAIL or ERROR the exit status (1), otherwise the run always exits 0.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SPECS = ROOT / "specs"
sys.path.insert(0, str(BENCH))  # `python bench/run.py` from anywhere: gen, handwritten, timing sit beside this file

import gen  # noqa: E402
import handwritten as hw  # noqa: E402
from timing import Timing, median_times  # noqa: E402

import netspec  # noqa: E402

SEED = 0
BUILD_TARGET = 1.15
FORWARD_TARGET = 1.03
FORWARD_SAMPLE_S = 0.01  # short samples, many rounds: neighbours see the same load on a shared machine
VALIDATE_10K_TARGET_S = 1.0
GROWTH_TARGET = 12.5  # 10k/1k time; linear is 10x


@dataclass
class Settings:
    quick: bool
    threads: int
    build_repeats: int
    build_max_s: float
    cold_repeats: int
    scale_repeats_1k: int
    scale_repeats_10k: int
    forward_repeats: int
    forward_max_s: float
    resnet_b32_side: int

    @classmethod
    def make(cls, quick: bool, threads: int) -> Settings:
        if quick:
            return cls(
                quick, threads, build_repeats=5, build_max_s=2, cold_repeats=1, scale_repeats_1k=3,
                scale_repeats_10k=3, forward_repeats=31, forward_max_s=1.5, resnet_b32_side=64,
            )  # fmt: skip
        return cls(
            quick, threads, build_repeats=41, build_max_s=10, cold_repeats=3, scale_repeats_1k=5,
            scale_repeats_10k=3, forward_repeats=201, forward_max_s=8, resnet_b32_side=112,
        )  # fmt: skip


@dataclass
class Row:
    """One line of a table. ``ok`` is None for figures reported without a target."""

    case: str
    netspec_s: float | None = None
    hand_s: float | None = None
    ratio: float | None = None
    target: str = "-"
    ok: bool | None = None
    note: str = ""
    error: str = ""

    @property
    def verdict(self) -> str:
        if self.error:
            return "ERROR"
        return {True: "PASS", False: "FAIL", None: "info"}[self.ok]


RESULTS: list[Row] = []  # every row and check of the run, for the summary


# --------------------------------------------------------------------------------------------- printing


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds >= 1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def print_table(title: str, rows: list[Row]) -> None:
    header = ("case", "netspec", "hand-written", "ratio", "target", "result", "note")
    lines = [
        (
            r.case,
            fmt_s(r.netspec_s),
            fmt_s(r.hand_s),
            f"{r.ratio:.3f}×" if r.ratio is not None else "-",
            r.target,
            r.verdict,
            r.error or r.note,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[k]) for line in lines)) for k, h in enumerate(header)]
    right = {1, 2, 3}
    print(f"\n{title}")

    def render(cells: tuple[str, ...]) -> str:
        padded = (c.rjust(w) if k in right else c.ljust(w) for k, (c, w) in enumerate(zip(cells, widths, strict=True)))
        return "  ".join(padded).rstrip()

    print(render(header))
    print(render(tuple("-" * w for w in widths)))
    for line in lines:
        print(render(line))
    RESULTS.extend(rows)


def check(name: str, ok: bool, detail: str = "") -> bool:
    """A correctness check that guards a comparison: printed PASS/FAIL, never raised."""
    print(f"  check {name}: {'PASS' if ok else 'FAIL'}{' - ' + detail if detail else ''}")
    RESULTS.append(Row(f"check {name}", ok=ok))
    return ok


def guarded(case: str, fn: Callable[[], list[Row]]) -> list[Row]:
    """Run one case; a failure inside netspec becomes an ERROR row instead of ending the run."""
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - the harness reports any failure as a row and runs the other cases
        traceback.print_exc(limit=3)
        return [Row(case, error=f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:100])]


def ratio_row(case: str, timing: Timing, target: float | None, note: str = "") -> Row:
    """A row from the timing of ``{"hand": ..., "netspec": ...}``: paired ratio netspec / hand, its quartiles."""
    ratio = timing.ratios["netspec"]
    q1, q3 = timing.quartiles["netspec"]
    spread = f"IQR {q1:.3f}-{q3:.3f}"
    return Row(
        case,
        timing.seconds["netspec"],
        timing.seconds["hand"],
        ratio,
        f"≤{target:.2f}×" if target is not None else "-",
        (ratio <= target) if target is not None else None,
        f"{spread}; {note}" if note else spread,
    )


# --------------------------------------------------------------------------------------------- fairness checks


def seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    """The hand-written side seeds the global RNG first, as a spec with ``seed: 0`` does."""

    def make() -> nn.Module:
        torch.manual_seed(SEED)
        return factory()

    return make


def check_same_layout(name: str, spec_model: nn.Module, hand_model: nn.Module) -> bool:
    ours = {k: tuple(v.shape) for k, v in spec_model.state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in hand_model.state_dict().items()}
    if ours == theirs:
        pairs = zip(spec_model.state_dict().values(), hand_model.state_dict().values(), strict=True)
        same = all(torch.equal(a, b) for a, b in pairs)
        return check(f"{name} state_dict keys/shapes equal", True, f"{len(ours)} tensors; same seed-0 weights: {same}")
    only_spec = sorted(set(ours) - set(theirs))[:3]
    only_hand = sorted(set(theirs) - set(ours))[:3]
    shapes = [k for k in set(ours) & set(theirs) if ours[k] != theirs[k]][:3]
    detail = f"only in spec {only_spec}, only in hand {only_hand}, shapes differ {shapes}"
    return check(f"{name} state_dict keys/shapes equal", False, detail)


# --------------------------------------------------------------------------------------------- 1. build


def build_case(cfg: Settings, name: str, path: Path, factory: Callable[[], nn.Module]) -> list[Row]:
    """``netspec.build`` of a read spec and ``netspec.load`` of the file, each against the constructor."""
    spec = netspec.read(path)
    hand = seeded(factory)
    check_same_layout(name, netspec.build(spec).model, hand())
    limits = {"repeats": cfg.build_repeats, "max_seconds": cfg.build_max_s}
    build = median_times({"hand": hand, "netspec": lambda: netspec.build(spec)}, **limits)
    load = median_times({"hand": hand, "netspec": lambda: netspec.load(path)}, **limits)
    return [
        ratio_row(f"{name} build", build, BUILD_TARGET),
        ratio_row(f"{name} read+build", load, None, "read: parse+validate+infer"),
    ]


def section_build(cfg: Settings) -> None:
    print("\n== 1. Build time: netspec.build(spec) of an already read spec, and netspec.load(file) ==")
    print(
        f"   up to {cfg.build_repeats} interleaved samples (or {cfg.build_max_s:g} s) each, median; "
        "hand-written = torch.manual_seed(0) + constructor; ratio = median of paired ratios, IQR = their quartiles"
    )
    rows: list[Row] = []
    for name, file, factory in (("VGG-11-bn", "vgg11.yaml", hw.vgg11_bn), ("ResNet-50", "resnet50.yaml", hw.resnet50)):
        rows += guarded(f"{name} build", functools.partial(build_case, cfg, name, SPECS / file, factory))
    rows += guarded("ResNet-50 cold start", lambda: [cold_start(cfg)])
    print_table("build", rows)


def cold_start(cfg: Settings) -> Row:
    """A fresh ``python -c`` process: netspec.load of the file vs the hand-written constructor.

    A third process that only imports torch is timed in the same rounds and subtracted from
    both, so the row shows what a command-line user waits for beyond Python and torch.
    """
    path = SPECS / "resnet50.yaml"
    prelude = f"import sys; sys.path.insert(0, {str(BENCH)!r}); import torch; torch.set_num_threads({cfg.threads}); "
    codes = {
        "hand": prelude + "import handwritten; torch.manual_seed(0); handwritten.resnet50()",
        "netspec": prelude + f"import netspec; netspec.load({str(path)!r})",
        "torch": prelude,
    }

    def fresh(code: str) -> Callable[[], object]:
        return lambda: subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)

    timing = median_times({k: fresh(code) for k, code in codes.items()}, repeats=cfg.cold_repeats, warmup=0)
    base = timing.seconds["torch"]
    ours, theirs = timing.seconds["netspec"] - base, timing.seconds["hand"] - base
    note = f"fresh process, beyond python + import torch ({fmt_s(base)})"
    return Row("ResNet-50 load, first call", ours, theirs, ours / theirs, note=note)


# --------------------------------------------------------------------------------------------- 2. scale


def scale_case(cfg: Settings, folder: Path, layers: int, with_input: bool, validate_s: dict[str, float]) -> list[Row]:
    """validate (``netspec.read``) and validate+build (``netspec.load``) of one generated file.

    ``validate_s`` receives the validate time with the garbage collector on ("gc") and off ("no gc").
    """
    variant = "input.shape" if with_input else "no input"
    path = gen.write_yaml(gen.linear_stack_spec(layers, width=64, with_input=with_input), folder / f"{layers}.yaml")
    repeats = cfg.scale_repeats_1k if layers <= 1_000 else cfg.scale_repeats_10k
    warmup = 1 if layers <= 1_000 else 0  # the 1k run has already warmed every code path
    read = {"netspec": lambda: netspec.read(path)}
    validate_s["gc"] = t = median_times(read, repeats=repeats, warmup=warmup, number=1).seconds["netspec"]
    validate_s["no gc"] = median_times(read, repeats=repeats, warmup=0, number=1, disable_gc=True).seconds["netspec"]
    hand = seeded(lambda: hw.linear_stack(64, layers // 2))
    load = median_times({"hand": hand, "netspec": lambda: netspec.load(path)}, repeats=repeats, warmup=warmup, number=1)
    target = VALIDATE_10K_TARGET_S * layers / 10_000
    per_layer = f"{t / layers * 1e6:.0f} µs/layer (gc off: {validate_s['no gc'] / layers * 1e6:.0f})"
    validate = Row(f"validate {layers:,} ({variant})", t, target=f"≤{fmt_s(target)}", ok=t <= target, note=per_layer)
    build_note = f"{load.seconds['netspec'] / layers * 1e6:.0f} µs/layer"
    return [validate, ratio_row(f"validate+build {layers:,} ({variant})", load, None, build_note)]


def section_scale(cfg: Settings) -> None:
    print("\n== 2. Scale: Sequential of Linear(64, 64) + ReLU pairs, written to a temporary YAML file ==")
    print(
        f"   repeats: {cfg.scale_repeats_1k} (1k), {cfg.scale_repeats_10k} (10k); validate = netspec.read(file), "
        "validate+build = netspec.load(file); 'gc off' = the same validate with the cyclic GC disabled"
    )
    rows: list[Row] = []
    for with_input in (True, False):
        variant = "input.shape" if with_input else "no input"
        times: dict[int, dict[str, float]] = {1_000: {}, 10_000: {}}
        with tempfile.TemporaryDirectory() as tmp:
            for layers in times:
                case = functools.partial(scale_case, cfg, Path(tmp), layers, with_input, times[layers])
                rows += guarded(f"{layers:,} layers ({variant})", case)
        small, large = times[1_000], times[10_000]
        if len(small) == len(large) == 2:
            growth = large["gc"] / small["gc"]
            note = f"linear = 10×; gc off: {large['no gc'] / small['no gc']:.1f}×"
            target, ok = f"≤{GROWTH_TARGET:g}×", growth <= GROWTH_TARGET
            rows.append(Row(f"validate 10k/1k ({variant})", ratio=growth, target=target, ok=ok, note=note))
    print_table("scale", rows)


# --------------------------------------------------------------------------------------------- 3. forward


def forward_case(
    cfg: Settings, case: str, spec: dict | Path, hand_factory: Callable[[], nn.Module], inputs: torch.Tensor
) -> list[Row]:
    built = netspec.load(spec)
    model = built.model.eval()
    hand = hand_factory().eval()
    hand.load_state_dict(model.state_dict(), strict=True)
    with torch.inference_mode():
        try:
            torch.testing.assert_close(model(inputs), hand(inputs))
            check(f"{case} outputs equal", True)
        except AssertionError as err:
            check(f"{case} outputs equal", False, str(err).splitlines()[0])
        t = median_times(
            {"hand": lambda: hand(inputs), "netspec": lambda: model(inputs)},
            repeats=cfg.forward_repeats,
            warmup=3,
            min_sample_s=FORWARD_SAMPLE_S,
            max_seconds=cfg.forward_max_s,
            collect=False,
        )
    shape = "x".join(map(str, inputs.shape[1:]))
    rounds = len(t.samples["hand"])
    return [ratio_row(case, t, FORWARD_TARGET, f"input {shape}, {rounds} x {t.number} call(s)")]


def section_forward(cfg: Settings) -> None:
    side = cfg.resnet_b32_side
    mlp_width, mlp_depth = 128, 100
    print("\n== 3. Forward time on CPU: eval(), torch.inference_mode(), same weights (load_state_dict) ==")
    print(
        f"   up to {cfg.forward_repeats} interleaved samples (or {cfg.forward_max_s:g} s) of >= "
        f"{FORWARD_SAMPLE_S * 1e3:.0f} ms each, median; "
        f"ResNet-18 batch 32 at {side}x{side}; MLP width {mlp_width}, depth {mlp_depth}; GPT: specs/gpt_block.yaml"
    )
    g = torch.Generator().manual_seed(SEED)
    mlp_spec = gen.mlp_graph_spec(depth=mlp_depth, width=mlp_width)
    mlp = functools.partial(hw.MLPChain, mlp_width, mlp_depth)
    cases: list[tuple[str, dict | Path, Callable[[], nn.Module], torch.Tensor]] = [
        ("ResNet-18 b1", SPECS / "resnet18.yaml", hw.resnet18, torch.randn(1, 3, 224, 224, generator=g)),
        ("ResNet-18 b32", SPECS / "resnet18.yaml", hw.resnet18, torch.randn(32, 3, side, side, generator=g)),
        ("MLP-100 Graph b1", mlp_spec, mlp, torch.randn(1, mlp_width, generator=g)),
        ("MLP-100 Graph b32", mlp_spec, mlp, torch.randn(32, mlp_width, generator=g)),
        ("GPT b1", SPECS / "gpt_block.yaml", hw.GPT, torch.randint(0, 512, (1, 64), generator=g)),
        ("GPT b32", SPECS / "gpt_block.yaml", hw.GPT, torch.randint(0, 512, (32, 64), generator=g)),
    ]
    rows: list[Row] = []
    for case, spec, factory, x in cases:
        rows += guarded(case, functools.partial(forward_case, cfg, case, spec, factory, x))
    print_table("forward", rows)


# --------------------------------------------------------------------------------------------- 4. emit


def section_emit(cfg: Settings) -> None:
    print("\n== 4. Emit ==")
    script = BENCH / "bench_emit.py"
    if not script.exists():
        print("   bench/bench_emit.py not found - emit benchmark skipped")
        return
    argv = [sys.executable, str(script)]
    if cfg.quick and "--quick" in script.read_text(encoding="utf-8"):
        argv.append("--quick")
    print(f"   running {' '.join(argv[1:])} (own process)", flush=True)
    done = subprocess.run(argv, cwd=ROOT, check=False)
    RESULTS.append(Row("bench_emit.py", ok=done.returncode == 0, note=f"exit status {done.returncode}"))
    if done.returncode:
        print(f"   bench_emit.py exited with status {done.returncode}")


# --------------------------------------------------------------------------------------------- main

SECTIONS = {"build": section_build, "scale": section_scale, "forward": section_forward, "emit": section_emit}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: fewer repeats, smaller batch-32 images")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads (default 1: on a shared machine, multi-threaded kernels stall whenever "
        "another process takes a core, which swamps the overheads being measured)",
    )
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any target or check fails")
    args = parser.parse_args(argv)

    cfg = Settings.make(args.quick, args.threads)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(SEED)
    started = time.perf_counter()
    print("netspec benchmarks" + (" (quick)" if cfg.quick else ""))
    print(f"  machine : {platform.machine()}, nproc {os.cpu_count()}, {platform.platform()}")
    print(f"  python  : {platform.python_version()}; torch {torch.__version__}; netspec {netspec.__version__}")
    print(
        f"  torch   : set_num_threads({cfg.threads}) -> {torch.get_num_threads()} threads, "
        f"{torch.get_num_interop_threads()} interop; seed {SEED}"
    )
    print(f"  load    : {' '.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min averages) at start")

    for name in args.only or SECTIONS:
        SECTIONS[name](cfg)

    counts = {v: sum(r.verdict == v for r in RESULTS) for v in ("PASS", "FAIL", "ERROR", "info")}
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nsummary: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['ERROR']} ERROR, {counts['info']} info; "
        f"load {load} at end; {time.perf_counter() - started:.0f} s in all"
    )
    for r in RESULTS:
        if r.verdict in ("FAIL", "ERROR"):
            print(f"  {r.verdict}: {r.case} {r.error or ''}".rstrip())
    return 1 if args.strict and (counts["FAIL"] or counts["ERROR"]) else 0


if __name__ == "__main__":
    sys.exit(main())
