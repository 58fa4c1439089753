"""``init: [{from: file.pt, ...}]``: copy tensors from a checkpoint into a model.

In: one ``from:`` rule (file path relative to the spec's directory, optional ``match``,
``strip_prefix``, ``skip_mismatched``, ``strict``) and the model. Out: a ``LoadReport`` of
loaded / missing / unexpected / shape-mismatched names, with the tensors copied into the
model, or ``Problem``s (missing file, not a checkpoint, nothing loaded, shape mismatch).

Files are read by the one weights reader, ``io.weights`` (``weights_only=True``, so a file can
never run code): every layout ``netspec build --from-checkpoint`` accepts is accepted here —
a raw ``state_dict``, ``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}``,
a netspec checkpoint — and a DataParallel ``module.`` prefix is stripped unless the rule gives
its own ``strip_prefix``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError, ProblemList
from ..frontend.training_models import InitRule
from ..io.weights import DATA_PARALLEL_PREFIX, load_state_dict_file
from .kwargs import make_problem, name_list
from .patterns import no_match, select
from .sharded import write_full

CHECKPOINT_HINT = (
    "from: takes a file written by torch.save(model.state_dict(), path), or a checkpoint dict "
    "with a 'state_dict', 'model_state_dict' or 'model' entry"
)


@dataclass
class LoadReport:
    """What one ``from:`` rule did. Names are the model's (after ``strip_prefix``)."""

    rule: int
    file: str
    location: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        """One line: ``pretrained.pt: loaded 12, missing 2, unexpected 0, shape-mismatched 1``."""
        return (
            f"{self.file}: loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched (skipped) {len(self.mismatched)}"
        )


def _prefix_hint(file_keys: list[str], model_keys: list[str]) -> str:
    """Suggest a ``strip_prefix`` when file keys look like ``<prefix><model key>``."""
    for fk in file_keys:
        for mk in model_keys:
            if fk.endswith("." + mk) and fk != mk:
                prefix = fk[: len(fk) - len(mk)]
                return f"the file's names look like {fk!r}; add strip_prefix: {prefix!r}"
    return f"the file's names look like {file_keys[0]!r}; the model's like {model_keys[0]!r}"


def load_rule(
    model: nn.Module,
    rule: InitRule,
    index: int,
    *,
    source: Any,
    base_dir: Path | None,
    location: str,
    problems: ProblemList,
) -> LoadReport | None:
    """Apply one ``from:`` rule; ``None`` (with problems added) when it cannot be applied."""
    path = ("init", index)
    if base_dir is None:  # e.g. a checkpoint's embedded spec: touch no file, not even to see if it exists
        message = "init: from: cannot read files here: this spec's weights come from its checkpoint"
        problems.add(make_problem(source, (*path, "from"), message, "remove the from: rule"))
        return None
    raw = str(rule.from_)
    file = Path(raw).expanduser()
    if not file.is_absolute():
        file = Path(base_dir) / file
    prefix = rule.strip_prefix
    try:
        # The rule's own strip_prefix replaces the default DataParallel one (and is checked below).
        tensors = load_state_dict_file(file, None if prefix else DATA_PARALLEL_PREFIX)
    except CheckpointError as err:
        hint = "from: paths are relative to the spec's folder" if not file.exists() else CHECKPOINT_HINT
        problems.add(make_problem(source, (*path, "from"), str(err), hint))
        return None

    if prefix:
        if not any(k.startswith(prefix) for k in tensors):
            example = next(iter(tensors))
            message = f"strip_prefix {prefix!r} starts none of the file's names (e.g. {example!r})"
            problems.add(make_problem(source, (*path, "strip_prefix"), message, "remove or correct it"))
            return None
        tensors = {(k.removeprefix(prefix)): v for k, v in tensors.items()}

    targets = model.state_dict(keep_vars=True)
    file_keys = list(tensors)
    model_keys = list(targets)
    if rule.match is not None:
        file_keys = select(rule.match, file_keys)
        model_keys = select(rule.match, model_keys)
        if not file_keys and not model_keys:
            message, hint = no_match(rule.match, [*targets, *tensors], "model or checkpoint")
            problems.add(make_problem(source, (*path, "match"), message, hint))
            return None

    report = LoadReport(rule=index, file=str(file), location=location)
    in_file = set(file_keys)
    in_model = set(model_keys)
    report.missing = [k for k in model_keys if k not in in_file]
    report.unexpected = [k for k in file_keys if k not in in_model]
    for key in model_keys:
        if key not in in_file:
            continue
        have, want = tuple(tensors[key].shape), tuple(targets[key].shape)
        if have == want:
            report.loaded.append(key)
        else:
            report.mismatched.append((key, have, want))

    ok = True
    if report.mismatched and not rule.skip_mismatched:
        listed = "; ".join(f"{k}: file {list(h)}, model {list(w)}" for k, h, w in report.mismatched[:5])
        more = f" (and {len(report.mismatched) - 5} more)" if len(report.mismatched) > 5 else ""
        message = f"{len(report.mismatched)} tensor(s) in {raw!r} have the wrong shape: {listed}{more}"
        hint = "set skip_mismatched: true to keep the model's own values for these, or narrow match:"
        problems.add(make_problem(source, (*path, "from"), message, hint))
        ok = False
    if rule.strict and (report.missing or report.unexpected):
        message = (
            f"strict load from {raw!r}: missing from the file: {name_list(report.missing, 5) or 'none'}; "
            f"not in the model: {name_list(report.unexpected, 5) or 'none'}"
        )
        problems.add(make_problem(source, (*path, "strict"), message, "set strict: false to load a subset"))
        ok = False
    if ok and not report.loaded and not report.mismatched:
        what = f"matching {rule.match!r} " if rule.match is not None else ""
        count = len(tensors)
        message = f"loaded nothing from {raw!r}: none of its {count} tensor names {what}exist in the model"
        hint = _prefix_hint(list(tensors), list(targets)) if tensors and targets else CHECKPOINT_HINT
        problems.add(make_problem(source, (*path, "from"), message, hint))
        ok = False
    if not ok:
        return None

    with torch.no_grad():
        for key in report.loaded:
            target = targets[key]
            if not target.is_meta:
                write_full(target, tensors[key])  # an FSDP shard keeps its part
    return report
