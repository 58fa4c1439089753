"""``init: [{from: file.pt, ...}]``: copy tensors from a checkpoint into a model.

In: one ``from:`` rule (file path relative to the spec's directory, optional ``match`` (one
glob or a list), ``strip_prefix``, ``rename: {old.prefix.: new.prefix.}``,
``skip_mismatched``, ``strict``) and the model. Out: a ``LoadReport`` of loaded / missing /
unexpected / shape-mismatched names, with the tensors copied into the model and the report
added as a warning (counts and compressed name patterns: a partial load is never silent); or
``Problem``s (missing file, not a checkpoint, nothing loaded, a shape mismatch without
``skip_mismatched``, and with ``strict: true`` any missing, unexpected or mismatched key).

The file's names are rewritten before matching: ``strip_prefix`` first, then ``rename``
(each name starting with an ``old`` prefix gets the ``new`` one instead; the longest
matching prefix wins).

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
from .patterns import compress_names, no_match, select
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

    model_keys: list[str] = field(default_factory=list)  # the state_dict names considered (after match)
    file_keys: list[str] = field(default_factory=list)  # the file's names considered (renamed, after match)

    def summary(self) -> str:
        """One line: ``pretrained.pt: loaded 12, missing 2, unexpected 0, shape-mismatched 1``."""
        return (
            f"{self.file}: loaded {len(self.loaded)}, missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched (skipped) {len(self.mismatched)}"
        )

    def details(self) -> str:
        """Counts with compressed name patterns: ``loaded 12 (features), missing 2 (classifier.*)…``."""
        shaped = [k for k, _, _ in self.mismatched]
        parts = []
        for label, names, universe in (
            ("loaded", self.loaded, self.model_keys),
            ("missing", self.missing, self.model_keys),
            ("unexpected", self.unexpected, self.file_keys),
            ("shape-mismatched (kept the model's)", shaped, self.model_keys),
        ):
            if names:
                parts.append(f"{label} {len(names)} ({short_names(names, universe)})")
            else:
                parts.append(f"{label} 0")
        return ", ".join(parts)


def short_names(names: list[str], universe: list[str], limit: int = 6) -> str:
    """``names`` as the fewest module prefixes / globs of ``universe`` (``compress_names``), or the
    names themselves when that is no shorter; at most ``limit`` shown."""
    patterns = compress_names(names, universe)
    return name_list(names if len(names) <= len(patterns) else patterns, limit)


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
    if rule.rename:
        renamed = _rename(tensors, rule.rename, path, source, problems)
        if renamed is None:
            return None
        tensors = renamed

    targets = model.state_dict(keep_vars=True)
    file_keys = list(tensors)
    model_keys = list(targets)
    if rule.match is not None:
        patterns = [rule.match] if isinstance(rule.match, str) else list(rule.match)
        missing_pattern = False
        for j, pattern in enumerate(patterns):
            if not select(pattern, [*targets, *tensors]):
                message, hint = no_match(pattern, [*targets, *tensors], "model or checkpoint")
                where = (*path, "match", j) if isinstance(rule.match, list) else (*path, "match")
                problems.add(make_problem(source, where, message, hint))
                missing_pattern = True
        if missing_pattern:
            return None
        file_keys = [k for k in file_keys if any(select(p, [k]) for p in patterns)]
        model_keys = [k for k in model_keys if any(select(p, [k]) for p in patterns)]

    report = LoadReport(rule=index, file=str(file), location=location, model_keys=model_keys, file_keys=file_keys)
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
    if report.mismatched and not (rule.skip_mismatched and not rule.strict):
        listed = "; ".join(f"{k}: file {list(h)}, model {list(w)}" for k, h, w in report.mismatched[:5])
        more = f" (and {len(report.mismatched) - 5} more)" if len(report.mismatched) > 5 else ""
        message = f"{len(report.mismatched)} tensor(s) in {raw!r} have the wrong shape: {listed}{more}"
        if rule.strict:
            hint = "set strict: false and skip_mismatched: true to keep the model's own values for these"
        else:
            hint = "set skip_mismatched: true to keep the model's own values for these, or narrow match:"
        problems.add(make_problem(source, (*path, "strict" if rule.strict else "from"), message, hint))
        ok = False
    if rule.strict and (report.missing or report.unexpected):
        missing = short_names(report.missing, model_keys) or "none"
        unexpected = short_names(report.unexpected, file_keys) or "none"
        message = (
            f"strict load from {raw!r}: {len(report.missing)} missing from the file ({missing}); "
            f"{len(report.unexpected)} not in the model ({unexpected})"
        )
        problems.add(make_problem(source, (*path, "strict"), message, "set strict: false to load a subset"))
        ok = False
    if ok and not report.loaded and not report.mismatched:
        what = f"matching {name_list(map(repr, patterns))} " if rule.match is not None else ""
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
    problems.add(make_problem(source, (*path, "from"), f"loaded from {raw!r}: {report.details()}", warning=True))
    return report


def _rename(
    tensors: dict[str, torch.Tensor],
    rename: dict[str, str],
    path: tuple[str | int, ...],
    source: Any,
    problems: ProblemList,
) -> dict[str, torch.Tensor] | None:
    """The file's names with ``rename``'s prefixes rewritten (longest prefix first); None when one starts no name."""
    unused = [old for old in rename if not any(k.startswith(old) for k in tensors)]
    if unused:
        for old in unused:
            example = next(iter(tensors))
            message = f"rename prefix {old!r} starts none of the file's names (e.g. {example!r})"
            problems.add(make_problem(source, (*path, "rename", old), message, "remove or correct it"))
        return None
    olds = sorted(rename, key=len, reverse=True)
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        old = next((o for o in olds if key.startswith(o)), None)
        out[key if old is None else rename[old] + key[len(old) :]] = value
    return out
