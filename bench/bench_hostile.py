"""Hostile-input figures: validation time of mixed layers, peak memory of a 4 MB spec, vars, fuzz suite.

    python bench/bench_hostile.py            # every figure (about a minute on 2 cores)
    python bench/bench_hostile.py --quick    # smaller sizes

(1) ``netspec.read`` of 1,000 and 10,000 layers of mixed types (LayerNorm, GELU, Linear, Dropout, Conv1d,
BatchNorm1d, Tanh, ReLU in a Sequential; (1b) Embedding, MultiheadAttention, LSTM, LayerNorm, GELU, Linear,
Dropout in a Graph, also at 2,500 and 5,000 to show the growth) — target ≤ 0.5 s for 10,000 and linear
growth; the ratio is netspec / constructing and running the same hand-written layers on meta (1) or once on
CPU (1b) in the same run. Each time is the best of 3, wall clock and this process's CPU time (on a shared
machine the CPU time is about what an idle one shows as wall time). Measured on 2026-12-01
(docs/benchmarks.md): (1b) 10,000 layers 1.34 s on an idle machine before; 0.79 s CPU (best of 3, load
average ~9, wall 5.7 s) after validation stopped generating the Graph's forward, parsed each statement
shape once and remembered answered layer calls; 1,000 / 2,500 / 5,000 layers 0.067 / 0.162 / 0.326 s CPU.
Then 0.639 s on a quiet machine; 0.422 s CPU (best of 3, load average ~5, wall 0.642 s; the code before,
interleaved, 0.64 s CPU) after the read's one collector pause hands its objects to the oldest generation,
fx nodes get their arguments without Node.__setattr__ and memo answers detach a blank template.
(2) peak resident memory added by validating a 4 MB JSON spec (a fresh process) — target ≤ 300 MB.
(3) 30,000 plain vars (a 0.5 MB spec). (4) the fuzz suite's example count and run time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

import netspec  # noqa: E402

D = 32


def mixed_layers(n: int) -> list[dict[str, Any]]:
    """``n`` layers cycling through nine kinds, each fitting the previous one's [B, 16, 32] output."""
    kinds: list[dict[str, Any]] = [
        {"type": "LayerNorm", "normalized_shape": D},
        {"type": "GELU"},
        {"type": "Linear", "out_features": D},
        {"type": "Dropout", "p": 0.1},
        {"type": "Conv1d", "out_channels": 16, "kernel_size": 3, "padding": 1},
        {"type": "BatchNorm1d"},
        {"type": "Tanh"},
        {"type": "LayerNorm", "normalized_shape": D},
        {"type": "ReLU"},
    ]
    return [kinds[i % len(kinds)] for i in range(n)]


def mixed_spec(n: int) -> dict[str, Any]:
    return {"netspec": 1, "input": {"shape": [16, D]}, "model": {"type": "Sequential", "layers": mixed_layers(n)}}


def handwritten_meta(n: int) -> float:
    start = time.perf_counter()
    with torch.device("meta"):
        layers = []
        for i in range(n):
            k = i % 9
            layers.append(
                [
                    nn.LayerNorm(D),
                    nn.GELU(),
                    nn.Linear(D, D),
                    nn.Dropout(0.1),
                    nn.Conv1d(16, 16, 3, padding=1),
                    nn.BatchNorm1d(16),
                    nn.Tanh(),
                    nn.LayerNorm(D),
                    nn.ReLU(),
                ][k]
            )
        model = nn.Sequential(*layers)
        model(torch.empty(2, 16, D))
    return time.perf_counter() - start


def best(fn: Any, repeats: int) -> float:
    return best_both(fn, repeats)[0]


