"""netspec checkpoints: the file format, ``save``, and putting a checkpoint's state back.

``save(built, path, epoch=None, **extra)`` writes one ``torch.save`` file holding the spec (as
plain data), the model's state_dict, the optimizer's and scheduler's state_dicts, ``epoch``,
``extra``, which parameters are tied, the ``average:`` copy (EMA / SWA) and the versions that
wrote it (netspec, torch, checkpoint format). The file appears atomically — written to a
temporary file in the same folder, flushed, then renamed over ``path`` — so an error never
leaves a half-written checkpoint, and it gets the ordinary permissions the umask gives new
files. A checkpoint that could not be read back (``extra`` holding arbitrary Python objects)
is refused at save time.

Reading: ``read_checkpoint`` (file -> payload, through the one weights reader ``io.weights``,
so never executing code), ``embedded_spec`` (payload -> spec data) and ``restore`` (payload ->
state of a model rebuilt from that spec, optimizer and scheduler resumed, tied parameters
re-tied). ``netspec.load_checkpoint`` (in ``api``, which can build) chains the three.

Besides the weights, a ``.pt`` checkpoint records the model's dtype, the fingerprint of its
embedded spec and the RNG states at save time (``io.rng``; ``built.restore_rng()`` puts them
back). A ``.safetensors`` path writes a pickle-free weights file instead (``io.safetensors_file``).
The embedded spec is the merged, self-contained spec minus its ``init: from:`` rules (their
weights are in the file); on reading, an embedded spec that names any other file (``init:
from:``, ``extends``, ``imports``) is refused.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn as nn

from ..errors import CheckpointError, Problem, SpecError, all_lines, first_line
from ..frontend.compose import refuse_composition
from ..frontend.fingerprint import fingerprint
from .atomic import atomic_write
from .dcp import save_dcp
from .optim_state import (
    apply_spec_hyperparameters,
    changed_hyperparameters,
    check_optimizer_state,
    check_scheduler_state,
    fill_missing_group_keys,
)
from .payload import (
    CHECKPOINT_SUFFIXES,
    FORMAT,
    FORMAT_VERSION,
    CheckpointInfo,
    embedded_spec_data,
    is_checkpoint_path,
    is_directory_path,
    model_dtype,
    parameter_count,
    tied_groups,
)
from .rng import capture_rng_state
from .safetensors_file import read_safetensors, save_safetensors
from .weights import describe, holds_weights, mismatch_report, read_file, tensors_in

# -- writing ----------------------------------------------------------------------------------------------


def _unsafe_globals(path: Path) -> list[str]:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:  # torch < 2.5: read it back instead
        try:
            read_file(path)
        except CheckpointError as err:
            return [first_line(err)]
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
    strategy = getattr(built, "strategy", None)
    if is_directory_path(path):  # a directory: torch.distributed.checkpoint, resumable at any world size
        return save_dcp(built, path, epoch, dict(extra))
    if strategy == "fsdp":
        raise CheckpointError(
            f"cannot save {path}: the model is sharded by FSDP; save to a directory (no file suffix), which "
            "writes a torch.distributed.checkpoint that loads at any world size"
        )
    model = getattr(built, "module", built.model)  # DDP: the wrapped model, keys without "module."
    if any(t.is_meta for t in model.state_dict().values()):
        raise CheckpointError(
            "the model was built on the meta device: it has no weights to save; build it on a real device"
        )
    spec = embedded_spec_data(built.spec)
    versions = {"netspec": str(__version__), "torch": str(torch.__version__), "format": FORMAT_VERSION}
    if Path(os.fspath(path)).suffix.lower() == ".safetensors":
        return save_safetensors(built, path, spec, versions, epoch, dict(extra))
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "versions": versions,
        "spec": spec,
        "fingerprint": fingerprint(spec),
        "dtype": model_dtype(model),
        "parameters": parameter_count(model),
        "rng": capture_rng_state(),
        "model": model.state_dict(),
        "tied": tied_groups(model),
        "optimizer": built.optimizer.state_dict() if built.optimizer is not None else None,
        "scheduler": built.scheduler.state_dict() if built.scheduler is not None else None,
        "average": _averager_state(built),
        "epoch": epoch,
        "extra": dict(extra),
    }

    def write(fh: IO[bytes]) -> None:
        try:
            torch.save(payload, fh)
        except (pickle.PicklingError, TypeError, AttributeError, RuntimeError, ValueError, OSError) as err:
            raise CheckpointError(f"cannot save checkpoint {path}: {first_line(err)}") from err

    def verify(tmp: Path) -> None:
        unsafe = _unsafe_globals(tmp)
        if unsafe:
            raise CheckpointError(
                f"refusing to save checkpoint {path}: loading it would need Python objects, which netspec never "
                f"unpickles ({', '.join(unsafe[:5])}); keep extra= to tensors, numbers, strings, lists and dicts"
            )

    if strategy == "ddp":  # every rank holds the same state: rank 0 writes, the others wait for the file
        import torch.distributed as dist

        written = Path(os.fspath(path)).expanduser()
        if dist.get_rank() == 0:
            written = atomic_write(path, write, verify, error=CheckpointError)
        dist.barrier()
        return written
    return atomic_write(path, write, verify, error=CheckpointError)


def _averager_state(built: Any) -> dict[str, Any] | None:
    """The ``average:`` copy (weights, ``n_averaged``, update count, SWALR state), or None."""
    averager = getattr(getattr(built, "training", None), "averager", None)
    return None if averager is None else averager.state_dict()


def _saved_state(payload: Mapping[str, Any], what: str, target: Any, file: Path) -> Mapping[str, Any] | None:
    """The saved state of ``what`` (optimizer, scheduler, average), None when the file holds none;
    ``CheckpointError`` when the spec builds no ``target`` for it or it is not a mapping."""
    saved = payload.get(what)
    if saved is None:
        return None
    if target is None:
        raise CheckpointError(f"{file} holds {what} state but the spec builds no {what}")
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{file}: the {what} state is a {type(saved).__name__}, not a state_dict")
    return saved


def _resume_average(averager: Any, payload: Mapping[str, Any], file: Path) -> None:
    """Put the saved ``average:`` copy back into the rebuilt one (``training.average.Averager``)."""
    saved = _saved_state(payload, "average", averager, file)
    if saved is None:
        return
    try:
        averager.load_state_dict(saved)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{file}: cannot resume the averaged model: {first_line(err)}") from None


# -- reading ----------------------------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike[str], *, mmap: bool = False) -> tuple[Path, Mapping[str, Any]]:
    """The file and payload of a netspec checkpoint; ``CheckpointError`` for anything else.

    A plain weights file is refused with a pointer to ``--from-checkpoint``: it holds no spec
    to rebuild the model from.
    """
    file = Path(os.fspath(path)).expanduser()
    if file.suffix.lower() == ".safetensors":
        payload: Any = read_safetensors(file, tensors=not mmap)
    else:
        payload = read_file(file, mmap=mmap)
    if not isinstance(payload, Mapping) or payload.get("format") != FORMAT:
        if holds_weights(payload):
            raise CheckpointError(
                f"{file} holds a plain state_dict, not a netspec checkpoint: there is no spec in it to rebuild "
                "the model from. Build the spec and load these weights with "
                "`netspec build SPEC --from-checkpoint FILE` (or an init: [{from: FILE}] rule)"
            )
        raise CheckpointError(f"{file} holds {describe(payload)}, not a netspec checkpoint (written by netspec.save)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has checkpoint format {version!r}; this netspec reads format {FORMAT_VERSION} and older "
            "— upgrade netspec to load it"
        )
    return file, payload


@dataclass(frozen=True)
class CheckpointSummary:
    """What ``inspect_checkpoint`` tells about a checkpoint without building its model or reading its tensors."""

    path: str
    kind: str  # "pt" or "safetensors"
    spec: dict[str, Any]
    epoch: int | None
    versions: dict[str, Any]
    fingerprint: str | None
    dtype: str | None
    parameters: int | None  # elements of the parameters, tied ones once; None when the file does not say
    weights: dict[str, tuple[int, ...]]  # state_dict key -> shape

    def metadata(self) -> dict[str, Any]:
        """Everything but the spec and the weight shapes, JSON-ready."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("spec", "weights")}
        return {**fields, "tensors": len(self.weights)}


