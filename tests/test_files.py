"""Files netspec reads and writes: only regular files, never a device, FIFO, folder or link; nothing half-written.

The atomic writer refuses a target that is not a regular file (``-o /dev/null`` as root used to replace
the device node), the spec itself, and an empty name; its temporary file goes away on SIGINT and
SIGTERM. A spec path and an ``init: from:`` file must be regular files (a FIFO used to hang forever).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import ROOT, folder_state

import netspec
from netspec.io.atomic import atomic_write, check_target

Cli = Callable[..., tuple[int, str, str]]

SPEC = """\
netspec: 1
input: {shape: [4]}
model: {type: Linear, in_features: 4, out_features: 2}
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC)
    return path


def _special(tmp_path: Path, kind: str) -> Path:
    """A non-regular file of ``kind`` in ``tmp_path``; skips when this system cannot make one."""
    path = tmp_path / f"target-{kind}.pt"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "symlink":
        (tmp_path / "elsewhere.pt").write_bytes(b"keep")
        path.symlink_to(tmp_path / "elsewhere.pt")
    elif kind == "device":
        try:  # a private copy of /dev/null's node: the real one is never put at risk
            os.mknod(path, 0o666 | 0o020000, os.makedev(1, 3))
        except (PermissionError, AttributeError, OSError):
            pytest.skip("cannot create a device node here")
    return path


KIND_WORDS = {
    "fifo": "a FIFO (named pipe)",
    "folder": "a folder",
    "symlink": "a symbolic link",
    "device": "a character device",
}


def test_dev_null_is_refused_without_being_touched() -> None:
    before = os.lstat("/dev/null")
    with pytest.raises(netspec.NetspecError, match=r"refusing to write /dev/null: it is a character device"):
        check_target("/dev/null")
    after = os.lstat("/dev/null")
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev, before.st_ino)


@pytest.mark.parametrize("kind", sorted(KIND_WORDS))
def test_build_output_that_is_not_a_regular_file_is_refused(cli: Cli, spec: Path, tmp_path: Path, kind: str) -> None:
    target = _special(tmp_path, kind)
    mode_before = os.lstat(target).st_mode
    state = folder_state(tmp_path)
    code, out, err = cli("build", spec, "-o", target)
    assert code == 1 and out == ""
    assert f"refusing to write {target}: it is {KIND_WORDS[kind]}, not a regular file" in err
    assert os.lstat(target).st_mode == mode_before, "the target must be left exactly as it was"
    assert folder_state(tmp_path) == state
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    if kind == "symlink":
        assert (tmp_path / "elsewhere.pt").read_bytes() == b"keep"


@pytest.mark.parametrize("kind", ["fifo", "folder", "symlink"])
def test_every_writer_refuses_a_special_target(tmp_path: Path, kind: str) -> None:
    target = _special(tmp_path, kind)
    state = folder_state(tmp_path)
    with pytest.raises(netspec.NetspecError, match=re.escape(f"it is {KIND_WORDS[kind]}")):
        atomic_write(target, lambda fh: fh.write(b"x"))
    built = netspec.build({"netspec": 1, "model": {"type": "Linear", "in_features": 2, "out_features": 1}})
    with pytest.raises(netspec.CheckpointError, match=re.escape(f"it is {KIND_WORDS[kind]}")):
        netspec.save(built, target)
    assert folder_state(tmp_path) == state


def test_schema_and_emit_refuse_a_fifo(cli: Cli, tmp_path: Path) -> None:
    target = _special(tmp_path, "fifo")
    code, out, err = cli("schema", "-o", target)
    assert code == 1 and out == "" and "it is a FIFO (named pipe), not a regular file" in err
    code, out, err = cli("emit", "torch.nn:Linear", "--args", '{"in_features": 2, "out_features": 1}', "-o", target)
    assert code == 1 and out == "" and "it is a FIFO (named pipe), not a regular file" in err


def test_output_naming_the_spec_itself_is_refused(cli: Cli, spec: Path, tmp_path: Path) -> None:
    state = folder_state(tmp_path)
    code, out, err = cli("build", spec, "-o", spec)
    assert code == 1 and out == ""
    assert f"refusing to write {spec}: it is the input {spec} itself" in err
    assert spec.read_text() == SPEC and folder_state(tmp_path) == state
    # Another name for the same file (a hard link) is the same file.
    alias = tmp_path / "alias.yaml"
    os.link(spec, alias)
    code, _, err = cli("build", spec, "-o", alias)
    assert code == 1 and "is the input" in err and spec.read_text() == SPEC


def test_empty_output_name_is_an_error(cli: Cli, spec: Path, tmp_path: Path) -> None:
    state = folder_state(tmp_path)
    for argv in (("build", spec, "-o", ""), ("schema", "-o", "")):
        code, out, err = cli(*argv)
        assert code == 1 and out == "", argv
        assert "the output file name is empty" in err
    assert folder_state(tmp_path) == state


def test_regular_output_is_still_replaced(cli: Cli, spec: Path, tmp_path: Path) -> None:
    out_file = tmp_path / "w.pt"
    out_file.write_bytes(b"old")
    code, _, _ = cli("build", spec, "-o", out_file)
    assert code == 0
    assert set(torch.load(out_file, weights_only=True)) == {"weight", "bias"}


