"""Checkpoints that rebuild without the user's code: ``save``, ``load_checkpoint`` and weight files.

``save(built, path, epoch=None, **extra)`` writes one ``torch.save`` file holding the spec (as
plain data), the model's state_dict, the optimizer's and scheduler's state_dicts, ``epoch``,
``extra``, which parameters are tied, and the versions that wrote it (netspec, torch, checkpoint
format). The file appears atomically — written to a temporary file in the same folder, flushed,
then renamed over ``path`` — so an error never leaves a half-written checkpoint, and it gets
the ordinary permissions the umask gives new files. A checkpoint ``load_checkpoint`` could not
read back (``extra`` holding arbitrary Python objects) is refused at save time.

``load_checkpoint(path)`` returns a complete ``netspec.Built``: the embedded spec goes through
the same validation as a spec file, the model is rebuilt from it, its state is loaded with
``strict=True`` (tied parameters re-tied first), and the optimizer and scheduler resume. Loading
never executes code from the file: ``torch.load`` is always called with ``weights_only=True``
(explicitly, whatever torch's default or environment says). Tampered, truncated and foreign
files raise ``CheckpointError`` naming the file and what was found.

``load_state_dict_file`` / ``load_weights`` read plain PyTorch weight files too (``{"state_dict":
...}`` and ``{"model": ...}`` wrappers, netspec checkpoints, a DataParallel ``module.`` prefix),
for ``netspec build SPEC --from-checkpoint FILE``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from ..errors import CheckpointError, SpecError
from .atomic import atomic_write

FORMAT = "netspec-checkpoint"
FORMAT_VERSION = 1
CHECKPOINT_SUFFIXES = frozenset({".pt", ".pth", ".ckpt", ".bin"})
_WRAPPERS = ("state_dict", "model_state_dict", "model")
_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")
_UNSUPPORTED = re.compile(r"(Unsupported [^\n]+)")


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says besides the weights; ``load_checkpoint`` sets it as ``built.checkpoint``."""

    path: str
    epoch: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)


