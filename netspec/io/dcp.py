"""Sharded checkpoints: ``torch.distributed.checkpoint`` (DCP) directories that resume at any world size.

``save_dcp(built, DIR, epoch, extra)`` writes, collectively on every rank (or alone without a
process group): the model's and optimizer's state through ``get_model_state_dict`` /
``get_optimizer_state_dict`` (each rank writes its own shards), plus ``netspec.pt`` — the merged
spec, the scheduler's state, the epoch, ``extra`` and versions — written by rank 0 once the
shards are complete. Everything goes into a sibling ``.DIR.partial`` first; only then is the
old ``DIR`` moved to ``.DIR.previous``, the new one renamed into place and the previous one
removed. A crash at any point leaves ``DIR`` (or, between the two renames, ``.DIR.previous``)
as the last complete checkpoint, and ``read_dcp`` finds it.

``read_dcp(DIR)`` gives the metadata (the API rebuilds the model from its spec — sharded by FSDP
under a process group, plain without one) and ``restore_dcp`` reads the shards that model
needs with ``dcp.load``, which reshards:
a checkpoint written at world size 2 loads at 1 (no process group), 2 or 4, and one written
at 1 loads at 2. The optimizer and scheduler resume; ``built.checkpoint`` gives the epoch.
"""

from __future__ import annotations

import os
import shutil
import stat
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch

from ..errors import CheckpointError, first_line
from ..frontend.fingerprint import fingerprint
from ..frontend.source import file_kind
from .atomic import atomic_write
from .optim_state import apply_spec_hyperparameters, changed_hyperparameters
from .payload import FORMAT, FORMAT_VERSION, CheckpointInfo, embedded_spec_data, tied_groups
from .weights import read_file

META_FILE = "netspec.pt"
DCP_MARKER = ".metadata"  # written by torch.distributed.checkpoint when every shard is in place


def _rank() -> tuple[int, bool]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), True
    return 0, False


def _barrier(grouped: bool) -> None:
    if grouped:
        import torch.distributed as dist

        dist.barrier()


def _siblings(target: Path) -> tuple[Path, Path]:
    return target.parent / f".{target.name}.partial", target.parent / f".{target.name}.previous"


def is_dcp_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a complete directory written by ``save_dcp``."""
    folder = Path(os.fspath(path)).expanduser()
    return folder.is_dir() and (folder / META_FILE).is_file() and (folder / DCP_MARKER).is_file()


def _states(built: Any) -> dict[str, Any]:
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    model = built.module
    states: dict[str, Any] = {"model": get_model_state_dict(model)}
    optimizer = built.optimizer
    # get_optimizer_state_dict fills an empty state with a zero-lr step; a never-stepped optimizer has
    # nothing to save, and taking a step for it would change the run being saved.
    if optimizer is not None and optimizer.state:
        states["optimizer"] = get_optimizer_state_dict(model, optimizer)
    averager = getattr(getattr(built, "training", None), "averager", None)
    if averager is not None:  # average: its weights (sharded like the model's), n_averaged, calls, SWALR state
        states["average"] = averager.state_dict()
    return states


def save_dcp(built: Any, path: str | os.PathLike[str], epoch: int | None, extra: dict[str, Any]) -> Path:
    """Write a DCP directory at ``path`` (collective under a process group). Returns the path."""
    import torch.distributed.checkpoint as dcp

    from ..version import __version__

    target = Path(os.fspath(path)).expanduser()
    partial, previous = _siblings(target)
    rank, grouped = _rank()
    if not target.parent.is_dir():
        raise CheckpointError(f"cannot write {target}: folder {target.parent} does not exist")
    try:
        mode: int | None = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and (not stat.S_ISDIR(mode) or not is_dcp_checkpoint(target)):
        # lstat: a symbolic link is named as one, never followed; a FIFO or device is never replaced
        what = "a folder that is not a netspec checkpoint" if stat.S_ISDIR(mode) else file_kind(mode)
        raise CheckpointError(f"refusing to save to {target}: it is {what}; choose a new directory name")
    if any(t.is_meta for t in built.module.state_dict().values()):
        raise CheckpointError("the model was built on the meta device: it has no weights to save")
    if rank == 0:
        shutil.rmtree(partial, ignore_errors=True)  # left by a save that crashed
        partial.mkdir()
    _barrier(grouped)
    states = _states(built)
    try:
        with _single_process_quiet():
            dcp.save(states, checkpoint_id=str(partial))
    except Exception as err:  # DCP wraps every rank's failure in its own exception types
        raise CheckpointError(f"cannot save checkpoint {target}: {first_line(err)}") from err
    if rank == 0:
        spec = embedded_spec_data(built.spec)
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "layout": "dcp",
            "versions": {"netspec": str(__version__), "torch": str(torch.__version__), "format": FORMAT_VERSION},
            "spec": spec,
            "fingerprint": fingerprint(spec),
            "tied": tied_groups(built.module),
            "optimizer": "optimizer" in states,
            "average": "average" in states,
            "scheduler": built.scheduler.state_dict() if built.scheduler is not None else None,
            "epoch": epoch,
            "extra": dict(extra),
            "world_size": _world(),
            "strategy": built.strategy,
        }

        def write(fh: IO[bytes]) -> None:
            torch.save(meta, fh)

        atomic_write(partial / META_FILE, write, error=CheckpointError)
        if target.exists():
            shutil.rmtree(previous, ignore_errors=True)
            os.replace(target, previous)  # from here until the next rename, .previous is the good one
        os.replace(partial, target)
        shutil.rmtree(previous, ignore_errors=True)
        _fsync_dir(target.parent)
    _barrier(grouped)
    return target


@contextmanager
def _single_process_quiet() -> Iterator[None]:
    """DCP warns that it "assumes a single process" whenever there is no process group: that is the intent."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def _world() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def find_dcp(path: str | os.PathLike[str]) -> tuple[Path, bool] | None:
    """The directory to load for ``path`` and whether it is the previous one (an interrupted save)."""
    target = Path(os.fspath(path)).expanduser()
    if is_dcp_checkpoint(target):
        return target, False
    _, previous = _siblings(target)
    if not target.exists() and is_dcp_checkpoint(previous):
        return previous, True
    return None


