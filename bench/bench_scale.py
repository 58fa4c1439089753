"""Scale figures: Llama-style specs on meta, ``netspec plan``, and a two-process FSDP build.

    python bench/bench_scale.py            # everything (a few minutes on 2 cores)
    python bench/bench_scale.py --quick    # one repeat each, no FSDP section

Sections, each against hand-written PyTorch measured in the same run:
(1) ``netspec build SPEC --device meta`` (meta build + summary) of the 7B and 70B Llama-style
    specs (specs/scale/llama_model.yaml, llama_70b_model.yaml), wall and CPU seconds and peak
    RSS of the process, against a process that builds bench/handwritten.py's ``Llama`` under
    ``torch.device("meta")``; (2) in-process read + build on meta against the hand-written meta
    build (median of paired rounds, ``timing.median_times``); (3) ``netspec plan`` of the 70B
    spec at ``--world 8``, in-process and as a command; (4) a two-process CPU (gloo) FSDP build
    of the ~100M-parameter spec against the same model sharded by hand (bench/fsdp_build_job.py);
    (5) the per-rank memory of FSDP's init (bench/fsdp_init_job.py): the full tensors alive at
    once while a 2-rank build initialises an LSTM and an attention layer, replayed one tensor at
    a time against each layer constructed whole.

CPU seconds are reported beside wall seconds: on a shared machine the wall clock also counts
other people's processes. Targets: 7B summary <= 2 s and <= 500 MB, read+build <= 10x the
hand-written meta build, 70B plan <= 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SCALE = ROOT / "specs" / "scale"
sys.path.insert(0, str(BENCH))
import handwritten as hw  # noqa: E402
from timing import median_times  # noqa: E402

import netspec  # noqa: E402

SIZES = {"7B": ("llama_model.yaml", hw.LLAMA_7B), "70B": ("llama_70b_model.yaml", hw.LLAMA_70B)}
HAND_META = (
    "import sys, torch; sys.path.insert(0, {bench!r}); import handwritten as hw\n"
    "with torch.device('meta'):\n    m = hw.Llama(**hw.{cfg})\n"
    "print(sum(p.numel() for p in m.parameters()))\n"
)


def run_process(command: list[str]) -> tuple[float, float, float, str]:
    """(wall s, CPU s, peak RSS MB, stdout) of one child process (its own rusage, from ``os.wait4``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.DEVNULL, env=env, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} exited with {child.returncode}")
        out.seek(0)
        text = out.read()
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, text


def best_of(runs: int, command: list[str]) -> tuple[float, float, float, str]:
    results = [run_process(command) for _ in range(runs)]
    return min(results, key=lambda r: r[1])  # the run least disturbed by neighbours


def section_summary(runs: int) -> list[str]:
    head = (
        "| model | netspec wall s | CPU s | RSS MB | hand-written meta wall s | CPU s | RSS MB "
        "| netspec CPU / `import torch` CPU |"
    )
    rows = [head, "|---|---|---|---|---|---|---|---|"]
    # The floor of any command that uses torch: the interpreter plus `import torch`, measured alike.
    floor = best_of(runs, [sys.executable, "-c", "import torch"])
    for size, (spec, _) in SIZES.items():
        ns = best_of(runs, [sys.executable, "-m", "netspec", "build", str(SCALE / spec), "--device", "meta"])
        name = "LLAMA_7B" if size == "7B" else "LLAMA_70B"
        hand = best_of(runs, [sys.executable, "-c", HAND_META.format(bench=str(BENCH), cfg=name)])
        total = next(line for line in ns[3].splitlines() if line.startswith("Total params"))
        assert total.split(":")[1].strip().replace(",", "") == hand[3].strip(), (total, hand[3])
        ours = f"{ns[0]:.2f} | {ns[1]:.2f} | {ns[2]:.0f}"
        rows.append(f"| {size} | {ours} | {hand[0]:.2f} | {hand[1]:.2f} | {hand[2]:.0f} | {ns[1] / floor[1]:.2f}x |")
    rows.append(f'| `python -c "import torch"` | {floor[0]:.2f} | {floor[1]:.2f} | {floor[2]:.0f} | | | | 1x |')
    return rows


