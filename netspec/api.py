"""The Python API: ``build``, ``load``, ``load_checkpoint`` and the ``Built`` result.

In: a spec (path, dict or ``Spec``; ``read`` is ``netspec.spec``'s), overrides, a device and
dtype — or a checkpoint file. Out: ``Built`` — the model with every weight allocated on
``device`` (bit-identical for a given ``seed``), its training set-up (optimizer, scheduler,
gradient clipping) and its loss module; from a checkpoint, with the saved state restored. The
memory a model needs is estimated on meta tensors and checked before anything is allocated.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from torch.optim.swa_utils import SWALR, AveragedModel

from .compiler.build import build_model
from .compiler.infer import infer
from .compiler.meta import DTYPES
from .compiler.shapes import SkipInit
from .errors import CheckpointError, NetspecError, Problem, SpecError, first_line
from .frontend.dtypes import FLOATING_DTYPES
from .io.checkpoint import CheckpointInfo, embedded_spec, is_checkpoint_path, read_checkpoint, restore, retie
from .spec import Spec, read
from .training import TrainingSetup, apply_training

DeviceArg = torch.device | str | None  # "cpu", "cuda:1", a torch.device, or None for the default
DtypeArg = torch.dtype | str | None  # "bfloat16", torch.float16, or None for the spec's own
Overrides = Mapping[str, Any] | None  # --set style: {"vars.width": 128}


@dataclass
class Built:
    """What a spec builds. Unpacks as ``model, optimizer, scheduler = built``."""

    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    scheduler: Any
    spec: Spec
    loss: nn.Module | None = None
    training: TrainingSetup | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    checkpoint: CheckpointInfo | None = None  # set by load_checkpoint: epoch, extra, versions
    notes: list[Problem] = field(default_factory=list)  # warnings of this build (an ignored distributed:)
    strategy: str | None = None  # "fsdp" or "ddp" when built under a process group

    @property
    def module(self) -> nn.Module:
        """The model itself: ``model`` without a ``DistributedDataParallel`` wrapper (keys without ``module.``)."""
        inner = getattr(self.model, "module", None)
        return inner if self.strategy == "ddp" and isinstance(inner, nn.Module) else self.model

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.optimizer, self.scheduler))

    def clip_gradients(self) -> float | None:
        """Apply the spec's ``clip_grad`` to the model's gradients; a no-op returning None without one."""
        if self.training is None:
            return None
        return self.training.clip_gradients(self.model)

    @property
    def warnings(self) -> list[Problem]:
        return [*self.spec.warnings, *self.notes]

    def restore_rng(self) -> None:
        """Put back the RNG states saved in the checkpoint this was loaded from (CPU, every CUDA device,
        Python's ``random``, NumPy's when it was saved and is imported), so a resumed run draws what the
        uninterrupted run would have drawn. ``NetspecError`` when there are none to restore."""
        from .io.rng import restore_rng_state

        info = self.checkpoint
        if info is None or info.rng is None:
            where = f"{info.path} holds no RNG state" if info is not None else "this was not loaded from a checkpoint"
            raise NetspecError(f"restore_rng: nothing to restore: {where} (netspec.save records them in .pt files)")
        restore_rng_state(info.rng)

    @property
    def averaged(self) -> AveragedModel | None:
        """The spec's ``average:`` copy of the model (a ``torch.optim.swa_utils.AveragedModel``), or None."""
        averager = self.training.averager if self.training is not None else None
        return None if averager is None else averager.averaged

    @property
    def swa_scheduler(self) -> SWALR | None:
        """For ``average: {type: swa}``, the ``SWALR`` scheduler to step instead of ``scheduler`` once SWA runs."""
        averager = self.training.averager if self.training is not None else None
        return None if averager is None else averager.scheduler

    def update_average(self) -> bool:
        """Call after each optimizer step (EMA) or epoch (SWA): fold the model into ``averaged``.

        Returns whether it averaged: always for ``ema``; for ``swa``, False for the first ``start``
        calls, then True (step ``swa_scheduler`` instead of ``scheduler`` from then on).
        Raises ``NetspecError`` when the spec has no ``average:`` section.
        """
        averager = self.training.averager if self.training is not None else None
        if averager is None:
            raise NetspecError("update_average(): the spec has no average: section (e.g. {type: ema, decay: 0.9999})")
        return averager.update(self.module)