def read_dcp(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any], bool]:
    """The folder to load for ``path``, its ``netspec.pt`` metadata, and whether it is the previous
    checkpoint of an interrupted save. ``CheckpointError`` for anything else."""
    found = find_dcp(path)
    if found is None:
        raise CheckpointError(f"{path} is not a netspec checkpoint directory (no {META_FILE} and {DCP_MARKER})")
    folder, interrupted = found
    meta = read_file(folder / META_FILE)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("layout") != "dcp":
        raise CheckpointError(f"{folder / META_FILE} is not the metadata of a netspec DCP checkpoint")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{folder} has checkpoint format {version!r}; this netspec reads {FORMAT_VERSION}")
    return folder, meta, interrupted


def restore_dcp(
    model: torch.nn.Module,
    optimizer: Any,
    scheduler: Any,
    folder: Path,
    meta: dict[str, Any],
    overrides: Any,
    averager: Any = None,
    spec_data: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Read the shards ``model`` (sharded or not), ``optimizer`` and the ``average:`` copy need from
    ``folder``; resume the scheduler. ``set_optimizer_state_dict`` restores the saved param groups
    (``lr``, ``weight_decay``, ...) like ``Optimizer.load_state_dict``: where ``spec_data`` (the spec
    resumed with) changes the embedded ``optimizer:`` section, its freshly built values are put back."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    states: dict[str, Any] = {"model": get_model_state_dict(model)}
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups] if optimizer else []
    if meta.get("optimizer"):
        if optimizer is None:
            raise CheckpointError(f"{folder} holds optimizer state but the spec builds no optimizer")
        states["optimizer"] = get_optimizer_state_dict(model, optimizer)
    if meta.get("average"):
        if averager is None:
            raise CheckpointError(f"{folder} holds an average: copy but the spec has no average: section")
        states["average"] = averager.state_dict()
    try:
        with _single_process_quiet():
            dcp.load(states, checkpoint_id=str(folder))
        set_model_state_dict(model, states["model"], options=StateDictOptions(strict=True))
        if "optimizer" in states:
            set_optimizer_state_dict(model, optimizer, states["optimizer"])
        if "average" in states:
            averager.load_state_dict(states["average"])
    except Exception as err:  # DCP reports missing keys and shape mismatches in its own exception types
        raise CheckpointError(
            f"{folder}: the saved state does not fit the model its spec builds: {first_line(err)}"
            + (" (do the overrides change the architecture?)" if overrides else "")
        ) from err
    saved = meta.get("scheduler")
    if saved is not None:
        if scheduler is None:
            raise CheckpointError(f"{folder} holds scheduler state but the spec builds no scheduler")
        scheduler.load_state_dict(saved)
    changed = changed_hyperparameters(meta.get("spec"), spec_data) if spec_data is not None else set()
    report = apply_spec_hyperparameters(optimizer, fresh, changed) if optimizer is not None else {}
    epoch = meta.get("epoch")
    return CheckpointInfo(
        str(folder),
        epoch if isinstance(epoch, int) else None,
        dict(meta.get("extra") or {}),
        dict(meta.get("versions") or {}),
        fingerprint=meta.get("fingerprint") if isinstance(meta.get("fingerprint"), str) else None,
        hyperparameters=report,
    )
