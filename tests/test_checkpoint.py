"""netspec.checkpoint: save/load round trips, resuming, and refusing bad files with clear messages."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn

import netspec
from netspec.api import load_checkpoint
from netspec.errors import CheckpointError, SpecError
from netspec.io.checkpoint import is_checkpoint_path, save
from netspec.io.weights import load_state_dict_file, load_weights

SPEC: dict[str, Any] = {
    "netspec": 1,
    "name": "mlp",
    "seed": 0,
    "input": {"shape": [6]},
    "model": {
        "type": "Sequential",
        "layers": {
            "fc1": {"type": "Linear", "out_features": 16},
            "act": "ReLU",
            "norm": {"type": "BatchNorm1d"},
            "fc2": {"type": "Linear", "out_features": 3},
        },
    },
    "optimizer": {"type": "AdamW", "lr": 0.01, "weight_decay": 0.01},
    "scheduler": {"type": "StepLR", "step_size": 2, "gamma": 0.5},
}

# A Graph that calls one Linear twice: its weight is shared by construction.
SHARED: dict[str, Any] = {
    "netspec": 1,
    "seed": 1,
    "model": {
        "type": "Graph",
        "inputs": ["x"],
        "layers": {"proj": {"type": "Linear", "in_features": 4, "out_features": 4}},
        "forward": ["h = proj(relu(proj(x)))"],
        "outputs": "h",
    },
    "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
}


def trained(spec: dict[str, Any] = SPEC, steps: int = 3) -> netspec.Built:
    built = netspec.build(spec)
    x = torch.randn(8, 6)
    for _ in range(steps):
        built.optimizer.zero_grad()
        built.model(x).pow(2).mean().backward()
        built.optimizer.step()
        built.scheduler.step()
    return built


def test_round_trip_rebuilds_model_optimizer_and_scheduler(tmp_path: Path) -> None:
    built = trained()
    path = save(built, tmp_path / "run.pt", epoch=3, best_loss=0.25, note="warm")
    assert path == tmp_path / "run.pt" and path.is_file()

    loaded = load_checkpoint(path)
    assert isinstance(loaded, netspec.Built)
    for (k, a), (k2, b) in zip(built.model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    built.model.eval()
    loaded.model.eval()
    x = torch.randn(5, 6)
    torch.testing.assert_close(loaded.model(x), built.model(x))
    # Optimizer and scheduler resume where they were: same moments, same step count, same lr.
    assert loaded.optimizer.state_dict()["state"][0]["step"] == built.optimizer.state_dict()["state"][0]["step"]
    torch.testing.assert_close(
        loaded.optimizer.state_dict()["state"][0]["exp_avg"], built.optimizer.state_dict()["state"][0]["exp_avg"]
    )
    assert loaded.scheduler.last_epoch == 3
    assert loaded.optimizer.param_groups[0]["lr"] == pytest.approx(built.optimizer.param_groups[0]["lr"])
    assert loaded.checkpoint.epoch == 3
    assert loaded.checkpoint.extra == {"best_loss": 0.25, "note": "warm"}
    assert loaded.checkpoint.versions["torch"] == str(torch.__version__)
    assert loaded.spec.to_dict() == built.spec.to_dict()


def test_training_continues_identically_after_resume(tmp_path: Path) -> None:
    built = trained()
    save(built, tmp_path / "run.pt")
    resumed = load_checkpoint(tmp_path / "run.pt")
    x = torch.randn(8, 6)
    for b in (built, resumed):
        b.optimizer.zero_grad()
        b.model(x).pow(2).mean().backward()
        b.optimizer.step()
    for a, b in zip(built.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_shared_layer_stays_shared(tmp_path: Path) -> None:
    built = netspec.build(SHARED)
    save(built, tmp_path / "shared.pt")
    loaded = load_checkpoint(tmp_path / "shared.pt")
    assert list(loaded.model.state_dict()) == ["proj.weight", "proj.bias"]
    x = torch.randn(3, 4)
    torch.testing.assert_close(loaded.model(x), built.model(x))


def test_parameters_tied_after_build_are_tied_again(tmp_path: Path) -> None:
    spec = {
        "netspec": 1,
        "model": {
            "type": "Sequential",
            "layers": {
                "a": {"type": "Linear", "in_features": 4, "out_features": 4},
                "b": {"type": "Linear", "in_features": 4, "out_features": 4},
            },
        },
    }
    built = netspec.build(spec)
    built.model.b.weight = built.model.a.weight  # the usual embedding / head tying, done in user code
    save(built, tmp_path / "tied.pt")
    loaded = load_checkpoint(tmp_path / "tied.pt")
    assert loaded.model.b.weight is loaded.model.a.weight
    assert sum(p.numel() for p in loaded.model.parameters()) == sum(p.numel() for p in built.model.parameters())


def test_file_gets_umask_permissions(tmp_path: Path) -> None:
    built = netspec.build(SPEC)
    old = os.umask(0o027)
    try:
        path = save(built, tmp_path / "perm.pt")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_failed_save_leaves_no_file_and_keeps_the_old_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    built = netspec.build(SPEC)
    path = tmp_path / "run.pt"
    save(built, path, epoch=1)
    before = path.read_bytes()

    def broken(obj: Any, fh: Any, *args: Any, **kwargs: Any) -> None:
        fh.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(CheckpointError, match="disk full"):
        save(built, path, epoch=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no temporary file left behind


def test_extra_that_would_need_code_to_load_is_refused_at_save(tmp_path: Path) -> None:
    built = netspec.build(SPEC)
    with pytest.raises(CheckpointError, match=r"Fraction.*keep extra="):
        save(built, tmp_path / "run.pt", ratio=__import__("fractions").Fraction(1, 3))
    assert not (tmp_path / "run.pt").exists()


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        save(netspec.build(SPEC), tmp_path / "nope" / "run.pt")


def test_loading_passes_weights_only_explicitly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save(netspec.build(SPEC), tmp_path / "run.pt")
    seen: list[Any] = []
    real = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs.get("weights_only"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # must not turn the safe loader off
    load_checkpoint(tmp_path / "run.pt")
    load_state_dict_file(tmp_path / "run.pt")
    assert seen == [True, True]


def _tamper(path: Path, sentinel: Path) -> None:
    """Swap the pickle inside a real checkpoint for one whose GLOBAL opcode calls os.system."""
    payload = f"cos\nsystem\n(S'touch {sentinel}'\ntR.".encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as dst:
        for item in src.infolist():
            data = payload if item.filename.endswith("data.pkl") else src.read(item.filename)
            dst.writestr(item, data)
    path.write_bytes(buffer.getvalue())


def test_tampered_checkpoint_is_refused_without_running_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "run.pt"
    save(netspec.build(SPEC), path)
    sentinel = tmp_path / "pwned"
    _tamper(path, sentinel)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(CheckpointError, match=r"refusing to load .*run\.pt.*(posix|os)\.system"):
        load_checkpoint(path)
    assert not sentinel.exists()


def test_truncated_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    save(netspec.build(SPEC), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"run\.pt is truncated or corrupted"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x13\x07" + bytes(range(256)) * 4, r"junk\.pt is not a PyTorch checkpoint: it is neither a zip"),
        (b"", r"junk\.pt is empty"),
    ],
    ids=["random-bytes", "empty"],
)
def test_foreign_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_zip_that_is_not_torch(tmp_path: Path) -> None:
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(CheckpointError, match=r"archive\.pt is not a PyTorch checkpoint"):
        load_checkpoint(path)


def test_plain_state_dict_is_not_a_netspec_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(netspec.build(SPEC).model.state_dict(), path)
    with pytest.raises(CheckpointError, match=r"weights\.pth holds a plain state_dict.*--from-checkpoint"):
        load_checkpoint(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"file not found: .*gone\.pt"):
        load_checkpoint(tmp_path / "gone.pt")


def test_state_that_does_not_fit_the_spec_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    save(netspec.build(SPEC), path)
    payload = torch.load(path, weights_only=True)
    payload["model"]["fc3.weight"] = torch.zeros(2, 2)
    del payload["model"]["fc2.bias"]
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): fc2\.bias.*unexpected keys \(1\): fc3\.weight"):
        load_checkpoint(path)


def test_overrides_that_change_the_architecture_are_caught(tmp_path: Path) -> None:
    save(netspec.build(SPEC), tmp_path / "run.pt")
    with pytest.raises(CheckpointError, match=r"wrong shape.*fc1\.weight.*overrides"):
        load_checkpoint(tmp_path / "run.pt", overrides={"model.layers.fc1.out_features": 32})
    # Overrides that keep the shapes are fine (a different optimizer lr, for instance).
    built = load_checkpoint(tmp_path / "run.pt", overrides={"optimizer.lr": 0.5})
    assert built.spec.document.optimizer.lr == 0.5


def test_embedded_spec_is_validated_like_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    save(netspec.build(SPEC), path)
    payload = torch.load(path, weights_only=True)
    payload["spec"]["model"]["layers"]["fc1"]["out_featurs"] = 16
    torch.save(payload, path)
    with pytest.raises(SpecError, match=r"out_featurs.*embedded in .*run\.pt"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run.pt"
    save(netspec.build(SPEC), path)
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"format 99.*upgrade netspec"):
        load_checkpoint(path)


def test_is_checkpoint_path() -> None:
    paths = ("run.pt", "a/b.PTH", "x.ckpt", Path("model.bin"), "weights.safetensors")
    assert all(is_checkpoint_path(p) for p in paths)
    assert not any(is_checkpoint_path(p) for p in ("spec.yaml", "spec.json", "weights.npz"))


# -- plain weight files (--from-checkpoint) ----------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["plain", "state_dict", "model", "dataparallel", "netspec"])
def test_weight_files_in_the_usual_wrappings(tmp_path: Path, wrap: str) -> None:
    source = netspec.build(SPEC)
    state = source.model.state_dict()
    path = tmp_path / "w.pt"
    if wrap == "netspec":
        save(source, path)
    else:
        obj: Any = {
            "plain": state,
            "state_dict": {"state_dict": state, "epoch": 7},
            "model": {"model": state, "optimizer": {}},
            "dataparallel": {f"module.{k}": v for k, v in state.items()},
        }[wrap]
        torch.save(obj, path)
    target = netspec.build({**SPEC, "seed": 123}).model
    load_weights(target, path)
    for k, v in target.state_dict().items():
        assert torch.equal(v, state[k])


def test_weights_that_do_not_fit_name_the_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "other.pt"
    torch.save(nn.Linear(3, 3).state_dict(), path)
    with pytest.raises(
        CheckpointError,
        match=r"other\.pt does not match the model: missing keys \(9\).*unexpected keys \(2\): weight, bias",
    ):
        load_weights(netspec.build(SPEC).model, path)


def test_weight_file_without_tensors(tmp_path: Path) -> None:
    path = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(CheckpointError, match=r"meta\.pt holds a dict with keys 'epoch', 'lr', not a state_dict"):
        load_state_dict_file(path)


def test_optimizer_override_wins_over_the_resumed_state(tmp_path: Path) -> None:
    spec = {
        "netspec": 1,
        "model": {"type": "Linear", "in_features": 2, "out_features": 2},
        "optimizer": {"type": "SGD", "lr": 0.001, "momentum": 0.9},
    }
    path = tmp_path / "run.pt"
    netspec.save(netspec.build(spec), path)
    assert netspec.load(path).optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    resumed = netspec.load(path, overrides={"optimizer.lr": 0.5})
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(0.5)
    assert resumed.optimizer.param_groups[0]["momentum"] == pytest.approx(0.9)


def test_a_meta_model_is_not_saved(tmp_path: Path) -> None:
    built = netspec.build(
        {"netspec": 1, "model": {"type": "Linear", "in_features": 2, "out_features": 2}}, device="meta"
    )
    with pytest.raises(netspec.CheckpointError, match="built on the meta device"):
        netspec.save(built, tmp_path / "meta.pt")
    assert list(tmp_path.iterdir()) == []