def _text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return value if isinstance(value, str) else None


def inspect_checkpoint(path: str | os.PathLike[str]) -> CheckpointSummary:
    """The embedded spec (not validated here) and metadata of a checkpoint; tensors are mapped, not read."""
    file, payload = read_checkpoint(path, mmap=True)
    spec = embedded_spec(payload, file)
    state = payload.get("model")
    weights = {
        k: tuple(v.shape) for k, v in (state.items() if isinstance(state, Mapping) else ()) if hasattr(v, "shape")
    }
    epoch, params = payload.get("epoch"), payload.get("parameters")
    return CheckpointSummary(
        str(file),
        "safetensors" if file.suffix.lower() == ".safetensors" else "pt",
        spec,
        epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        dict(payload["versions"]) if isinstance(payload.get("versions"), Mapping) else {},
        _text(payload, "fingerprint"),
        _text(payload, "dtype"),
        params if isinstance(params, int) and not isinstance(params, bool) else None,
        weights,
    )


def embedded_spec(payload: Mapping[str, Any], file: Path) -> dict[str, Any]:
    """The spec a checkpoint holds, as plain data. It must stand alone: ``SpecError`` when it names another
    file (``extends``, ``imports``, ``init: from:`` — ``save`` drops the last, the weights being in the file)."""
    data = payload.get("spec")
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{file}: the checkpoint holds no spec (found {type(data).__name__})")
    data = dict(data)
    problems = refuse_composition(data, "a checkpoint's spec")
    init = data.get("init")
    for i, rule in enumerate(init if isinstance(init, list) else []):
        if isinstance(rule, Mapping) and "from" in rule:
            message = "init: from: is not allowed in a checkpoint's spec: it reads no other file"
            problems.append(Problem(message, ("init", i, "from"), hint="the weights are in the checkpoint itself"))
    if problems:
        raise SpecError(problems)
    return data