_SLOW_WRITER = """
import sys, time
from netspec.io.atomic import atomic_write

def write(fh):
    fh.write(b"partial")
    fh.flush()
    print("writing", flush=True)
    time.sleep(60)

atomic_write(sys.argv[1], write)
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_temporary_file_is_removed_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    target = tmp_path / "out.pt"
    target.write_bytes(b"old")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SLOW_WRITER), str(target)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir()), "the write is under way"
        proc.send_signal(sig)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert proc.returncode == 143
    assert [p.name for p in tmp_path.iterdir()] == ["out.pt"], "no temporary file may be left behind"
    assert target.read_bytes() == b"old"


# -- reading: specs and init: from: files must be regular files -----------------------------------------


def test_fifo_as_spec_is_refused_at_once(cli: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "spec.yaml"
    os.mkfifo(fifo)
    start = time.perf_counter()
    code, out, err = cli("validate", fifo)
    assert time.perf_counter() - start < 5, "opening a FIFO must not wait for a writer"
    assert code == 1 and out == ""
    assert f"{fifo}: a spec must be a regular file, not a FIFO (named pipe)" in err
    with pytest.raises(netspec.SpecError, match="not a FIFO"):
        netspec.read(fifo)


def test_folder_as_spec_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "spec.yaml"
    folder.mkdir()
    with pytest.raises(netspec.SpecError, match=r"spec\.yaml: a spec must be a regular file, not a folder"):
        netspec.read(folder)


def test_symlink_to_a_spec_is_read(tmp_path: Path, spec: Path) -> None:
    link = tmp_path / "link.yaml"
    link.symlink_to(spec)
    assert netspec.read(link).document.model is not None


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_init_from_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    target = _special(tmp_path, kind)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC + f"init:\n  - from: {target.name}\n")
    state = folder_state(tmp_path)
    start = time.perf_counter()
    with pytest.raises(netspec.SpecError) as info:
        netspec.build(spec)
    assert time.perf_counter() - start < 10
    text = str(info.value)
    assert f"{spec}:5:" in text and "init.0.from" in text and "is not a file" in text
    assert folder_state(tmp_path) == state


# -- a checkpoint's embedded spec reads no files ----------------------------------------------------------


def _tampered(tmp_path: Path, init: object, extra_vars: dict[str, object] | None = None) -> Path:
    spec = {"netspec": 1, "seed": 0, "model": {"type": "Linear", "in_features": 2, "out_features": 1}}
    built = netspec.build(spec)
    path = tmp_path / "ck.pt"
    netspec.save(built, path)
    payload = torch.load(path, weights_only=True)
    payload["spec"]["init"] = init
    if extra_vars:
        payload["spec"]["vars"] = extra_vars
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("form", ["list", "substituted", "quoted-key"])
def test_embedded_spec_never_reads_init_from_files(tmp_path: Path, form: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import netspec.training.load as load_module

    def no_reading(path: Path, *args: object) -> None:
        raise AssertionError(f"the embedded spec read {path}")

    monkeypatch.setattr(load_module, "load_state_dict_file", no_reading)
    real = tmp_path / "real.pt"
    torch.save({"weight": torch.full((1, 2), 7.0), "bias": torch.full((1,), 7.0)}, real)
    messages = []
    for target in (real, tmp_path / "missing.pt"):
        if form == "list":
            path = _tampered(tmp_path, [{"from": str(target)}])
        elif form == "substituted":
            path = _tampered(tmp_path, "${rules}", {"rules": [{"from": str(target)}]})
        else:
            path = _tampered(tmp_path, [{"from": str(target), "match": "*"}])
        with pytest.raises(netspec.SpecError) as info:
            netspec.load(path)
        text = str(info.value)
        assert "init.0.from: init: from: is not allowed in a checkpoint's spec: it reads no other file" in text
        messages.append(text.replace(str(target), "X"))
    # The same answer whether the named file exists or not: nothing about the filesystem leaks.
    assert messages[0] == messages[1]
    assert "not found" not in messages[0] and "real.pt" not in messages[0]


def test_checkpoint_records_that_would_inflate_are_refused_before_reading(tmp_path: Path) -> None:
    import zipfile

    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("archive/data.pkl", b"\0" * (64 * 1024 * 1024))  # 64 MiB of zeros: ~64 KiB on disk
    size = path.stat().st_size
    assert size < 1024 * 1024
    with pytest.raises(netspec.CheckpointError) as info:
        netspec.load(path)
    message = str(info.value)
    assert f"refusing to load {path}: its records would inflate to 67,108,864 bytes from {size:,} on disk" in message
    assert "'archive/data.pkl' alone" in message
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC + "init:\n  - from: bomb.pt\n")
    with pytest.raises(netspec.SpecError, match="would inflate"):
        netspec.build(spec)


def test_fifo_as_checkpoint_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "ck.pt"
    os.mkfifo(fifo)
    with pytest.raises(netspec.CheckpointError, match=re.escape(f"{fifo} is not a file: it is a FIFO (named pipe)")):
        netspec.load(fifo)