def _resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """The weights' dtype: a floating type (an int64 model has no gradients), or ``None`` to keep float32."""
    if dtype is None:
        return None
    name = str(dtype).removeprefix("torch.") if isinstance(dtype, torch.dtype) else dtype
    if not isinstance(name, str) or name not in DTYPES:
        raise SpecError(Problem(f"unknown dtype {dtype!r}; expected one of {', '.join(FLOATING_DTYPES)}"))
    if name not in FLOATING_DTYPES:
        message = f"dtype {name} cannot hold trainable weights; expected one of {', '.join(FLOATING_DTYPES)}"
        raise SpecError(Problem(message, hint="the input's dtype is input.dtype in the spec"))
    return DTYPES[name]


def check_device(device: object) -> torch.device | None:
    """``device`` parsed and proven usable (``None`` stays ``None``), or ``NetspecError`` saying why not:
    a malformed name (``'nope'``), a backend this torch lacks (``'cuda'`` on a CPU build), a missing index."""
    if device is None:
        return None
    if not isinstance(device, (str, int, torch.device)) or isinstance(device, bool):
        raise NetspecError(f"device must be a torch.device or a name such as 'cpu' or 'cuda:0', got {device!r:.60}")
    try:
        parsed = torch.device(device)
        if parsed.type != "meta":
            torch.empty(0, device=parsed)
    except (RuntimeError, ValueError, AssertionError, TypeError) as err:
        # torch raises RuntimeError (bad string, backend missing), AssertionError ("Torch not compiled
        # with CUDA enabled"), ValueError/TypeError for malformed indices.
        raise NetspecError(f"device {device!r:.60} is not available: {first_line(err)[:200]}") from None
    return parsed


def _distributed(spec: Spec) -> tuple[Any, Any, list[Problem]]:
    """The ``distributed:`` section and this rank's context; both ``None`` (and one warning) without a group."""
    dspec = spec.document.distributed
    if dspec is None:
        return None, None, []
    notes = []
    unused = [k for k in ("shard", "mixed_precision", "reshard_after_forward") if k in dspec.model_fields_set]
    if dspec.strategy == "ddp" and unused:
        message = f"{', '.join(unused)} apply to strategy fsdp only; DDP replicates the whole model and ignores them"
        notes.append(spec.source.problem(("distributed", unused[0]), message, warning=True))
    from .distributed.context import current

    ctx = current()
    if ctx is None:
        message = (
            f"distributed: strategy {dspec.strategy} is ignored: no process group (a plain python run); "
            "the model is built on one device"
        )
        hint = "launch with torchrun --nproc-per-node N to shard or replicate it"
        return None, None, [spec.source.problem(("distributed",), message, hint=hint, warning=True)]
    return dspec, ctx, notes


def seed_fork() -> AbstractContextManager[None]:
    """``torch.random.fork_rng`` over the CPU and every visible device of the current accelerator."""
    accelerator = torch.accelerator.current_accelerator() if hasattr(torch, "accelerator") else None
    kind = accelerator.type if accelerator is not None else "cuda"
    module = torch.get_device_module(kind)
    count = module.device_count() if hasattr(module, "device_count") else 0
    return torch.random.fork_rng(devices=list(range(count)), device_type=kind)


def rng_devices(device: torch.device) -> tuple[list[int], str]:
    """The accelerator devices a build on ``device`` draws random numbers on, and their type, for
    ``torch.random.fork_rng(devices=..., device_type=...)`` (the CPU is always forked): ``cuda:3`` ->
    ``([3], "cuda")``, a bare ``cuda`` -> the current device (``cuda:LOCAL_RANK`` under torchrun),
    the CPU and meta -> none."""
    if device.type in ("cpu", "meta"):
        return [], "cuda"
    index = device.index if device.index is not None else torch.get_device_module(device.type).current_device()
    return [index], device.type


def device_fork(device: torch.device) -> AbstractContextManager[None]:
    """``torch.random.fork_rng`` over the CPU and the one device a build on ``device`` uses, so an
    unseeded build (whose init draws from the global streams) leaves the caller's streams as they were."""
    devices, kind = rng_devices(device)
    return torch.random.fork_rng(devices=devices, device_type=kind)