def section_inprocess(repeats: int) -> list[str]:
    head = "| model | hand-written meta build s | netspec read+build s | ratio (median, quartiles) |"
    rows = [head, "|---|---|---|---|"]
    for size, (spec, cfg) in SIZES.items():

        def hand(cfg: dict[str, int] = cfg) -> object:
            with torch.device("meta"):
                return hw.Llama(**cfg)

        def ours(path: Path = SCALE / spec) -> object:
            return netspec.build(path, device="meta")

        t = median_times({"hand": hand, "netspec": ours}, repeats=repeats, number=1)
        q = t.quartiles["netspec"]
        rows.append(
            f"| {size} | {t.seconds['hand']:.3f} | {t.seconds['netspec']:.3f} | "
            f"{t.ratios['netspec']:.1f}x ({q[0]:.1f}-{q[1]:.1f}) |"
        )
    return rows


def section_plan(repeats: int) -> list[str]:
    path = SCALE / "llama_70b.yaml"
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        plan = netspec.plan(path, world_size=8)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    cli = best_of(repeats, [sys.executable, "-m", "netspec", "plan", str(path), "--world", "8"])
    return [
        "| 70B plan at --world 8 | wall s | CPU s |",
        "|---|---|---|",
        f"| netspec.plan (read + plan, in-process, best of {repeats}) | {min(walls):.2f} | {min(cpus):.2f} |",
        f"| netspec plan (the command, from a cold start) | {cli[0]:.2f} | {cli[1]:.2f} |",
        f"| per-rank total | {plan.total / 2**30:.2f} GiB | |",
    ]


def section_fsdp() -> list[str]:
    head = "| 2-rank CPU FSDP build, ~100M params | wall s (rank 0) | CPU s | peak RSS above start, MiB |"
    rows = [head, "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        found = {}
        for mode in ("netspec", "hand"):
            out = Path(tmp) / f"{mode}.json"
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
            run_process([*launcher, str(BENCH / "fsdp_build_job.py"), mode, str(out)])
            found[mode] = json.loads(out.read_text())
        assert found["netspec"]["parameters"] == found["hand"]["parameters"]
        labels = {"hand": "by hand (torchtitan's meta + to_empty + reset_parameters)", "netspec": "netspec.build"}
        for mode, label in labels.items():
            ranks = found[mode]["ranks"]
            peak = max(r["peak_mib"] for r in ranks)
            rows.append(f"| {label} | {ranks[0]['seconds']:.2f} | {ranks[0]['cpu_seconds']:.2f} | {peak:.0f} |")
        rows.append(f"| parameters | {found['netspec']['parameters']:,} | | |")
    return rows


def section_fsdp_init() -> list[str]:
    """Per-rank memory of FSDP's init: each layer replayed one tensor at a time, against built whole."""
    head = (
        "| 2-rank FSDP init, LSTM + attention, 37.8M params | full tensors alive at peak, MiB | peak RSS growth, MiB |"
    )
    rows = [head, "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        found = {}
        for mode in ("tensor", "layer"):
            out = Path(tmp) / f"{mode}.json"
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
            run_process([*launcher, str(BENCH / "fsdp_init_job.py"), mode, str(out)])
            found[mode] = json.loads(out.read_text())
        labels = {"tensor": "netspec.build: one tensor at a time", "layer": "each layer constructed whole (before)"}
        for mode, label in labels.items():
            ranks = found[mode]["ranks"]
            peak = max(r["peak"] for r in ranks) / 2**20
            rss = max(r["rss_kib"] for r in ranks) / 1024
            rows.append(f"| {label} | {peak:.0f} | {rss:.0f} |")
        rank = found["tensor"]["ranks"][0]
        shards, largest = rank["shards"] / 2**20, rank["largest"] / 2**20
        rows.append(f"| one rank's shards / the largest parameter | {shards:.0f} / {largest:.0f} | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}\n")
    for title, make in (
        ("Meta build + summary (the CLI)", lambda: section_summary(runs)),
        ("Read + build on meta, in-process", lambda: section_inprocess(runs)),
        ("Plan", lambda: section_plan(runs)),
        *((("FSDP build", section_fsdp), ("FSDP init memory", section_fsdp_init)) if not args.quick else ()),
    ):
        print(f"## {title}\n")
        print("\n".join(make()) + "\n", flush=True)


if __name__ == "__main__":
    main()
