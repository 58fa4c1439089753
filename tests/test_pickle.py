"""Built models pickle: ``pickle`` and ``torch.save``/``torch.load(weights_only=False)`` give back a model
that computes the same outputs, for every shipped spec, in this process and in a fresh one.

Block classes are made at run time and Graph modules carry an fx graph; both must survive the trip
(a block class is recreated by name and base, a Graph module from its graph, not by re-tracing code).
"""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import SPEC_FILES

import netspec
from netspec.compiler.meta import DTYPES
from netspec.training.freeze import is_eval_frozen

ROOT = Path(__file__).resolve().parent.parent
IDS = [p.name for p in SPEC_FILES]


def example_input(built: netspec.Built) -> torch.Tensor | None:
    inp = built.spec.document.input
    if inp is None:
        return None
    dtype = DTYPES[inp.dtype]
    generator = torch.Generator().manual_seed(0)
    if dtype.is_floating_point:
        return torch.randn((2, *inp.shape), dtype=dtype, generator=generator)
    return torch.randint(0, 8, (2, *inp.shape), dtype=dtype, generator=generator)


def same_model(a: nn.Module, b: nn.Module, x: torch.Tensor | None) -> None:
    assert type(b).__name__ == type(a).__name__ and repr(b) == repr(a)
    assert [type(m).__name__ for m in b.modules()] == [type(m).__name__ for m in a.modules()]
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sb) == list(sa) and all(torch.equal(sa[k], sb[k]) for k in sa)
    if x is not None:
        with torch.no_grad():
            want, got = a.eval()(x), b.eval()(x)
        wants = want if isinstance(want, (tuple, list)) else (want,)
        gots = got if isinstance(got, (tuple, list)) else (got,)
        assert len(gots) == len(wants)
        for w, g in zip(wants, gots, strict=True):
            assert torch.equal(w, g)


def torch_round_trip(model: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_pickle_round_trip_computes_the_same(path: Path) -> None:
    built = netspec.build(path)
    same_model(built.model, pickle.loads(pickle.dumps(built.model)), example_input(built))


@pytest.mark.parametrize("path", SPEC_FILES, ids=IDS)
def test_torch_save_and_load_compute_the_same(path: Path) -> None:
    built = netspec.build(path)
    same_model(built.model, torch_round_trip(built.model), example_input(built))


LOAD_IN_FRESH_PROCESS = """
import sys, torch
ok = []
for model_file, out_file in zip(sys.argv[1::2], sys.argv[2::2]):
    model = torch.load(model_file, weights_only=False).eval()
    x, want = torch.load(out_file)
    with torch.no_grad():
        got = model(x)
    ok.append(bool(torch.equal(got, want)))
print(ok)
"""


def test_a_fresh_process_loads_every_saved_model(tmp_path: Path) -> None:
    """No netspec import in the loading process: torch.load alone finds block classes and rebuilds graphs."""
    argv, names = [], []
    for path in SPEC_FILES:
        built = netspec.build(path)
        x = example_input(built)
        if x is None:
            continue
        with torch.no_grad():
            out = built.model.eval()(x)
        if not isinstance(out, torch.Tensor):
            continue
        torch.save(built.model, tmp_path / f"{path.stem}.model.pt")
        torch.save((x, out), tmp_path / f"{path.stem}.out.pt")
        argv += [str(tmp_path / f"{path.stem}.model.pt"), str(tmp_path / f"{path.stem}.out.pt")]
        names.append(path.stem)
    assert {"gpt_block", "resnet18", "vit_tiny"} <= set(names)
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, *argv],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == str([True] * len(names)), dict(zip(names, proc.stdout.strip(), strict=False))


BLOCKS = {
    "netspec": 1,
    "seed": 0,
    "input": {"shape": [4]},
    "blocks": {
        "Proj": {"params": {"width": "int"}, "body": {"type": "Linear", "in_features": 4, "out_features": "${width}"}},
        "Stack": {
            "params": {"width": "int"},
            "body": {"type": "Sequential", "layers": [{"type": "Proj", "width": "${width}"}, "ReLU"]},
        },
    },
    "model": {
        "type": "Sequential",
        "layers": {"a": {"type": "Stack", "width": 4}, "norm": {"type": "BatchNorm1d", "num_features": 4}},
    },
    "freeze": [{"type": "BatchNorm1d", "eval": True}],
}


@pytest.mark.parametrize("trip", [lambda m: pickle.loads(pickle.dumps(m)), torch_round_trip], ids=["pickle", "torch"])
def test_layer_blocks_and_eval_pinned_layers_pickle(trip) -> None:  # type: ignore[no-untyped-def]
    built = netspec.build(BLOCKS)
    model = built.model
    assert type(model.a).__name__ == "Stack" and type(model.a[0]).__name__ == "Proj"
    assert isinstance(model.a[0], nn.Linear) and is_eval_frozen(model.norm)
    copy = trip(model)
    same_model(model, copy, torch.randn(3, 4))
    assert type(copy.a) is type(model.a) and type(copy.a[0]) is type(model.a[0])  # the same classes
    copy.train()
    assert copy.a.training and not copy.norm.training and is_eval_frozen(copy.norm)


@pytest.mark.parametrize("trip", [lambda m: pickle.loads(pickle.dumps(m)), torch_round_trip], ids=["pickle", "torch"])
def test_an_eval_pinned_graph_block_pickles_pinned(trip) -> None:  # type: ignore[no-untyped-def]
    built = netspec.build(SPEC_FILES[0].parent / "gpt_block.yaml", overrides={"freeze": FREEZE_FIRST_BLOCK})
    model = built.model
    assert is_eval_frozen(model.h[0]) and not is_eval_frozen(model.h[1])
    copy = trip(model)
    same_model(model, copy, example_input(built))
    copy.train()
    assert type(copy.h[0]).__name__ == "Block" and is_eval_frozen(copy.h[0])
    assert not copy.h[0].training and copy.h[1].training and copy.training


FREEZE_FIRST_BLOCK = [{"type": "Block", "match": "h.0", "eval": True}]
