"""The one ``${...}`` pass: the spec's vars resolved once, then values substituted where they are.

In: the spec's ``vars`` (as written), the ``Source`` (for locations), a ``ProblemList`` and the
read's ``Budget``. Out: ``Substitution.vars`` — every var's value, each failure reported at the
var's own line — and ``Substitution.at(value, scope, path)``, which substitutes one value (a
top-level section with the vars; a node inside a block or repeat with its wider scope),
reports each failing ``${...}`` once at its path and charges what it produced to the budget.
``netspec.read`` uses it for the top-level sections, then hands the same object to
``compiler.resolve`` for the model and its blocks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ProblemList, SpecPath
from . import exprs
from .budget import Budget, BudgetExceeded
from .positions import Source

# Top-level sections whose ${...} references are plain vars, substituted before the document model
# checks them (so a reference may stand for any value there, a whole mapping included). ``model``,
# ``loss`` and ``blocks`` are resolved node by node: they also see block parameters and repeat indices.
VAR_SECTIONS: tuple[str, ...] = (
    "name",
    "seed",
    "input",
    "init",
    "freeze",
    "optimizer",
    "scheduler",
    "tie",
    "eval",
    "checkpoint_activations",
    "average",
    "distributed",
)


class Substitution:
    """The spec's vars (resolved once) and the substitution of every ``${...}`` value."""

    def __init__(self, raw_vars: Any, source: Source, problems: ProblemList, budget: Budget | None = None) -> None:
        self.source = source
        self.problems = problems
        self.budget = budget if budget is not None else Budget()
        self.failed: set[SpecPath] = set()  # paths whose ${...} did not evaluate: reported once, not re-checked
        self.vars: dict[str, Any] = {}
        if not isinstance(raw_vars, Mapping):
            return  # the document model reports a vars section that is not a mapping
        try:
            self.vars = exprs.resolve_vars(raw_vars, budget=self.budget)
        except (exprs.ExprError, BudgetExceeded) as err:  # at the var's own line
            problems.add(source.problem(("vars", *err.path), err.message, hint=err.hint))

    def at(self, value: Any, scope: Mapping[str, Any], path: SpecPath, problems: ProblemList | None = None) -> Any:
        """``value`` with its ``${...}`` evaluated in ``scope``; failures go to ``problems`` (default: the read's)."""
        into = self.problems if problems is None else problems

        def report(at: SpecPath, err: exprs.ExprError) -> None:
            self.failed.add(at)
            into.add(self.source.problem(at, err.message, hint=err.hint))

        result = exprs.substitute_at(value, scope, path, report)
        if exprs.has_refs(value):
            self.budget.charge_value(result, path)  # "${big}" used a thousand times costs a thousand times
        return result
