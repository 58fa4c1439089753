"""``netspec.Spec``: a validated spec, and its text forms.

In: a file path, text or dict (plus ``--set`` overrides). Out: a ``Spec`` that has been
through every check short of allocating weights — structure (pydantic), resolution (vars,
blocks, repeats) and inference on meta tensors — and that writes itself back out as
YAML, JSON or a dict exactly as written (``${...}`` kept, not expanded).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem, ProblemList, SpecError, did_you_mean
from .frontend import exprs
from .frontend.compose import compose
from .frontend.fingerprint import fingerprint
from .frontend.models import SpecModel, validate_spec
from .frontend.source import Source, apply_overrides, from_data, gc_paused, load_file
from .frontend.substitute import VAR_SECTIONS, Substitution
from .frontend.yamlout import dump_yaml

if TYPE_CHECKING:
    from .compiler.infer import Inferred
    from .compiler.resolve import Resolved
    from .training import TrainingPlan

# The compiler (and with it torch) is imported only once the document has passed the front end:
# `netspec validate` of a file with a YAML or structural error never imports torch.

# The sections that need the model to be checked (``setup_training`` on a meta model).
TRAINING_SECTIONS = ("init", "freeze", "optimizer", "scheduler", "tie", "eval", "checkpoint_activations", "average")


class Spec:
    """A parsed and validated spec (``netspec.read``); ``netspec.build`` turns it into modules."""

    def __init__(self, source: Source, document: SpecModel, resolved: Resolved, inferred: Inferred) -> None:
        self.source = source
        self.document = document
        self.resolved = resolved
        self.inferred = inferred
        self.inferred_loss: Inferred | None = None  # the loss section, inferred at validation (build reuses it)
        self.training_warnings: list[Problem] = []
        self.reads_files = True  # False for a checkpoint's embedded spec: init: from: is refused unread
        self.weights_dtype = "float32"  # the build dtype its inputs were checked against (build's dtype=)
        # The training sections resolved against the model's names (None without any): made once, here.
        self.training_plan: TrainingPlan | None = None
        self.emit_warnings: list[Any] = []  # set by netspec.emit: what it could not express (lint.ModelWarning)

    @property
    def name(self) -> str:
        if self.document.name:
            return self.document.name
        stem = Path(self.source.filename).stem
        return stem if not stem.startswith("<") else "model"

    @property
    def warnings(self) -> list[Any]:
        return [*self.resolved.warnings, *self.inferred.warnings, *self.training_warnings]

    @property
    def base_dir(self) -> Path | None:
        """Relative paths in the spec (``init: from:``) are relative to the spec file's folder.

        ``None`` for a spec that may read no files (one embedded in a checkpoint).
        """
        if not self.reads_files:
            return None
        path = Path(self.source.filename)
        return path.parent if path.exists() else Path.cwd()

    @property
    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical form of the merged spec; see ``frontend.fingerprint``."""
        return fingerprint(self.source.data)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(self.source.data)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.source.data, indent=indent, ensure_ascii=False) + "\n"

    def to_yaml(self) -> str:
        return dump_yaml(self.source.data)

    def __repr__(self) -> str:
        return f"Spec(name={self.name!r}, file={self.source.filename!r})"


def _substitute_sections(data: dict[str, Any], substitution: Substitution) -> dict[str, Any]:
    """The top-level sections with their ``${...}`` substituted (vars only: no block or repeat scope)."""
    out = dict(data)
    for key in VAR_SECTIONS:
        if key in out and exprs.has_refs(out[key]):
            out[key] = substitution.at(out[key], substitution.vars, (key,))
    return out


def _check_var_overrides(source: Source, overrides: Mapping[str, Any]) -> None:
    """``--set vars.widht=3`` would add a var nothing uses and change nothing: refuse it by name."""
    known = source.data.get("vars") if isinstance(source.data, dict) else None
    known = known if isinstance(known, Mapping) else {}
    problems = []
    for key in overrides:
        parts = key.split(".")
        if parts[0] == "vars" and len(parts) >= 2 and parts[1] not in known:
            hint = did_you_mean(parts[1], known) or ("the spec's vars are " + ", ".join(known) if known else None)
            shown = key if len(key) <= 60 else key[:57] + "..."
            problems.append(source.problem(("vars",), f"--set {shown}: the spec has no var {parts[1]!r}", hint=hint))
    if problems:
        raise SpecError(problems)


def validate_source(source: Source, *, read_files: bool = True, dtype: str = "float32") -> Spec:
    """Stages 2-4 on an already loaded source; raises ``SpecError`` listing every problem.

    ``dtype`` is the floating dtype the model will be built in: every layer's input is checked
    against it, and an ``input`` without ``dtype:`` is taken to be of it.

    ``read_files=False`` (a checkpoint's embedded spec) refuses every ``init: from:`` rule, however it
    was written (after ``${}`` substitution and validation), without looking at the file.
    """
    problems = ProblemList()
    data = source.data
    substitution = None
    if isinstance(data, dict):
        substitution = Substitution(data.get("vars", {}), source, problems)
        problems.raise_if_errors()  # a bad var, reported at its own line, would only cascade
        data = _substitute_sections(data, substitution)
    substituted = Source(data, source.filename, source.text, source.positions)
    document, found = validate_spec(substituted)
    problems.extend(found)
    problems.raise_if_errors()
    if document is None:  # validate_spec reports a problem whenever it returns no document
        raise RuntimeError("spec validation returned neither a document nor a problem")
    from .compiler.infer import infer
    from .compiler.resolve import resolve
    from .training import check_training

    if not read_files:  # however it was written (${} included): refused unread, the same for every path
        for i, rule in enumerate(document.init or []):
            if rule.from_ is not None:
                message = "init: from: is not allowed in a checkpoint's spec: it reads no other file"
                problems.add(source.problem(("init", i, "from"), message, hint="the weights are in the checkpoint"))
        problems.raise_if_errors()
    try:
        resolved = resolve(document, source, substitution)
        shape, input_dtype = _input_shape(document, source, dtype)
        inferred = infer(resolved.root, source, shape, input_dtype, weights_dtype=dtype)
        # The loss is built by `build` from this same inference: what validation accepts, build accepts.
        inferred_loss = infer(resolved.loss, source, None) if resolved.loss is not None else None
    except SpecError as err:
        # The model is broken, but training sections can still be checked on their own (names and
        # arguments of init functions, optimizers, schedulers): report those problems now too.
        extra = check_training(
            init=document.init,
            optimizer=document.optimizer,
            scheduler=document.scheduler,
            source=source,
        )
        raise SpecError([*err.problems, *(p for p in extra if p.severity == "error")]) from None
    spec = Spec(source, document, resolved, inferred)
    spec.inferred_loss = inferred_loss
    spec.reads_files = read_files
    spec.weights_dtype = dtype
    if any(getattr(document, key) is not None for key in TRAINING_SECTIONS):
        spec.training_plan, spec.training_warnings = _plan_training(spec)
    return spec