def best_both(fn: Any, repeats: int) -> tuple[float, float]:
    """(best wall-clock seconds, best CPU seconds of this process) over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return min(wall), min(cpu)


def attention_embedding_lstm() -> dict[str, Any]:
    """The other kinds the issue names, in a Graph (they take or return more than one tensor)."""
    return {
        "netspec": 1,
        "input": {"shape": [16], "dtype": "int64"},
        "model": {
            "type": "Graph",
            "inputs": ["tokens"],
            "layers": {
                "emb": {"type": "Embedding", "num_embeddings": 100, "embedding_dim": D},
                "attn": {"type": "MultiheadAttention", "embed_dim": D, "num_heads": 4, "batch_first": True},
                "lstm": {"type": "LSTM", "input_size": D, "hidden_size": D, "batch_first": True},
            },
            "forward": ["h = emb(tokens)", "a, _ = attn(h, h, h)", "y, _ = lstm(a)"],
            "outputs": "y",
        },
    }


SEQUENCE_KINDS: list[tuple[dict[str, Any], str]] = [
    ({"type": "LayerNorm", "normalized_shape": D}, "h = L(h)"),
    ({"type": "MultiheadAttention", "embed_dim": D, "num_heads": 4, "batch_first": True}, "h, _ = L(h, h, h)"),
    ({"type": "GELU"}, "h = L(h)"),
    ({"type": "LSTM", "input_size": D, "hidden_size": D, "batch_first": True}, "h, _ = L(h)"),
    ({"type": "Linear", "in_features": D, "out_features": D}, "h = L(h)"),
    ({"type": "Dropout", "p": 0.1}, "h = L(h)"),
]


def sequence_graph(n: int) -> dict[str, Any]:
    """An Embedding, then ``n - 1`` layers cycling through LayerNorm, MultiheadAttention, GELU, LSTM,
    Linear, Dropout: a Graph, since attention takes three inputs and LSTM returns a tuple."""
    layers: dict[str, Any] = {"emb": {"type": "Embedding", "num_embeddings": 100, "embedding_dim": D}}
    forward = ["h = emb(tokens)"]
    for i in range(n - 1):
        layer, statement = SEQUENCE_KINDS[i % len(SEQUENCE_KINDS)]
        layers[f"l{i}"] = layer
        forward.append(statement.replace("L(", f"l{i}("))
    model = {"type": "Graph", "inputs": ["tokens"], "layers": layers, "forward": forward, "outputs": "h"}
    return {"netspec": 1, "input": {"shape": [16], "dtype": "int64"}, "model": model}


def handwritten_sequence(n: int) -> float:
    """The same model as ``sequence_graph(n)``, written by hand, constructed and run once on CPU (on meta,
    torch's decompositions of LSTM and attention take tens of milliseconds per layer)."""
    start = time.perf_counter()
    with torch.no_grad():
        makers = [
            lambda: nn.LayerNorm(D),
            lambda: nn.MultiheadAttention(D, 4, batch_first=True),
            lambda: nn.GELU(),
            lambda: nn.LSTM(D, D, batch_first=True),
            lambda: nn.Linear(D, D),
            lambda: nn.Dropout(0.1),
        ]
        emb = nn.Embedding(100, D)
        layers = [makers[i % len(makers)]() for i in range(n - 1)]
        h = emb(torch.zeros(2, 16, dtype=torch.long))
        for layer in layers:
            if isinstance(layer, nn.MultiheadAttention):
                h, _ = layer(h, h, h)
            elif isinstance(layer, nn.LSTM):
                h, _ = layer(h)
            else:
                h = layer(h)
    return time.perf_counter() - start


def peak_memory_4mb(tmp: Path) -> tuple[float, float, float]:
    """(spec MB, peak RSS MB added by validating it, seconds) in a fresh process."""
    layers = {f"layer_{i:06d}": {"type": "Linear", "in_features": 8, "out_features": 8} for i in range(52_000)}
    spec = {"netspec": 1, "model": {"type": "ModuleDict", "layers": layers}}
    path = tmp / "big.json"
    path.write_text(json.dumps(spec, indent=1))
    # The peak is read from /proc/self/status (VmHWM, kB): getrusage's ru_maxrss survives exec on Linux, so
    # a child of this (by then large) process would start from the parent's peak and show +0.
    code = (
        "import sys, time, netspec\n"
        "from netspec.frontend.source import load_text\n"
        "def peak():\n"
        "    with open('/proc/self/status') as f:\n"
        "        return next(int(l.split()[1]) for l in f if l.startswith('VmHWM:'))\n"
        "load_text('{}', 'warm.json')\n"  # imports done before the baseline
        "import netspec.compiler.resolve, netspec.compiler.infer\n"
        "before = peak()\n"
        "t = time.perf_counter(); netspec.read(sys.argv[1]); t = time.perf_counter() - t\n"
        "print((peak() - before) / 1024, t)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    grown, seconds = map(float, out.stdout.split())
    return path.stat().st_size / 1e6, grown, seconds


def fuzz_suite() -> tuple[int, int, float]:
    """(property tests, examples they draw at most, seconds) for tests/test_fuzz.py."""
    path = ROOT / "tests" / "test_fuzz.py"
    counts = [int(n) for n in re.findall(r"^@fuzz\((\d+)\)", path.read_text(), flags=re.M)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path)],
        capture_output=True, text=True, env=env, cwd=ROOT, check=True,
    )  # fmt: skip
    return len(counts), sum(counts), time.perf_counter() - start