def build(
    spec: Spec | Mapping[str, Any] | str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    search_path: Sequence[str | os.PathLike[str]] | None = None,
) -> Built:
    """Build the model, optimizer, scheduler and loss a spec describes. ``device="meta"`` allocates nothing.

    ``search_path``: the folders ``extends`` and ``imports`` may read from (default: the spec's folder).

    ``device`` defaults to the CPU; under a process group with a ``distributed:`` section, to the
    rank's device (``cuda:LOCAL_RANK`` with NCCL, the CPU with gloo): FSDP builds on meta, shards,
    allocates each rank's shards and writes the values one process would make (same seed, same bits);
    DDP builds whole on every rank and wraps the model in ``DistributedDataParallel``."""
    device = check_device(device)  # before the spec is read: a bad argument costs nothing
    torch_dtype = _resolve_dtype(dtype)
    weights = _dtype_name(torch_dtype)
    return _build(read(spec, overrides, search_path=search_path, dtype=weights), device, torch_dtype)


def _dtype_name(dtype: torch.dtype | None) -> str:
    """The build dtype's name (``None`` builds in float32), the dtype ``read`` checks inputs against."""
    return "float32" if dtype is None else str(dtype).removeprefix("torch.")


def _build(
    spec: Spec,
    device: torch.device | None,
    torch_dtype: torch.dtype | None,
    *,
    prepare: Callable[[nn.Module], None] | None = None,
    keep_rng: bool = False,
) -> Built:
    """``build`` of a read spec (``device`` checked, ``dtype`` resolved); ``prepare(model)`` runs on the
    built model before the optimizer sees its parameters. ``keep_rng``: even without a seed, leave the
    caller's RNG streams (the CPU's and the build device's) as they were (loading a checkpoint must not
    draw from them)."""
    spec = read(spec, dtype=_dtype_name(torch_dtype))  # inputs checked against this dtype (no-op when they were)
    on_meta = device is not None and torch.device(device).type == "meta"
    dspec, ctx, notes = (None, None, []) if on_meta else _distributed(spec)
    if ctx is not None:
        if device is not None and torch.device(device) != ctx.device:
            message = f"under the process group this rank builds on {ctx.device}, not {device}"
            raise SpecError(Problem(message, ("distributed",), hint="leave device= unset under torchrun"))
        device = ctx.device
    device = torch.device("cpu" if device is None else device)
    fsdp = dspec is not None and dspec.strategy == "fsdp"
    seed = spec.document.seed
    if fsdp:
        from .distributed import materialize, prepare_fsdp

        model, unsharded = prepare_fsdp(spec, dspec, ctx, torch_dtype)  # checked, sharded, allocated, not filled
    # Seeding must not disturb the caller's global RNG streams. torch.manual_seed seeds the CPU and every
    # device of the accelerator (a seed queued for a CUDA not yet initialised included): fork them all.
    rng = seed_fork() if seed is not None else device_fork(device) if keep_rng else nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        if fsdp:
            materialize(spec, model, ctx, torch_dtype)  # the values one process makes, in the same RNG order
        else:
            # On meta there are no values to fill: nn.init's meta kernels only cost time (and import torch._dynamo).
            with SkipInit() if device.type == "meta" else nullcontext():
                model = build_model(spec.inferred, spec.source, device, torch_dtype)
        if prepare is not None:
            prepare(model)
        plan = spec.training_plan
        if fsdp and plan is not None:  # the average is made below from the unsharded copy (FSDP refuses deepcopy)
            plan = dataclasses.replace(plan, average=None)
        training = (
            apply_training(model, plan, source=spec.source, base_dir=spec.base_dir)
            if plan is not None
            else TrainingSetup()
        )
        if fsdp:
            from .distributed import shard_average

            training.averager = shard_average(spec, model, unsharded, training.optimizer, ctx)
    if dspec is not None and dspec.strategy == "ddp":
        from .distributed import wrap_ddp

        model = wrap_ddp(model, ctx, spec.source)
    loss = None
    if spec.resolved.loss is not None:
        loss_inferred = spec.inferred_loss or infer(spec.resolved.loss, spec.source, None)
        with device_fork(device) if keep_rng else nullcontext():
            loss = build_model(loss_inferred, spec.source, device, torch_dtype)
    strategy = None if dspec is None else dspec.strategy
    return Built(
        model, training.optimizer, training.scheduler, spec, loss, training, device, notes=notes, strategy=strategy
    )


