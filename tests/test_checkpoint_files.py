"""Checkpoint files (contract section 7): dtype, fingerprint and RNG states in .pt files, resuming
exactly across processes, loading that leaves the caller's RNG alone, and pickle-free .safetensors."""

from __future__ import annotations

import itertools
import json
import pickle
import random
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import netspec
from netspec.api import rng_devices
from netspec.errors import CheckpointError, NetspecError
from netspec.io.checkpoint import inspect_checkpoint

ROOT = Path(__file__).resolve().parents[1]

DROPOUT = {
    "netspec": 1,
    "seed": 3,
    "input": {"shape": [8]},
    "model": {
        "type": "Sequential",
        "layers": [
            {"type": "Linear", "out_features": 16},
            {"type": "Dropout", "p": 0.5},
            {"type": "Linear", "out_features": 1},
        ],
    },
    "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9},
}

TIED = {
    "netspec": 1,
    "seed": 0,
    "model": {
        "type": "Sequential",
        "layers": {
            "embed": {"type": "Linear", "in_features": 6, "out_features": 6, "bias": False},
            "act": "Tanh",
            "head": {"type": "Linear", "in_features": 6, "out_features": 6},
        },
    },
}


def test_pt_records_dtype_fingerprint_parameters_and_rng(tmp_path: Path) -> None:
    built = netspec.build(DROPOUT, dtype="float64")
    torch.manual_seed(11)
    expected_rng = torch.get_rng_state()
    netspec.save(built, tmp_path / "run.pt", epoch=4)
    loaded = netspec.load(tmp_path / "run.pt")
    info = loaded.checkpoint
    assert info is not None and info.epoch == 4
    assert info.dtype == "float64"
    assert all(p.dtype == torch.float64 for p in loaded.model.parameters())  # resumed in the saved dtype
    assert info.fingerprint == built.spec.fingerprint == loaded.spec.fingerprint
    assert info.rng is not None and torch.equal(info.rng["torch"], expected_rng)
    summary = inspect_checkpoint(tmp_path / "run.pt")
    assert summary.parameters == 8 * 16 + 16 + 16 + 1
    assert summary.weights["0.weight"] == (16, 8)


def test_load_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    unseeded = {k: v for k, v in DROPOUT.items() if k != "seed"}  # init draws from the global RNG
    netspec.save(netspec.build(unseeded), tmp_path / "run.pt")
    torch.manual_seed(123)
    random.seed(5)
    before, py_before = torch.get_rng_state(), random.getstate()
    netspec.load(tmp_path / "run.pt")
    assert torch.equal(torch.get_rng_state(), before)
    assert random.getstate() == py_before


def test_restore_rng_needs_saved_states(tmp_path: Path) -> None:
    with pytest.raises(NetspecError, match="not loaded from a checkpoint"):
        netspec.build(DROPOUT).restore_rng()
    netspec.save(netspec.build(DROPOUT), tmp_path / "w.safetensors")
    with pytest.raises(NetspecError, match=r"w\.safetensors holds no RNG state"):
        netspec.load(tmp_path / "w.safetensors").restore_rng()


TRAIN = """\
import random, sys, json
import torch, netspec

spec, ckpt, mode = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

def step(built):
    x = torch.randn(4, 8) * (1 + random.random())   # data drawn from the global torch and Python RNGs
    loss = ((built.model(x) - x.sum(1, keepdim=True)) ** 2).mean()
    built.optimizer.zero_grad()
    loss.backward()
    built.optimizer.step()
    return loss.item()

losses = []
if mode == "full":
    torch.manual_seed(0); random.seed(0)
    built = netspec.build(spec)
    built.model.train()
    for i in range(6):
        if i == 3:
            netspec.save(built, ckpt, epoch=i)
        losses.append(step(built))
    losses = losses[3:]
else:
    built = netspec.load(ckpt)
    built.model.train()
    if mode == "resume":
        built.restore_rng()
    for i in range(3):
        losses.append(step(built))
print(json.dumps([float.hex(v) for v in losses]))
"""


