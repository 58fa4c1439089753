"""``tie:``: parameters that share one tensor (``lm_head.weight: wte.weight``).

In: a constructed model and the ``tie`` mapping (each key's parameter becomes the value's).
Out: the model with every key's attribute pointing at the value's ``nn.Parameter`` (so the
tensor is trained, decayed, counted and saved once, while ``state_dict()`` keeps both names,
as PyTorch does), and the applied ties; or ``Problem``s: a name that is not a parameter (with
the closest real names), shapes or dtypes that differ, a parameter tied to itself, a key that
is also tied to (chains), a lazy parameter whose shape is not known yet.

Ties run before ``init`` and ``freeze``, so every later stage sees one tensor: it is listed
by ``model.named_parameters()`` under its first name in module order, and an init or freeze
rule reaching it under either module applies to the shared tensor.
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.nn.parameter import is_lazy

from ..errors import ProblemList
from ..io.checkpoint import tied_groups
from .kwargs import make_problem
from .patterns import closest


def _unknown(name: str, params: list[str]) -> tuple[str, str]:
    near = closest(name, params)
    hint = f"did you mean {near[0]!r}?" if near else "the model has no parameters"
    return f"{name!r} is not a parameter of the model; closest names: {', '.join(map(repr, near))}", hint


def check_ties(model: nn.Module, ties: dict[str, str] | None, source: Any, problems: ProblemList) -> dict[str, str]:
    """The ``tie`` entries checked against ``model``'s parameters (nothing is changed), adding problems
    instead of raising. Returns the ties to apply; none when any entry is wrong."""
    if not ties:
        return {}
    before = len(problems.errors)
    params = dict(model.named_parameters(remove_duplicate=False))
    names = list(params)
    keys = set(ties)
    for key, value in ties.items():
        path = ("tie", key)
        ok = True
        for name in (key, value):
            if name not in params:
                message, hint = _unknown(name, names)
                problems.add(make_problem(source, path, message, hint))
                ok = False
        if not ok:
            continue
        if key == value:
            problems.add(make_problem(source, path, f"{key!r} is tied to itself", "remove this entry"))
            continue
        if value in keys and ties[value] != value:
            message = f"{value!r} is tied to {ties[value]!r} itself; a tie's value must be an untied parameter"
            problems.add(make_problem(source, path, message, f"write {key}: {ties[value]}"))
            continue
        a, b = params[key], params[value]
        if is_lazy(a) or is_lazy(b):
            message = f"cannot tie {key!r} and {value!r}: a lazy layer's parameter has no shape yet"
            problems.add(make_problem(source, path, message, "give the layer its in_* argument (or input.shape)"))
            continue
        if a.shape != b.shape:
            message = f"cannot tie {key!r} of shape {list(a.shape)} to {value!r} of shape {list(b.shape)}"
            problems.add(make_problem(source, path, message, "tied parameters need the same shape"))
            continue
        if a.dtype != b.dtype:
            message = f"cannot tie {key!r} ({a.dtype}) to {value!r} ({b.dtype}): different dtypes"
            problems.add(make_problem(source, path, message))
    return {} if len(problems.errors) > before else dict(ties)


def apply_ties(model: nn.Module, ties: dict[str, str]) -> None:
    """Make each key's parameter the value's (ties ``check_ties`` accepted for a model with these names)."""
    for key, value in ties.items():
        owner_path, _, leaf = key.rpartition(".")
        owner = model.get_submodule(owner_path) if owner_path else model
        setattr(owner, leaf, model.get_parameter(value))


def run_ties(model: nn.Module, ties: dict[str, str] | None, source: Any, problems: ProblemList) -> dict[str, str]:
    """Check and tie every ``key: value`` pair, adding problems instead of raising. Returns the ties applied."""
    checked = check_ties(model, ties, source, problems)
    apply_ties(model, checked)
    return checked


def tied_names(model: nn.Module) -> dict[str, list[str]]:
    """The first name of every shared parameter -> its other names (``wte.weight`` -> ``[lm_head.weight]``)."""
    return {names[0]: names[1:] for names in tied_groups(model)}
