"""A block instance's parameters: the arguments a use gives, and the declared defaults for the rest.

In: the spec's blocks, the read's ``Substitution`` and the problem list. Out: ``bind`` — the
arguments one use gives (already substituted), checked against the block's declarations at the
use (an unknown parameter, a wrong type, a missing required one); ``fill_defaults`` — the other
parameters from their declared defaults, which go through ``${...}`` substitution like any value
and are checked against their declared type, each problem at the default's own line.

A default that reads no other parameter of its block (a literal, or ``${width}`` over the vars) is
evaluated once, by ``check_defaults``, so its problem is reported once whether the block is used
thirty times or never. A default that reads the block's other parameters (``hidden: {type: int,
default: "${4 * dim}"}``) is evaluated for each instance, in declaration order, seeing the
parameters given or defaulted before it.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

from ..catalog.argtypes import describe_value
from ..errors import ProblemList, SpecPath, did_you_mean
from ..frontend.exprs import names_in
from ..frontend.models import BlockSpec, ParamDecl
from ..frontend.positions import Source
from ..frontend.substitute import Substitution

_FAILED = object()  # a default that did not evaluate or fit: reported once, the instance is not built
_FITS: dict[str, Callable[[Any], bool]] = {
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "node": lambda v: isinstance(v, (dict, str)),
}


def param_fits(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the declared block parameter type ``kind`` (``any`` takes everything)."""
    check = _FITS.get(kind)
    return check is None or check(value)


class BlockArgs:
    """Binds block instances' parameters for one ``resolve``; static defaults are evaluated once."""

    def __init__(
        self, blocks: Mapping[str, BlockSpec], substitution: Substitution, source: Source, problems: ProblemList
    ) -> None:
        self.blocks, self.substitution, self.source, self.problems = blocks, substitution, source, problems
        self.static: dict[tuple[str, str], Any] = {}  # (block, param) -> value or _FAILED

    def check_defaults(self) -> None:
        """Evaluate and type-check, once, every default that reads no parameter of its block."""
        for name, block in self.blocks.items():
            for key, decl in block.params.items():
                if not decl.required and not names_in(decl.default) & set(block.params):
                    self.static[(name, key)] = self._default(name, key, decl, self.substitution.vars)

    def bind(self, block_name: str, given: Mapping[str, Any], path: SpecPath) -> dict[str, Any] | None:
        """The parameters a use at ``path`` gives, checked; None (problems reported) when any is wrong
        or a required one is missing."""
        block = self.blocks[block_name]
        params: dict[str, Any] = {}
        ok = True
        for key, value in given.items():
            decl = block.params.get(key)
            if decl is None:
                hint = did_you_mean(key, block.params) or (
                    "it takes " + ", ".join(block.params) if block.params else None
                )
                message = f"block {block_name} has no parameter {key!r}"
                self.problems.add(self.source.problem((*path, key), message, hint=hint))
                ok = False
            elif not param_fits(decl.type, value):
                message = f"block {block_name} parameter {key!r} expects {decl.type}, got {describe_value(value)}"
                self.problems.add(self.source.problem((*path, key), message))
                ok = False
            else:
                params[key] = value
        for key, decl in block.params.items():
            if decl.required and key not in given:
                message = f"block {block_name} needs parameter {key!r} ({decl.type})"
                self.problems.add(self.source.problem(path, message))
                ok = False
        return params if ok else None

    def fill_defaults(self, block_name: str, params: dict[str, Any]) -> bool:
        """Add the declared defaults of the parameters ``params`` lacks, in declaration order; False
        (problems reported at the defaults) when one does not evaluate or fit its type."""
        failed: set[str] = set()
        scope = ChainMap(params, self.substitution.vars)
        for key, decl in self.blocks[block_name].params.items():
            if key in params or decl.required:
                continue
            if (block_name, key) in self.static:
                value = self.static[(block_name, key)]
            elif names_in(decl.default) & failed:
                value = _FAILED  # reads a default already reported: not reported again
            else:
                value = self._default(block_name, key, decl, scope)
            if value is _FAILED:
                failed.add(key)
            else:
                params[key] = value
        return not failed

    def _default(self, block_name: str, key: str, decl: ParamDecl, scope: Mapping[str, Any]) -> Any:
        path: SpecPath = ("blocks", block_name, "params", key, "default")
        found = ProblemList()
        value = self.substitution.at(decl.default, scope, path, found)
        if found.errors:
            for problem in found.errors:
                self.problems.add(problem)
            return _FAILED
        if not param_fits(decl.type, value):
            message = f"block {block_name} parameter {key!r} is declared {decl.type}, but its default is "
            hint = f"give a default of type {decl.type}, or declare the parameter as {{type: any}}"
            self.problems.add(self.source.problem(path, message + describe_value(value), hint=hint))
            return _FAILED
        return value


__all__ = ["BlockArgs", "param_fits"]
