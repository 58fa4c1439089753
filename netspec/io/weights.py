"""The one weights reader: a file on disk -> a state_dict (parameter names -> tensors).

In: a path. Out: its tensors, read with ``torch.load(path, map_location="cpu",
weights_only=True)`` — so a file can never run code — from any of the layouts PyTorch code
writes: a plain ``state_dict``; a dict holding it under ``"state_dict"``, ``"model_state_dict"``
(the PyTorch tutorials' training checkpoint) or ``"model"`` (netspec checkpoints, many
training scripts); with the ``module.`` prefix ``nn.DataParallel`` adds, stripped. Missing,
empty, truncated, tampered and foreign files raise ``CheckpointError`` naming the file and
what was found. ``netspec build --from-checkpoint`` and ``init: [{from: ...}]`` both read
through here, so a file one accepts the other accepts too.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from ..errors import CheckpointError, first_line
from ..frontend.source import file_kind

WRAPPERS = ("state_dict", "model_state_dict", "model")  # tried in this order
DATA_PARALLEL_PREFIX = "module."
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNSUPPORTED = re.compile(r"(Unsupported [^\n]+)")
# What torch.load raises for a file it cannot read: bad pickles, bad zips, short reads, refused globals.
LOAD_ERRORS = (
    pickle.UnpicklingError,
    zipfile.BadZipFile,
    EOFError,
    RuntimeError,
    ValueError,
    TypeError,
    OSError,
    KeyError,
    IndexError,
    AttributeError,
)


# torch.save stores every record uncompressed, so the records of a real checkpoint add up to about its
# size on disk. A tampered archive with deflated records could inflate 1000-fold (3.9 MB -> 4.2 GB):
# the sizes its central directory declares are checked before torch reads anything.
MAX_INFLATION = 2
INFLATION_SLACK = 16 * 1024 * 1024


def _check_inflated_size(fh: IO[bytes], size: int, file: Path) -> None:
    try:
        infos = zipfile.ZipFile(fh).infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{file} is truncated or corrupted ({first_line(err)}); write it again") from None
    total = sum(info.file_size for info in infos)
    if total > MAX_INFLATION * size + INFLATION_SLACK:
        biggest = max(infos, key=lambda info: info.file_size)
        raise CheckpointError(
            f"refusing to load {file}: its records would inflate to {total:,} bytes from {size:,} on disk "
            f"({biggest.filename!r} alone to {biggest.file_size:,}); torch.save stores records uncompressed, "
            "so this file was not written by torch.save or was tampered with"
        )


def read_file(path: str | os.PathLike[str], *, mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, its failures turned into ``CheckpointError``.

    ``mmap=True`` maps the tensors' bytes instead of reading them (``netspec show`` of a checkpoint)."""
    file = Path(os.fspath(path)).expanduser()
    try:
        # O_NONBLOCK: a FIFO must not hang the read; fstat then refuses anything but a regular file.
        fd = os.open(file, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise CheckpointError(f"file not found: {file}") from None
    except OSError as err:
        raise CheckpointError(f"cannot read {file}: {err.strerror}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CheckpointError(f"{file} is not a file: it is {file_kind(info.st_mode)}")
    with os.fdopen(fd, "rb") as fh:
        size = info.st_size
        if size == 0:
            raise CheckpointError(f"{file} is empty: not a checkpoint (was it written completely?)")
        head = fh.read(4)
        if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip archive (or, long ago, a pickle)
            raise CheckpointError(
                f"{file} is not a PyTorch checkpoint: it is neither a zip archive nor a pickle "
                f"(it starts with {head!r})"
            )
        if head == b"PK\x03\x04":
            _check_inflated_size(fh, size, file)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Detected pickle protocol")  # noise before our own error
                fh.seek(0)
                if mmap:  # torch maps a file by name; it was checked to be a regular file above
                    return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
                return torch.load(fh, map_location="cpu", weights_only=True)
        except LOAD_ERRORS as err:
            text = str(err)
            if "Weights only load failed" in text or "weights_only" in text:
                found = _GLOBAL.search(text)
                detail = _UNSUPPORTED.search(text)
                if found:
                    what = f"it asks to run Python code ({found.group(1)}) while loading"
                else:
                    what = "it holds pickled Python objects" + (f" ({detail.group(1).strip()})" if detail else "")
                raise CheckpointError(
                    f"refusing to load {file}: {what}. netspec loads checkpoints with weights_only=True and never "
                    "executes code from a file; this is not a checkpoint netspec wrote, or it was tampered with"
                ) from None
            # A cut-off zip fails in the reader's seek (OSError EINVAL) or while looking for its directory.
            if "central directory" in text or isinstance(err, (EOFError, OSError)) or "unexpected EOF" in text:
                reason = first_line(err).split(". ")[0]
                raise CheckpointError(f"{file} is truncated or corrupted ({reason}); write it again") from None
            raise CheckpointError(
                f"{file} is not a PyTorch checkpoint ({type(err).__name__}: {first_line(err)[:160]})"
            ) from None


def tensors_in(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensor entries of a state_dict-like mapping (string keys), or ``None`` when it has none."""
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) for k in obj):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        return tensors or None
    return None


def holds_weights(obj: Any) -> bool:
    """Whether ``obj`` is a state_dict, or a dict wrapping one under a known key."""
    return tensors_in(obj) is not None or (isinstance(obj, Mapping) and any(tensors_in(obj.get(k)) for k in WRAPPERS))


def describe(obj: Any) -> str:
    """``a dict with keys 'epoch', 'lr'`` / ``a list``: what a file held, for messages."""
    if isinstance(obj, Mapping):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a dict with keys {keys}" + (", ..." if len(obj) > 5 else "")
    return f"a {type(obj).__name__}"


def state_dict_in(obj: Any, file: Path) -> dict[str, torch.Tensor]:
    """The state_dict inside what ``read_file`` returned, unwrapping the known layouts."""
    if isinstance(obj, Mapping):
        for key in WRAPPERS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    tensors = tensors_in(obj)
    if tensors is None:
        raise CheckpointError(
            f"{file} holds {describe(obj)}, not a state_dict (parameter names -> tensors); expected a file "
            "written by torch.save(model.state_dict()), a {'state_dict': ...}, {'model_state_dict': ...} or "
            "{'model': ...} wrapper, or a netspec checkpoint"
        )
    return tensors


def load_state_dict_file(
    path: str | os.PathLike[str], strip_prefix: str | None = DATA_PARALLEL_PREFIX
) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state_dict, a wrapper dict or a netspec checkpoint.

    Keys starting with ``strip_prefix`` lose it (``module.`` from ``nn.DataParallel``).
    """
    file = Path(os.fspath(path)).expanduser()
    state = state_dict_in(read_file(file), file)
    if strip_prefix:
        state = {k.removeprefix(strip_prefix): v for k, v in state.items()}
    return state


def mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """Missing, unexpected and wrongly shaped keys of ``state`` against ``model``; ``None`` when it fits."""
    own = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [
        f"{k} {list(state[k].shape)} vs {list(own[k])}" for k in own if k in state and tuple(state[k].shape) != own[k]
    ]
    if not (missing or unexpected or shaped):
        return None
    parts = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", shaped)):
        if names:
            shown = ", ".join(names[:5]) + (f", ... ({len(names) - 5} more)" if len(names) > 5 else "")
            parts.append(f"{label} keys ({len(names)}): {shown}")
    return "; ".join(parts)


def load_weights(
    model: nn.Module,
    path: str | os.PathLike[str],
    *,
    strip_prefix: str | None = DATA_PARALLEL_PREFIX,
    strict: bool = True,
) -> dict[str, torch.Tensor]:
    """Load a weights file into ``model`` (strictly by default); ``CheckpointError`` lists what does not match."""
    file = Path(os.fspath(path)).expanduser()
    state = load_state_dict_file(file, strip_prefix)
    report = mismatch_report(model, state)
    if report and strict:
        raise CheckpointError(f"{file} does not match the model: {report}")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(f"{file} does not match the model: {first_line(err)}") from None
    return state


__all__ = [
    "WRAPPERS",
    "describe",
    "holds_weights",
    "load_state_dict_file",
    "load_weights",
    "mismatch_report",
    "read_file",
    "state_dict_in",
    "tensors_in",
]