def validation_rows(
    reference: str,
    sizes: tuple[int, ...],
    make_spec: Callable[[int], dict[str, Any]],
    handwritten: Callable[[int], float],
    repeats: int,
) -> None:
    """One table of ``netspec.read`` times (wall and CPU, best of ``repeats``) against the hand-written
    reference at each size, then the growth from the first size to the last and the <= 0.5 s verdict."""
    print(f"{'layers':>8} {'netspec.read':>13} {'(CPU)':>8} {reference:>18} {'ratio':>6}")
    results: dict[int, float] = {}
    for n in sizes:
        spec = make_spec(n)
        ours, cpu = best_both(lambda spec=spec: netspec.read(spec), repeats)
        theirs = min(handwritten(n) for _ in range(repeats))
        results[n] = ours
        print(f"{n:>8,} {ours:>12.3f}s {cpu:>7.3f}s {theirs:>17.3f}s {ours / theirs:>6.2f}")
    first, last = sizes[0], sizes[-1]
    print(f"growth {first:,} -> {last:,}: {results[last] / results[first]:.1f}x (linear: {last // first}x); "
          f"target <= 0.5 s: {'PASS' if results[last] <= 0.5 else 'FAIL'}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    # One intra-op thread: on a shared machine torch's thread pool makes the hand-written CPU forwards
    # (LSTM, attention) wait on each other and the ratios meaningless; netspec's validation is single-threaded.
    torch.set_num_threads(1)
    netspec.read(mixed_spec(10))  # imports and first-call caches
    print("(1) validation time, mixed layers (best of", repeats, ")")
    validation_rows("hand-written meta", (1_000, 10_000), mixed_spec, handwritten_meta, repeats)
    graph = attention_embedding_lstm()
    print(f"Embedding + MultiheadAttention + LSTM Graph: {best(lambda: netspec.read(graph), repeats) * 1e3:.1f} ms")
    print("(1b) Embedding, then LayerNorm, MultiheadAttention, GELU, LSTM, Linear, Dropout in a Graph")
    validation_rows("hand-written CPU", (1_000, 2_500, 5_000, 10_000), sequence_graph, handwritten_sequence, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        mb, grown, seconds = peak_memory_4mb(Path(tmp))
    print(f"(2) validating a {mb:.1f} MB JSON spec (52,000 layers): peak RSS +{grown:.0f} MB in {seconds:.1f} s; "
          f"target <= 300 MB: {'PASS' if grown <= 300 else 'FAIL'}")  # fmt: skip
    data: dict[str, Any] = {f"v{i}": i for i in range(30_000)}
    spec = {"netspec": 1, "vars": data, "model": {"type": "Linear", "in_features": 4, "out_features": 4}}
    print(f"(3) 30,000 plain vars: {best(lambda: netspec.read(spec), repeats):.2f} s")
    if not args.quick:
        tests, examples, seconds = fuzz_suite()
        print(f"(4) fuzz suite: {tests} property tests, up to {examples:,} examples, {seconds:.0f} s (fixed seed)")


if __name__ == "__main__":
    main()