def load(
    path: str | os.PathLike[str] | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    search_path: Sequence[str | os.PathLike[str]] | None = None,
) -> Built:
    """Read and build a spec file (or dict) in one call; a ``.pt``/``.pth``/``.ckpt``/``.bin`` or
    ``.safetensors`` path is a checkpoint written by ``netspec.save``: model, optimizer and scheduler are
    rebuilt and resumed (its embedded spec is self-contained, so ``search_path`` is not used)."""
    if isinstance(path, (str, os.PathLike)) and is_checkpoint_path(path):
        return load_checkpoint(path, device=device, dtype=dtype, overrides=overrides)
    if isinstance(path, (str, os.PathLike)):
        from .io.dcp import find_dcp

        if os.path.isdir(path) or find_dcp(path) is not None:  # netspec.save(built, DIR): a DCP directory
            return _load_dcp(path, device, dtype, overrides)
    return build(path, device=device, dtype=dtype, overrides=overrides, search_path=search_path)


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Built:
    """Rebuild the ``Built`` saved at ``path`` by ``netspec.save``: model (strict state), optimizer and
    scheduler resumed.

    The embedded spec goes through the same validation as a spec file; ``built.checkpoint`` is a
    ``CheckpointInfo`` with the epoch, ``extra`` and versions. Raises ``CheckpointError`` for a file
    that is not a netspec checkpoint or whose state does not fit its spec, and ``SpecError`` when the
    embedded spec (with ``overrides``) is invalid.
    """
    file, payload = read_checkpoint(path)
    try:
        # read_files=False: init: from: is dropped however written, and no file is read or even looked at.
        spec = read(embedded_spec(payload, file), overrides, read_files=False)
    except SpecError as err:
        where = f" (in the spec embedded in {file})"
        raise SpecError([dataclasses.replace(p, message=p.message + where) for p in err.problems]) from None
    saved_dtype = payload.get("dtype")
    if dtype is None and isinstance(saved_dtype, str) and saved_dtype in DTYPES:
        dtype = saved_dtype  # resume in the dtype it was saved in
    elif dtype is None and saved_dtype is not None:
        raise CheckpointError(
            f"{file} was saved with weights of dtype {saved_dtype!r}, which one build dtype cannot restore; "
            "pass dtype= to load_checkpoint to choose the one to resume in"
        )

    # Building draws from the global RNG (init functions, when the spec has no seed): the caller's
    # streams (the CPU's and the build device's) must come out as they went in (keep_rng).
    # built.restore_rng() is how a run asks for the saved ones. Parameters the saved model shared are
    # tied before the optimizer is built, so it holds the tied ones.
    def tie_saved(model: nn.Module) -> None:
        retie(model, payload.get("tied", []), file)

    built = _build(spec, check_device(device), _resolve_dtype(dtype), prepare=tie_saved, keep_rng=True)
    if built.strategy == "fsdp":
        raise CheckpointError(
            f"{file} is a single-file checkpoint and the spec shards the model with FSDP here; save it again to a "
            "directory (netspec.save(built, DIR)), which loads at any world size"
        )
    averager = built.training.averager if built.training is not None else None
    built.checkpoint = restore(
        built.module, built.optimizer, built.scheduler, payload, file, overrides, averager, spec.source.data
    )
    _note_hyperparameters(built)
    return built


def _note_hyperparameters(built: Built) -> None:
    """A warning naming the optimizer settings the spec (its overrides) changed on resume."""
    from .io.optim_state import hyperparameter_note

    info = built.checkpoint
    note = hyperparameter_note(info.hyperparameters) if info is not None else None
    if note is not None:
        built.notes.append(Problem(note, ("optimizer",), severity="warning"))


def _load_dcp(path: str | os.PathLike[str], device: DeviceArg, dtype: DtypeArg, overrides: Overrides) -> Built:
    """Rebuild and resume a checkpoint directory written by ``netspec.save(built, DIR)`` at this world
    size: sharded by FSDP under a process group, whole without one (``dcp.load`` reshards)."""
    from .io.dcp import read_dcp, restore_dcp

    folder, meta, interrupted = read_dcp(path)
    try:
        spec = read(embedded_spec(meta, folder), overrides)
    except SpecError as err:
        where = f" (in the spec embedded in {folder})"
        raise SpecError([dataclasses.replace(p, message=p.message + where) for p in err.problems]) from None
    built = _build(spec, check_device(device), _resolve_dtype(dtype), keep_rng=True)  # caller's RNG untouched
    averager = built.training.averager if built.training is not None else None
    built.checkpoint = restore_dcp(
        built.module, built.optimizer, built.scheduler, folder, meta, overrides, averager, spec.source.data
    )
    _note_hyperparameters(built)
    if interrupted:
        message = f"{path} is missing (a save was interrupted); resumed from the previous checkpoint {folder}"
        built.notes.append(Problem(message, severity="warning"))
    return built