def _run(script: Path, ckpt: Path, mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(script), json.dumps(DROPOUT), str(ckpt), mode],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_resumed_run_with_dropout_continues_exactly(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN, encoding="utf-8")
    ckpt = tmp_path / "run.pt"
    uninterrupted = _run(script, ckpt, "full")
    assert _run(script, ckpt, "resume") == uninterrupted  # bit-identical losses in a fresh process
    assert _run(script, ckpt, "no-restore") != uninterrupted  # without restore_rng the dropout masks differ


# -- .safetensors -----------------------------------------------------------------------------------------


def _parse_safetensors(path: Path) -> tuple[dict[str, object], int]:
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    return header, len(raw) - 8 - length


def test_safetensors_round_trip_keeps_ties_and_holds_no_pickle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = netspec.build(TIED)
    built.model.head.weight = built.model.embed.weight
    path = tmp_path / "model.safetensors"
    netspec.save(built, path, epoch=7, note="tied")

    header, data_bytes = _parse_safetensors(path)
    meta = header.pop("__metadata__")
    assert json.loads(meta["spec"]) == built.spec.to_dict()
    assert json.loads(meta["versions"])["torch"] == torch.__version__
    assert json.loads(meta["tied"]) == [["embed.weight", "head.weight"]]
    assert set(header) == {"embed.weight", "head.bias"}  # the tied tensor is stored once
    # The tensors' byte ranges tile the data section exactly: nothing else (no pickle) is in the file.
    spans = sorted(tuple(entry["data_offsets"]) for entry in header.values())
    assert spans[0][0] == 0 and spans[-1][1] == data_bytes
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "Unpickler", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = netspec.load(path)
    assert loaded.model.head.weight is loaded.model.embed.weight
    for key, value in built.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    x = torch.randn(2, 6)
    torch.testing.assert_close(loaded.model(x), built.model(x), rtol=0, atol=0)
    assert loaded.checkpoint is not None and loaded.checkpoint.epoch == 7
    assert loaded.checkpoint.extra == {"note": "tied"}
    assert loaded.checkpoint.fingerprint == built.spec.fingerprint


def test_safetensors_warns_that_optimizer_state_is_not_kept(tmp_path: Path) -> None:
    built = netspec.build(DROPOUT)
    built.model(torch.randn(2, 8)).sum().backward()
    built.optimizer.step()
    with pytest.warns(UserWarning, match="optimizer's state is not saved"):
        netspec.save(built, tmp_path / "w.safetensors")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        netspec.save(netspec.build(DROPOUT), tmp_path / "fresh.safetensors")  # nothing to lose: no warning


def test_safetensors_extra_must_be_json(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="must be JSON"):
        netspec.save(netspec.build(TIED), tmp_path / "x.safetensors", weights=torch.zeros(2))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("cut", [4, 40, -10])
def test_broken_safetensors_is_a_checkpoint_error(tmp_path: Path, cut: int) -> None:
    path = tmp_path / "x.safetensors"
    netspec.save(netspec.build(TIED), path)
    raw = path.read_bytes()
    path.write_bytes(raw[:cut])
    with pytest.raises(CheckpointError, match=r"x\.safetensors"):
        netspec.load(path)


def test_foreign_safetensors_names_what_is_missing(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="without a netspec spec"):
        netspec.load(tmp_path / "plain.safetensors")


def test_init_from_is_dropped_from_the_embedded_spec(tmp_path: Path) -> None:
    donor = netspec.build(TIED)
    torch.save(donor.model.state_dict(), tmp_path / "donor.pt")
    spec = {**TIED, "init": [{"from": str(tmp_path / "donor.pt")}]}
    built = netspec.build(spec, search_path=[tmp_path])  # an absolute from: must be inside the search path
    netspec.save(built, tmp_path / "run.pt")
    (tmp_path / "donor.pt").unlink()  # the checkpoint must not need it
    summary = inspect_checkpoint(tmp_path / "run.pt")
    assert "init" not in summary.spec
    loaded = netspec.load(tmp_path / "run.pt")
    assert torch.equal(loaded.model.embed.weight, donor.model.embed.weight)


