"""Pickle-free checkpoints: ``.safetensors`` files holding the weights and the embedded spec.

In: a ``Built`` and its embedded spec data (``save_safetensors``), or a file path
(``read_header``, ``read_safetensors``). Out: a ``.safetensors`` file (written atomically) whose
header metadata holds the merged spec, the versions, the fingerprint, the dtype, the tied
parameter groups and the epoch as JSON strings; and, reading it back, a payload shaped like the
one ``torch.save`` checkpoints hold, so ``load_checkpoint`` rebuilds either the same way.

Tied parameters are one tensor: the file stores it once, under the first name of its group,
and the other names are restored from ``tied`` on loading. The file holds weights only — no
optimizer, scheduler or RNG state (a ``.pt`` resumes training; a warning says so when the
optimizer had state). Nothing is ever unpickled: the header is JSON, the rest raw tensor bytes.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import CheckpointError
from ..frontend.fingerprint import fingerprint
from .atomic import atomic_write
from .payload import FORMAT, FORMAT_VERSION, model_dtype, parameter_count, tied_groups

_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def _json_extra(extra: Mapping[str, Any], path: Any) -> str:
    try:
        return json.dumps(dict(extra), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(
            f"cannot save {path}: extra= values of a .safetensors file must be JSON (numbers, strings, lists, "
            f"dicts): {err}"
        ) from None


def save_safetensors(
    built: Any,
    path: str | os.PathLike[str],
    spec: dict[str, Any],
    versions: dict[str, Any],
    epoch: int | None,
    extra: dict[str, Any],
) -> Path:
    """Write the weights of ``built.model`` and ``spec`` to a ``.safetensors`` file at ``path``."""
    from safetensors.torch import save as st_save

    model = built.model
    tied = tied_groups(model)
    aliases = {name for group in tied for name in group[1:]}
    state = model.state_dict()
    tensors = {k: v.detach().contiguous() for k, v in state.items() if k not in aliases}
    # Buffers (or parameters assigned by hand) may share storage without being tied; safetensors refuses
    # that, so give such a tensor its own copy — the values are the same, only the sharing is lost.
    seen: dict[tuple[int, int], str] = {}
    for key, tensor in list(tensors.items()):
        if tensor.numel() == 0:
            continue
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset())
        if ident in seen:
            tensors[key] = tensor.clone()
        seen.setdefault(ident, key)
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "spec": json.dumps(spec, ensure_ascii=False, allow_nan=False),
        "versions": json.dumps(versions),
        "fingerprint": fingerprint(spec),
        "dtype": json.dumps(model_dtype(model)),
        "parameters": str(parameter_count(model)),
        "tied": json.dumps(tied),
        "epoch": json.dumps(epoch),
        "extra": _json_extra(extra, path),
    }
    optimizer = built.optimizer
    if optimizer is not None and any(optimizer.state.values()):
        warnings.warn(
            f"{path}: a .safetensors file holds the weights and the spec only; the optimizer's state is not "
            "saved (save a .pt checkpoint to resume training)",
            stacklevel=3,
        )

    def write(fh: IO[bytes]) -> None:
        fh.write(st_save(tensors, metadata=metadata))

    return atomic_write(path, write, error=CheckpointError)


def read_header(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """The tensor entries (name -> dtype, shape, offsets) and the metadata of a ``.safetensors`` file,
    read from its JSON header alone (no tensor bytes)."""
    file = Path(os.fspath(path)).expanduser()
    if not file.is_file():
        raise CheckpointError(f"checkpoint file not found: {file}" if not file.exists() else f"{file} is not a file")
    size = file.stat().st_size
    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise CheckpointError(f"{file} is not a .safetensors file: it is {size} bytes long")
        (length,) = struct.unpack("<Q", head)
        if length > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{file} is not a .safetensors file (or is truncated): header length {length}")
        raw = fh.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{file}: the .safetensors header is not valid JSON ({err})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{file}: the .safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{file}: the .safetensors metadata must map strings to strings")
    return header, metadata


def _meta_json(metadata: Mapping[str, str], key: str, file: Path) -> Any:
    if key not in metadata:
        return None
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{file}: the metadata entry {key!r} is not valid JSON ({err})") from None


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The netspec metadata of a ``.safetensors`` file, decoded; ``CheckpointError`` if netspec did not write it."""
    file = Path(os.fspath(path)).expanduser()
    _, metadata = read_header(file)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is a .safetensors file without a netspec spec in its metadata: there is nothing to rebuild "
            "the model from. Build its spec and load the weights with an init: [{from: FILE}] rule"
        )
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        version = -1
    out: dict[str, Any] = {"format": FORMAT, "format_version": version}
    for key in ("spec", "versions", "dtype", "tied", "epoch", "extra"):
        out[key] = _meta_json(metadata, key, file)
    out["fingerprint"] = metadata.get("fingerprint")
    out["parameters"] = int(metadata["parameters"]) if metadata.get("parameters", "").isdigit() else None
    return out


def read_safetensors(path: str | os.PathLike[str], *, tensors: bool = True) -> dict[str, Any]:
    """A payload like a ``.pt`` checkpoint's (``model`` holds every name, tied ones too; no optimizer state).

    ``tensors=False`` reads the header only: ``model`` then maps each name to a meta tensor of its shape."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    file = Path(os.fspath(path)).expanduser()
    payload = read_metadata(file)
    state: dict[str, torch.Tensor]
    if not tensors:
        header, _ = read_header(file)
        state = {k: torch.empty(v.get("shape", []), device="meta") for k, v in header.items() if isinstance(v, dict)}
    else:
        try:
            state = load_file(str(file), device="cpu")
        except (SafetensorError, OSError, RuntimeError) as err:
            raise CheckpointError(f"{file} is truncated or corrupted: {err}") from None
    tied = payload.get("tied") or []
    for group in tied if isinstance(tied, list) else []:
        if isinstance(group, list) and group and all(isinstance(n, str) for n in group) and group[0] in state:
            for name in group[1:]:
                state[name] = state[group[0]]
    payload.update(model=state, optimizer=None, scheduler=None, rng=None)
    return payload


__all__ = ["read_header", "read_metadata", "read_safetensors", "save_safetensors"]
