"""``init: [{from: file.pt, ...}]``: copy tensors from a checkpoint into a model.

In: one ``from:`` rule (file path relative to the spec's directory, optional ``match``,
``strip_prefix``, ``skip_mismatched``, ``strict``) and the model. Out: a ``LoadReport`` of
loaded / missing / unexpected / shape-mismatched names, with the tensors copied into the
model, or ``Problem``s (missing file, not a checkpoint, nothing loaded, shape mismatch).

Files are always read with ``torch.load(path, map_location="cpu", weights_only=True)``, so a
checkpoint can never run code. A raw ``state_dict`` is accepted, and so is a dict holding it
under ``"state_dict"`` or ``"model"`` (the usual training-checkpoint layouts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ProblemList
from ..frontend.training_models import InitRule
from .kwargs import first_line, make_problem, name_list
from .patterns import no_match, select

CHECKPOINT_HINT = (
    "from: takes a file written by torch.save(model.state_dict(), path), or a checkpoint dict "
    "with a 'state_dict' or 'model' entry"
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


class _Unreadable(Exception):
    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file; raises ``_Unreadable`` with a message and a hint."""
    if not path.exists():
        raise _Unreadable(f"file not found: {str(path)!r}", "from: paths are relative to the spec's folder")
    if not path.is_file():
        raise _Unreadable(f"{str(path)!r} is not a file", CHECKPOINT_HINT)
    try:
        obj: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a bad file; all mean "not a checkpoint"
        message = f"cannot read {str(path)!r} as a PyTorch checkpoint: {first_line(err)}"
        raise _Unreadable(message, CHECKPOINT_HINT) from err
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        message = f"{str(path)!r} holds a {type(obj).__name__}, expected a state_dict (names -> tensors)"
        raise _Unreadable(message, CHECKPOINT_HINT)
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        keys = name_list(map(str, obj), 6) or "none"
        message = f"{str(path)!r} holds no tensors (its keys: {keys}), expected a state_dict"
        raise _Unreadable(message, CHECKPOINT_HINT)
    return tensors


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
    base_dir: Path,
    location: str,
    problems: ProblemList,
) -> LoadReport | None:
    """Apply one ``from:`` rule; ``None`` (with problems added) when it cannot be applied."""
    path = ("init", index)
    raw = str(rule.from_)
    file = Path(raw).expanduser()
    if not file.is_absolute():
        file = Path(base_dir) / file
    try:
        tensors = read_state_dict(file)
    except _Unreadable as err:
        problems.add(make_problem(source, (*path, "from"), err.message, err.hint))
        return None

    prefix = rule.strip_prefix
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
                target.copy_(tensors[key])
    return report