def is_checkpoint_path(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a checkpoint (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) rather than a spec file."""
    return Path(os.fspath(path)).suffix.lower() in CHECKPOINT_SUFFIXES


# -- writing ----------------------------------------------------------------------------------------------


def tied_groups(model: nn.Module) -> list[list[str]]:
    """Names of parameters that are one tensor (``head.weight = embed.weight``), one list per tensor."""
    groups: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(param), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _unsafe_globals(path: Path) -> list[str]:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:  # torch < 2.5: read it back instead
        try:
            torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            return [_first_line(err)]
        return []
    return list(finder(path))


def save(built: Any, path: str | os.PathLike[str], epoch: int | None = None, **extra: Any) -> Path:
    """Write ``built`` (a ``netspec.Built``) to ``path``; ``extra`` holds tensors, numbers, strings, lists, dicts.

    Returns the path written. Raises ``CheckpointError`` when the folder does not exist or ``extra``
    holds something ``load_checkpoint`` could not read without executing code.
    """
    from ..version import __version__

    for attr in ("model", "spec", "optimizer", "scheduler"):
        if not hasattr(built, attr):
            raise CheckpointError(
                f"netspec.save expects what netspec.build returns (a Built), got {type(built).__name__}"
            )
    if epoch is not None and (not isinstance(epoch, int) or isinstance(epoch, bool)):
        raise CheckpointError(f"epoch must be an int or None, got {type(epoch).__name__} {epoch!r}")
    if any(t.is_meta for t in built.model.state_dict().values()):
        raise CheckpointError(
            "the model was built on the meta device: it has no weights to save; build it on a real device"
        )
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": {"netspec": str(__version__), "torch": str(torch.__version__), "format": FORMAT_VERSION},
        "spec": built.spec.to_dict(),
        "model": built.model.state_dict(),
        "tied": tied_groups(built.model),
        "optimizer": built.optimizer.state_dict() if built.optimizer is not None else None,
        "scheduler": built.scheduler.state_dict() if built.scheduler is not None else None,
        "epoch": epoch,
        "extra": dict(extra),
    }

    def write(fh: IO[bytes]) -> None:
        try:
            torch.save(payload, fh)
        except Exception as err:
            raise CheckpointError(f"cannot save checkpoint {path}: {_first_line(err)}") from err

    def verify(tmp: Path) -> None:
        unsafe = _unsafe_globals(tmp)
        if unsafe:
            raise CheckpointError(
                f"refusing to save checkpoint {path}: loading it would need Python objects, which netspec never "
                f"unpickles ({', '.join(unsafe[:5])}); keep extra= to tensors, numbers, strings, lists and dicts"
            )

    return atomic_write(path, write, verify, error=CheckpointError)


# -- reading ----------------------------------------------------------------------------------------------


def _all_lines(err: BaseException) -> str:
    return " ".join(line.strip() for line in str(err).strip().splitlines() if line.strip()) or type(err).__name__


def _overridden_hyperparameters(optimizer: Any, overrides: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Per param group, the values of the hyperparameters an ``optimizer.<name>`` override set (as built)."""
    names = {key.split(".", 2)[1] for key in overrides or {} if key.startswith("optimizer.") and key.count(".") == 1}
    if optimizer is None or not names:
        return []
    return [{k: group[k] for k in names if k in group} for group in optimizer.param_groups]


def _first_line(err: BaseException) -> str:
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def read_file(path: str | os.PathLike[str]) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, its failures turned into ``CheckpointError``."""
    file = Path(os.fspath(path)).expanduser()
    if not file.exists():
        raise CheckpointError(f"checkpoint file not found: {file}")
    if not file.is_file():
        raise CheckpointError(f"{file} is not a file")
    if file.stat().st_size == 0:
        raise CheckpointError(f"{file} is empty: not a checkpoint (was it written completely?)")
    with open(file, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # torch.save writes a zip archive (or, long ago, a pickle)
        raise CheckpointError(
            f"{file} is not a PyTorch checkpoint: it is neither a zip archive nor a pickle (it starts with {head!r})"
        )
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol")  # noise before our own error
            return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
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
        if "central directory" in text or isinstance(err, EOFError) or "unexpected EOF" in text:
            reason = _first_line(err).split(". ")[0]
            raise CheckpointError(f"{file} is truncated or corrupted ({reason}); write it again") from None
        raise CheckpointError(
            f"{file} is not a PyTorch checkpoint ({type(err).__name__}: {_first_line(err)[:160]})"
        ) from None


def _tensors_in(obj: Any) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping) and obj and all(isinstance(k, str) for k in obj):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
        return tensors or None
    return None


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        keys = ", ".join(repr(k) for k in list(obj)[:5])
        return f"a dict with keys {keys}" + (", ..." if len(obj) > 5 else "")
    return f"a {type(obj).__name__}"


def _state_from(obj: Any, file: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        obj = obj.get("model")
    elif isinstance(obj, Mapping):
        for key in _WRAPPERS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    tensors = _tensors_in(obj)
    if tensors is None:
        raise CheckpointError(
            f"{file} holds {_describe(obj)}, not a state_dict (parameter names -> tensors); expected a file "
            "written by torch.save(model.state_dict()), a {'state_dict': ...} wrapper or a netspec checkpoint"
        )
    return tensors


def load_state_dict_file(path: str | os.PathLike[str], strip_prefix: str | None = "module.") -> dict[str, torch.Tensor]:
    """The tensors of a weights file: a plain state_dict, a wrapper dict or a netspec checkpoint.

    Keys starting with ``strip_prefix`` lose it (``module.`` from ``nn.DataParallel``).
    """
    file = Path(os.fspath(path)).expanduser()
    state = _state_from(read_file(file), file)
    if strip_prefix:
        state = {(k[len(strip_prefix) :] if k.startswith(strip_prefix) else k): v for k, v in state.items()}
    return state


def _mismatch_report(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
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
    model: nn.Module, path: str | os.PathLike[str], *, strip_prefix: str | None = "module.", strict: bool = True
) -> dict[str, torch.Tensor]:
    """Load a weights file into ``model`` (strictly by default); ``CheckpointError`` lists what does not match."""
    file = Path(os.fspath(path)).expanduser()
    state = load_state_dict_file(file, strip_prefix)
    report = _mismatch_report(model, state)
    if report and strict:
        raise CheckpointError(f"{file} does not match the model: {report}")
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise CheckpointError(f"{file} does not match the model: {_first_line(err)}") from None
    return state


def _retie(model: nn.Module, groups: Any, file: Path) -> None:
    if not isinstance(groups, list):
        raise CheckpointError(f"{file}: 'tied' must be a list of name lists, got {type(groups).__name__}")
    params = dict(model.named_parameters(remove_duplicate=False))
    for names in groups:
        if not isinstance(names, list) or not all(isinstance(n, str) and n in params for n in names) or len(names) < 2:
            raise CheckpointError(f"{file}: tied parameter names {names!r} are not parameters of the rebuilt model")
        first = params[names[0]]
        for name in names[1:]:
            if params[name].shape != first.shape:
                raise CheckpointError(f"{file}: tied parameters {names[0]} and {name} have different shapes")
            owner_path, _, leaf = name.rpartition(".")
            owner = model.get_submodule(owner_path) if owner_path else model
            setattr(owner, leaf, first)


def _embedded_spec(payload: Mapping[str, Any], file: Path, overrides: Mapping[str, Any] | None) -> Any:
    from ..spec import read

    data = payload.get("spec")
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{file}: the checkpoint holds no spec (found {type(data).__name__})")
    data = dict(data)
    # Weights come from the checkpoint: init rules that read other files would only make it depend on them.
    if isinstance(data.get("init"), list):
        data["init"] = [r for r in data["init"] if not (isinstance(r, Mapping) and "from" in r)] or None
        if data["init"] is None:
            del data["init"]
    try:
        return read(data, overrides)
    except SpecError as err:
        where = f" (in the spec embedded in {file})"
        raise SpecError([dataclasses.replace(p, message=p.message + where) for p in err.problems]) from None


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """Rebuild the ``netspec.Built`` saved at ``path``: model (strict state), optimizer and scheduler resumed.

    ``built.checkpoint`` is a ``CheckpointInfo`` with the epoch, ``extra`` and versions. Raises
    ``CheckpointError`` for a file that is not a netspec checkpoint or whose state does not fit its
    spec, and ``SpecError`` when the embedded spec (with ``overrides``) is invalid.
    """
    from ..api import build

    file = Path(os.fspath(path)).expanduser()
    payload = read_file(file)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        if _tensors_in(payload) is not None or (
            isinstance(payload, Mapping) and any(_tensors_in(payload.get(k)) for k in _WRAPPERS)
        ):
            raise CheckpointError(
                f"{file} holds a plain state_dict, not a netspec checkpoint: there is no spec in it to rebuild "
                "the model from. Build the spec and load these weights with "
                "`netspec build SPEC --from-checkpoint FILE` (or an init: [{from: FILE}] rule)"
            )
        raise CheckpointError(f"{file} holds {_describe(payload)}, not a netspec checkpoint (written by netspec.save)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format {version!r}; this netspec reads format {FORMAT_VERSION} and older "
            "— upgrade netspec to load it"
        )
    spec = _embedded_spec(payload, file, overrides)
    built = build(spec, device=device, dtype=dtype)
    state = _tensors_in(payload.get("model"))
    if state is None and not isinstance(payload.get("model"), Mapping):
        raise CheckpointError(f"{file}: the checkpoint holds no model state_dict")
    _retie(built.model, payload.get("tied", []), file)
    report = _mismatch_report(built.model, state or {})
    if report:
        raise CheckpointError(
            f"{file}: the saved weights do not fit the model its spec builds: {report}"
            + (" (do the overrides change the architecture?)" if overrides else "")
        )
    try:
        built.model.load_state_dict(state or {}, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{file}: cannot load the model state: {_all_lines(err)}") from None
    # Resuming restores the saved hyperparameters too; an explicit override of one must win over them.
    overridden = _overridden_hyperparameters(built.optimizer, overrides)
    for what in ("optimizer", "scheduler"):
        saved = payload.get(what)
        target = getattr(built, what)
        if saved is None:
            continue
        if target is None:
            raise CheckpointError(f"{file} holds {what} state but the spec builds no {what}")
        try:
            target.load_state_dict(saved)
        except (ValueError, KeyError, RuntimeError, TypeError, IndexError) as err:
            raise CheckpointError(f"{file}: cannot resume the {what}: {_first_line(err)}") from None
    for group, values in zip(built.optimizer.param_groups if built.optimizer else [], overridden, strict=False):
        group.update(values)
    epoch = payload.get("epoch")
    extra = payload.get("extra")
    built.checkpoint = CheckpointInfo(  # type: ignore[attr-defined]
        str(file),
        epoch if isinstance(epoch, int) else None,
        dict(extra) if isinstance(extra, Mapping) else {},
        dict(payload.get("versions") or {}),
    )
    return built


__all__ = [
    "CHECKPOINT_SUFFIXES",
    "CheckpointInfo",
    "is_checkpoint_path",
    "load_checkpoint",
    "load_state_dict_file",
    "load_weights",
    "read_file",
    "save",
    "tied_groups",
]
