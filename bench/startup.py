"""Start-up time of the command line and the package, as ratios to ``python -c pass``.

    python bench/startup.py                 # this tree, 21 runs of each command
    python bench/startup.py --runs 41
    python bench/startup.py --root /path/to/other/checkout   # the same figures for another tree

Each command runs as a fresh interpreter (``sys.executable``, ``PYTHONPATH`` set to the tree);
the runs of all commands are interleaved (pass, import, --help, validate, pass, ...) so that
the machine's drifts hit them alike. A figure is the median wall time of a command's runs; its
ratio is the median, over rounds, of its run divided by the ``python -c pass`` run of the same
round. ``validate bad.yaml`` reads a spec with a structural error (a layer without ``type``),
which the front end reports before anything imports torch. ``--target`` (default 0.25 s) is
the goal for ``netspec --help``; the exit status is 1 when it is missed and ``--strict`` is given.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BAD_SPEC = "netspec: 1\nmodel:\n  type: Sequential\n  layers:\n    - {typo: Linear}\n"


def commands(bad: Path) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "python -c pass": [py, "-c", "pass"],
        "import netspec": [py, "-c", "import netspec"],
        "netspec --help": [py, "-m", "netspec", "--help"],
        "netspec validate bad.yaml": [py, "-m", "netspec", "validate", str(bad)],
    }


def run_once(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, timeout=120, check=False)
    elapsed = time.perf_counter() - start
    expected = 1 if argv[-1].endswith("bad.yaml") else 0
    if proc.returncode != expected:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr.decode()[-2000:]}")
    return elapsed


def measure(root: Path, runs: int) -> dict[str, tuple[float, float]]:
    """name -> (median seconds, median ratio to ``python -c pass`` over rounds)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("NETSPEC_DEBUG", None)
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        bad = cwd / "bad.yaml"
        bad.write_text(BAD_SPEC)
        cmds = commands(bad)
        samples: dict[str, list[float]] = {name: [] for name in cmds}
        for argv in cmds.values():  # warm the file cache and .pyc files
            run_once(argv, env, cwd)
        for round_ in range(runs):
            order = list(cmds) if round_ % 2 == 0 else list(reversed(cmds))
            for name in order:
                samples[name].append(run_once(cmds[name], env, cwd))
    base = samples["python -c pass"]
    return {
        name: (statistics.median(times), statistics.median(t / b for t, b in zip(times, base, strict=True)))
        for name, times in samples.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent, help="tree to measure")
    parser.add_argument("--runs", type=int, default=21, help="runs of each command (default 21)")
    parser.add_argument("--target", type=float, default=0.25, help="seconds allowed for netspec --help")
    parser.add_argument("--strict", action="store_true", help="exit status 1 when the --help target is missed")
    args = parser.parse_args()
    figures = measure(args.root.resolve(), args.runs)
    print(f"tree: {args.root.resolve()}  python: {sys.version.split()[0]}  runs: {args.runs} (medians)")
    print(f"{'command':<28}{'seconds':>9}{'× python -c pass':>19}")
    for name, (seconds, ratio) in figures.items():
        print(f"{name:<28}{seconds:>9.3f}{ratio:>19.2f}")
    help_s = figures["netspec --help"][0]
    verdict = "met" if help_s <= args.target else "MISSED"
    print(f"target: netspec --help <= {args.target:.2f} s: {verdict} ({help_s:.3f} s)")
    return 1 if args.strict and help_s > args.target else 0


if __name__ == "__main__":
    sys.exit(main())