def test_show_checkpoint_reads_no_tensors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netspec.save(netspec.build(DROPOUT), tmp_path / "run.pt", epoch=2)
    netspec.save(netspec.build(DROPOUT), tmp_path / "run.safetensors")
    import netspec.api as api

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("show built the model")

    monkeypatch.setattr(api, "build", no_build)
    from netspec.cli.main import main

    for name in ("run.pt", "run.safetensors"):
        summary = inspect_checkpoint(tmp_path / name)
        assert summary.spec == netspec.read(DROPOUT).to_dict()
        assert summary.metadata()["parameters"] == 161
        assert summary.weights == {"0.weight": (16, 8), "0.bias": (16,), "2.weight": (1, 16), "2.bias": (1,)}
        assert main(["show", str(tmp_path / name)]) == 0


def test_show_checkpoint_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.cli.main import main

    built = netspec.build(DROPOUT)
    netspec.save(built, tmp_path / "run.pt", epoch=2)
    assert main(["show", str(tmp_path / "run.pt")]) == 0
    out = capsys.readouterr().out
    assert "# epoch: 2\n" in out and f"# fingerprint: {built.spec.fingerprint}\n" in out
    assert "# dtype: float32\n" in out and "# parameters: 161\n" in out
    assert f"torch {torch.__version__}" in out
    body = "".join(line + "\n" for line in out.splitlines() if not line.startswith("#"))
    assert netspec.read(__import__("yaml").safe_load(body)).fingerprint == built.spec.fingerprint
    assert main(["show", str(tmp_path / "run.pt"), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["checkpoint"]["epoch"] == 2 and data["checkpoint"]["parameters"] == 161
    assert data["spec"] == built.spec.to_dict()


def test_edited_checkpoint_spec_is_flagged_by_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from netspec.cli.main import main

    path = tmp_path / "run.pt"
    netspec.save(netspec.build(DROPOUT), path)
    payload = torch.load(path, weights_only=True)
    payload["spec"]["optimizer"]["lr"] = 0.5
    torch.save(payload, path)
    assert main(["show", str(path)]) == 0
    assert "fingerprint" in capsys.readouterr().err


def test_atomic_write_refuses_a_non_regular_target(tmp_path: Path) -> None:
    import os

    os.mkfifo(tmp_path / "run.safetensors")  # the .safetensors writer goes through the same check
    with pytest.raises(CheckpointError, match="not a regular file"):
        netspec.save(netspec.build(TIED), tmp_path / "run.safetensors")


def test_loading_a_checkpoint_directory_leaves_the_callers_rng_alone(tmp_path: Path) -> None:
    unseeded = {k: v for k, v in DROPOUT.items() if k != "seed"}  # its rebuild draws from the global RNG
    netspec.save(netspec.build(unseeded), tmp_path / "run")  # a DCP directory (no process group here)
    torch.manual_seed(123)
    before = torch.get_rng_state()
    netspec.load(tmp_path / "run")
    assert torch.equal(torch.get_rng_state(), before)


def test_load_forks_the_device_it_builds_on_not_every_initialised_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unseeded rebuild on the CPU forks the CPU only, even with two initialised GPUs; a rebuild on
    cuda:1 (or a bare cuda, which is cuda:LOCAL_RANK once torchrun set the device) forks that GPU only."""
    unseeded = {k: v for k, v in DROPOUT.items() if k != "seed"}
    netspec.save(netspec.build(unseeded), tmp_path / "run.pt")
    calls: list[tuple[list[int], str | None]] = []
    real_fork = torch.random.fork_rng

    def recording_fork(devices: Any = None, enabled: bool = True, device_type: str = "cuda") -> Any:
        calls.append((list(devices or []), device_type))
        return real_fork(devices=[], enabled=enabled)

    monkeypatch.setattr(torch.random, "fork_rng", recording_fork)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    netspec.load(tmp_path / "run.pt")
    assert calls and all(devices == [] for devices, _ in calls)
    assert rng_devices(torch.device("cuda", 1)) == ([1], "cuda")
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert rng_devices(torch.device("cuda")) == ([3], "cuda")
    assert rng_devices(torch.device("cpu")) == ([], "cuda") and rng_devices(torch.device("meta"))[0] == []