def retie(model: nn.Module, groups: Any, file: Path) -> None:
    """Make the parameters each name list of ``groups`` (a checkpoint's ``tied``) one tensor again."""
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


def restore(
    model: nn.Module,
    optimizer: Any,
    scheduler: Any,
    payload: Mapping[str, Any],
    file: Path,
    overrides: Mapping[str, Any] | None = None,
    averager: Any = None,
    spec_data: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Put a checkpoint's state into a model rebuilt from its spec: tied parameters re-tied, the
    state loaded strictly, optimizer and scheduler resumed, the ``average:`` copy (``averager``)
    resumed. ``spec_data``: the spec resumed with (overrides applied); where its ``optimizer:``
    section differs from the embedded one, its values win over the saved ones (reported in
    ``CheckpointInfo.hyperparameters``). Returns what else the checkpoint says."""
    state = tensors_in(payload.get("model"))
    if state is None and not isinstance(payload.get("model"), Mapping):
        raise CheckpointError(f"{file}: the checkpoint holds no model state_dict")
    retie(model, payload.get("tied", []), file)  # a no-op when load_checkpoint tied them before the optimizer
    report = mismatch_report(model, state or {})
    if report:
        raise CheckpointError(
            f"{file}: the saved weights do not fit the model its spec builds: {report}"
            + (" (do the overrides change the architecture?)" if overrides else "")
        )
    try:
        model.load_state_dict(state or {}, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{file}: cannot load the model state: {all_lines(err)}") from None
    # Resuming restores the saved hyperparameters too; a setting the spec changed since must win over them.
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups] if optimizer else []
    for what, target in (("optimizer", optimizer), ("scheduler", scheduler)):
        saved = _saved_state(payload, what, target, file)
        if saved is None:
            continue
        # Checked against the freshly built one first: torch would load a string lr or a wrongly shaped
        # momentum buffer and fail (or train wrongly) at the first step.
        fresh_groups = [{k: v for k, v in g.items() if k != "params"} for g in getattr(target, "param_groups", [])]
        if what == "optimizer":
            check_optimizer_state(saved, target, file)
        else:
            check_scheduler_state(saved, target, file)
        try:
            target.load_state_dict(saved)
        except (ValueError, KeyError, RuntimeError, TypeError, IndexError, AttributeError) as err:
            raise CheckpointError(f"{file}: cannot resume the {what}: {first_line(err)}") from None
        if what == "optimizer":
            fill_missing_group_keys(target, fresh_groups)
    _resume_average(averager, payload, file)
    changed = changed_hyperparameters(payload.get("spec"), spec_data) if spec_data is not None else set()
    report = apply_spec_hyperparameters(optimizer, fresh, changed) if optimizer is not None else {}
    epoch = payload.get("epoch")
    extra = payload.get("extra")
    return CheckpointInfo(
        str(file),
        epoch if isinstance(epoch, int) else None,
        dict(extra) if isinstance(extra, Mapping) else {},
        dict(payload["versions"]) if isinstance(payload.get("versions"), Mapping) else {},
        payload.get("dtype") if isinstance(payload.get("dtype"), str) else None,
        payload.get("fingerprint") if isinstance(payload.get("fingerprint"), str) else None,
        payload.get("rng") if isinstance(payload.get("rng"), Mapping) else None,
        report,
    )


__all__ = [
    "CHECKPOINT_SUFFIXES",
    "FORMAT",
    "CheckpointInfo",
    "CheckpointSummary",
    "embedded_spec",
    "embedded_spec_data",
    "inspect_checkpoint",
    "is_checkpoint_path",
    "is_directory_path",
    "model_dtype",
    "parameter_count",
    "read_checkpoint",
    "restore",
    "retie",
    "save",
    "tied_groups",
]