def _input_shape(document: SpecModel, source: Source, weights: str) -> tuple[tuple[int, ...] | None, str]:
    """The per-sample input shape and dtype; an input without ``dtype:`` has the weights' dtype."""
    from .compiler.resolve import MAX_ELEMENTS

    if document.input is None:
        return None, weights
    dims = list(document.input.shape)
    if any(not isinstance(d, int) or isinstance(d, bool) or d <= 0 for d in dims):
        raise SpecError(source.problem(("input", "shape"), f"input.shape needs positive integers, got {dims}"))
    if math.prod(dims) > MAX_ELEMENTS:
        message = f"input.shape {dims} has {math.prod(dims):,} elements per sample; the limit is {MAX_ELEMENTS:,}"
        raise SpecError(source.problem(("input", "shape"), message))
    return tuple(dims), document.input.dtype if "dtype" in document.input.model_fields_set else weights


def _plan_training(spec: Spec) -> tuple[TrainingPlan, list[Problem]]:
    """Plan the training set-up once, against the real parameter names, and carry it out on a
    throwaway meta model so every argument is checked without allocating anything. ``build``
    applies the same plan to the real model. Returns the plan and the set-up's warnings."""
    import torch

    from .compiler.build import build_model
    from .compiler.shapes import SkipInit
    from .training import TrainingSections, plan_and_setup

    with SkipInit():
        meta = build_model(spec.inferred, spec.source, torch.device("meta"), None)
    sections = TrainingSections(**training_sections(spec))
    plan, setup = plan_and_setup(meta, sections, source=spec.source, base_dir=spec.base_dir)
    return plan, list(setup.warnings)


def training_sections(spec: Spec) -> dict[str, Any]:
    """The document's training sections as ``setup_training`` keyword arguments."""
    return {key: getattr(spec.document, key) for key in TRAINING_SECTIONS}


def load_source(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    search_path: Sequence[str | os.PathLike[str]] | None = None,
) -> Source:
    """Stage 1 for a file or dict: parsed, then ``extends``/``imports`` merged in (no validation yet)."""
    if not isinstance(spec, (Mapping, str, os.PathLike)):
        message = f"a spec is a file path, a mapping or a netspec.Spec, got {type(spec).__name__}"
        raise SpecError(Problem(message, hint="netspec.read('spec.yaml') or netspec.read({'netspec': 1, ...})"))
    with gc_paused():
        source = from_data(spec) if isinstance(spec, Mapping) else load_file(spec)
        return compose(source, search_path)


def read(
    spec: str | os.PathLike[str] | Mapping[str, Any] | Spec,
    overrides: Mapping[str, Any] | None = None,
    *,
    search_path: Sequence[str | os.PathLike[str]] | None = None,
    read_files: bool = True,
    dtype: str | None = None,
) -> Spec:
    """Parse and validate a spec file (YAML/JSON), a dict, or re-validate a ``Spec`` with overrides.

    ``extends`` and ``imports`` are merged first, reading files only from ``search_path`` (default:
    the spec's folder; the working directory for a dict); ``overrides`` apply after merging.
    ``read_files=False`` for a spec from an untrusted place (a checkpoint): ``init: from:`` is
    refused unread, however it is written. ``dtype``: the floating dtype the model will be built in
    (``build``'s ``dtype=``; default float32): each layer's input dtype is checked against it."""
    if isinstance(spec, Spec):
        read_files = read_files and spec.reads_files
        dtype = dtype or spec.weights_dtype
        if not overrides and read_files == spec.reads_files and dtype == spec.weights_dtype:
            return spec
        return read_source(spec.source, overrides, read_files=read_files, dtype=dtype)
    with gc_paused():  # one pause for the whole read: loading, composing and validating
        return read_source(load_source(spec, search_path), overrides, copy=False, read_files=read_files, dtype=dtype)


def read_source(
    source: Source,
    overrides: Mapping[str, Any] | None = None,
    *,
    copy: bool = True,
    read_files: bool = True,
    dtype: str | None = None,
) -> Spec:
    """Validate a loaded (and composed) source with ``overrides`` applied to a copy of it (``copy=False``:
    to the source itself). ``netspec sweep`` composes once and validates each point with this."""
    if overrides:
        if copy:
            source = source.copy()
        _check_var_overrides(source, overrides)
        apply_overrides(source, overrides)
    with gc_paused():  # the pipeline allocates many small, acyclic objects; cyclic GC passes only cost time
        return validate_source(source, read_files=read_files, dtype=dtype or "float32")
