"""``${...}`` values and safe arithmetic.

In: a JSON-like value (dicts, lists, scalars) whose strings may contain ``${expr}``, plus a scope of
names. Out: the value with every ``${...}`` substituted. A string that is exactly one ``${expr}`` becomes
the value with its type; other strings interpolate ``str()`` of each value; ``$${`` is a literal ``${``.

Expressions are parsed with :mod:`ast` and walked by a tiny interpreter that knows only literals, names,
arithmetic, comparisons, conditionals, subscripts and a few pure builtins. Nothing reaches ``eval``, and
sizes are capped so that a spec can neither hang the builder nor exhaust its memory.
"""

from __future__ import annotations

import ast
import math
import operator as op
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from typing import Any

from netspec.errors import SpecPath, did_you_mean

from .budget import Budget

MAX_EXPR_CHARS = 2_000
MAX_EXPONENT = 10_000
MAX_INT_DIGITS = 1_000
MAX_ELEMENTS = 1_000_000
_LIMIT = f"{MAX_ELEMENTS:,} elements in all"
_MAX_INT_BITS = math.ceil(MAX_INT_DIGITS / math.log10(2)) + 1
_INT_HINT = f"integers are limited to about {MAX_INT_DIGITS:,} digits"

_CALLABLE = (min, max, round, int, float, abs, len, bool, str)
FUNCTIONS: dict[str, Callable[..., Any]] = {f.__name__: f for f in _CALLABLE}
_ALLOWED = "allowed functions: " + ", ".join(FUNCTIONS)
_BINOPS: dict[type[ast.AST], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", op.add), ast.Sub: ("-", op.sub), ast.Mult: ("*", op.mul), ast.Div: ("/", op.truediv),
    ast.FloorDiv: ("//", op.floordiv), ast.Mod: ("%", op.mod), ast.Pow: ("**", op.pow),
    ast.USub: ("-", op.neg), ast.UAdd: ("+", op.pos), ast.Not: ("not", op.not_),
    ast.Eq: ("==", op.eq), ast.NotEq: ("!=", op.ne), ast.Lt: ("<", op.lt), ast.LtE: ("<=", op.le),
    ast.Gt: (">", op.gt), ast.GtE: (">=", op.ge),
}  # fmt: skip
# Spelled out so that a rejection reads "operator '&' is not allowed" rather than naming an ast class.
_REJECTED: dict[type[ast.AST], str] = {
    ast.BitAnd: "operator '&'", ast.BitOr: "operator '|'", ast.BitXor: "operator '^'",
    ast.Invert: "operator '~'", ast.LShift: "operator '<<'", ast.RShift: "operator '>>'",
    ast.MatMult: "operator '@'", ast.In: "operator 'in'", ast.NotIn: "operator 'not in'",
    ast.Is: "operator 'is'", ast.IsNot: "operator 'is not'", ast.Attribute: "attribute access",
    ast.Lambda: "lambda", ast.ListComp: "a comprehension", ast.SetComp: "a comprehension",
    ast.DictComp: "a comprehension", ast.GeneratorExp: "a generator expression", ast.JoinedStr: "an f-string",
    ast.NamedExpr: "an assignment expression (:=)", ast.Starred: "starred unpacking",
    ast.Dict: "a dict literal", ast.Set: "a set literal", ast.Slice: "slicing",
}  # fmt: skip


class ExprError(Exception):
    """A bad ``${...}``; callers add the spec path and raise ``SpecError``. ``path``: leaf in the value."""

    def __init__(self, message: str, hint: str | None = None, *, path: SpecPath = ()) -> None:
        super().__init__(message)
        self.message, self.hint, self.path = message, hint, path


def _not_allowed(what: str, hint: str | None = None) -> ExprError:
    return ExprError(f"{what} is not allowed in ${{...}}", hint)


def _size(value: Any, limit: int) -> int:
    """Rough length of ``str(value)``, counted only until it passes ``limit`` so that it stays cheap."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | list | tuple | Mapping):
            total += len(item)
            if not isinstance(item, str) and total <= limit:
                stack.extend([*item.keys(), *item.values()] if isinstance(item, Mapping) else item)
        else:
            total += item.bit_length() // 3 + 1 if isinstance(item, int) else 1
    return total


def _to_text(value: Any, budget: int) -> str:
    too_large = ExprError("value is too large to turn into text", f"text from ${{...}} is limited to {_LIMIT}")
    if _size(value, budget) > budget:
        raise too_large
    try:
        return str(value)
    except ValueError:  # an int past sys.get_int_max_str_digits()
        raise too_large from None


def _cost_problem(sym: str, left: Any, right: Any, budget: int) -> tuple[str, str | None] | None:
    """Why ``left sym right`` would cost too much, judged before Python starts building the result.

    ``budget`` is how many more string or list elements the expression may build: capping each operation
    alone would still let ``['a' * 10**6, 'b' * 10**6, ...]`` take hundreds of megabytes.
    """
    ints, seqs = isinstance(left, int) and isinstance(right, int), (str, list, tuple)
    big_seq = ("is too large", f"strings and lists built by one ${{...}} are limited to {_LIMIT}")
    if sym == "**" and isinstance(left, int | float) and isinstance(right, int | float):
        if right > MAX_EXPONENT:
            return f"has exponent {right}; the limit is {MAX_EXPONENT:,}", None
        if ints and right > 0 and abs(left) > 1 and right * math.log10(abs(left)) > MAX_INT_DIGITS:
            return "is too large", _INT_HINT
    if sym == "*" and not ints and isinstance(left, (int, *seqs)) and isinstance(right, (int, *seqs)):
        seq, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(count, int) and len(seq) * count > budget:
            return big_seq
    if sym == "+" and isinstance(left, seqs) and isinstance(right, seqs):
        return big_seq if len(left) + len(right) > budget else None
    return None


_SYMBOLS: dict[Callable[..., Any], str] = {fn: sym for sym, fn in _BINOPS.values()}


def fold(fn: Callable[..., Any], *args: Any, text: str = "") -> Any:
    """``fn(*args)`` on constants (a Graph statement's ``9**9**9``), with the cost checks of ``${...}``:
    ``ExprError`` for a result too large to build, a division by zero or operands that do not fit."""
    sym = _SYMBOLS.get(fn, getattr(fn, "__name__", "an operator"))
    shown = f"'{text}'" if text else "a constant expression"
    if len(args) == 2 and (problem := _cost_problem(sym, *args, MAX_ELEMENTS)):
        raise ExprError(f"{shown} {problem[0]}", problem[1])
    if (
        sym == "*"
        and any(isinstance(a, str | list | tuple) for a in args)
        and not all(isinstance(a, str | list | tuple | int) for a in args)
    ):
        raise ExprError(f"cannot apply '*' to {' and '.join(type(a).__name__ for a in args)} in {shown}")
    try:
        result = fn(*args)
    except ZeroDivisionError:
        raise ExprError(f"division by zero in {shown}") from None
    except (TypeError, ValueError, OverflowError, IndexError, KeyError, AttributeError) as exc:
        kinds = " and ".join(type(a).__name__ for a in args)
        raise ExprError(f"cannot apply {sym!r} to {kinds} in {shown}: {exc}") from None
    if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > _MAX_INT_BITS:
        raise ExprError(f"{shown} is too large", _INT_HINT)
    return result


class _Evaluator:
    def __init__(self, text: str, scope: Mapping[str, Any]) -> None:
        self.text, self.scope = text, scope
        self.budget = MAX_ELEMENTS  # string and list elements this expression may still build

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "eval_" + type(node).__name__.lower(), None)
        if method is None:
            raise _not_allowed(_REJECTED.get(type(node), type(node).__name__))
        return method(node)

    def src(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)

    def apply(self, node: ast.AST, operator: ast.AST, *args: Any) -> Any:
        if type(operator) not in _BINOPS:
            raise _not_allowed(_REJECTED.get(type(operator), type(operator).__name__))
        sym, fn = _BINOPS[type(operator)]
        if sym == "%" and isinstance(args[0], str):
            raise _not_allowed("'%' string formatting")  # '%*d' % (10**9, 1) takes a gigabyte
        if len(args) == 2 and (problem := _cost_problem(sym, *args, self.budget)):
            raise ExprError(f"'{self.src(node)}' {problem[0]}", problem[1])
        try:
            result = fn(*args)
        except ZeroDivisionError:
            raise ExprError(f"division by zero in '{self.src(node)}'") from None
        except TypeError:
            kinds = " and ".join(type(a).__name__ for a in args)
            raise ExprError(f"cannot apply '{sym}' to {kinds} in '{self.src(node)}'") from None
        except (OverflowError, ValueError) as exc:
            raise ExprError(f"cannot compute '{self.src(node)}': {exc}") from None
        if isinstance(result, complex):
            raise ExprError(f"'{self.src(node)}' is a complex number")
        if isinstance(result, str | list) and sym in ("+", "*"):
            self.budget -= len(result)
        return self.check_int(result, node)

    def check_int(self, result: Any, node: ast.AST) -> Any:
        # Products and int('9' * 4000) are cheap to compute but feed '**' and str() with huge numbers.
        if isinstance(result, int) and result.bit_length() > _MAX_INT_BITS:
            raise ExprError(f"'{self.src(node)}' is too large", _INT_HINT)
        return result

    def eval_constant(self, node: ast.Constant) -> Any:
        if node.value is None or isinstance(node.value, int | float | str):
            return node.value
        raise _not_allowed(f"a {type(node.value).__name__} literal")

    def eval_name(self, node: ast.Name) -> Any:
        if node.id.startswith("__"):
            raise _not_allowed(f"name '{node.id}' (names starting with '__' are reserved)")
        if node.id in self.scope:
            return self.scope[node.id]
        if node.id in FUNCTIONS:
            raise ExprError(f"'{node.id}' is a function; call it, e.g. {node.id}(...)")
        names = [k for k in self.scope if isinstance(k, str)] + list(FUNCTIONS)
        raise ExprError(f"unknown name '{node.id}'", did_you_mean(node.id, names) or None)

    def eval_list(self, node: ast.List | ast.Tuple) -> list[Any]:
        return [self.eval(e) for e in node.elts]

    eval_tuple = eval_list  # specs are JSON-like, so tuples come back as lists

    def eval_unaryop(self, node: ast.UnaryOp) -> Any:
        return self.apply(node, node.op, self.eval(node.operand))

    def eval_binop(self, node: ast.BinOp) -> Any:
        # Long sums such as 1+1+...+1 nest leftwards; walk them in a loop so they cannot exhaust the stack.
        chain = [node]
        while isinstance(chain[-1].left, ast.BinOp):
            chain.append(chain[-1].left)
        value = self.eval(chain[-1].left)
        for link in reversed(chain):
            value = self.apply(link, link.op, value, self.eval(link.right))
        return value

    def eval_boolop(self, node: ast.BoolOp) -> Any:
        # Python semantics: short-circuit and return the deciding operand, not a bool.
        stop_on, result = isinstance(node.op, ast.Or), None
        for operand in node.values:
            result = self.eval(operand)
            if bool(result) == stop_on:
                break
        return result

    def eval_compare(self, node: ast.Compare) -> Any:
        left, result = self.eval(node.left), True
        for operator, comparator in zip(node.ops, node.comparators, strict=True):
            right = self.eval(comparator)
            if isinstance(operator, (ast.Is, ast.IsNot)):  # ${x is None}: identity means only None here
                if left is not None and right is not None:
                    raise _not_allowed("'is' between values other than None", "compare values with ==")
                result = (left is right) == isinstance(operator, ast.Is)
            else:
                result = self.apply(node, operator, left, right)
            if not result:
                break
            left = right
        return result

    def eval_ifexp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def eval_subscript(self, node: ast.Subscript) -> Any:
        container, key = self.eval(node.value), self.eval(node.slice)
        where = self.src(node)
        if isinstance(container, Mapping):
            try:
                return container[key]
            except (KeyError, TypeError):
                hint = did_you_mean(str(key), [str(k) for k in container]) or None
                raise ExprError(f"key {key!r} not found in '{where}'", hint) from None
        if not isinstance(container, list | tuple | str):
            raise ExprError(f"cannot index a {type(container).__name__} in '{where}'")
        if not isinstance(key, int):
            raise ExprError(f"index must be an integer, not {type(key).__name__}, in '{where}'")
        if not -len(container) <= key < len(container):
            raise ExprError(f"index {key} is out of range (length {len(container)}) in '{where}'")
        return container[key]

    def eval_call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name):
            self.eval(node.func)  # reports the attribute access or lambda that produced the callee
            raise _not_allowed("calling the result of an expression", _ALLOWED)
        name = node.func.id
        if name not in FUNCTIONS:
            if name.startswith("__") or name in self.scope:
                raise _not_allowed(f"calling '{name}'", _ALLOWED)
            raise ExprError(f"unknown function '{name}'", did_you_mean(name, FUNCTIONS) or _ALLOWED)
        if node.keywords:
            raise _not_allowed("a keyword argument", f"pass arguments by position, e.g. {name}(x, y)")
        args = [self.eval(a) for a in node.args]
        where = self.src(node)
        if name == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_INT_DIGITS:
            # round(x, n) builds 10**abs(n) internally.
            raise ExprError(f"round() digits in '{where}' must be within ±{MAX_INT_DIGITS}")
        if name == "str" and args:
            args[0] = _to_text(args[0], self.budget)
            self.budget -= len(args[0])
        try:
            result = FUNCTIONS[name](*args)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ExprError(f"{name}() failed in '{where}': {exc}") from None
        return self.check_int(result, node)


def _parse(expr: str) -> ast.Expression:
    text = expr.strip()
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression is too long ({len(text):,} characters; the limit is {MAX_EXPR_CHARS:,})")
    if not text:
        raise ExprError("empty ${} expression")
    try:
        return ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExprError(f"invalid expression '{text}': {exc.msg}") from None
    except ValueError as exc:  # null bytes
        raise ExprError(f"invalid expression {text!r}: {exc}") from None
    except (RecursionError, MemoryError):
        raise ExprError("expression is nested too deeply") from None


def evaluate(expr: str, scope: Mapping[str, Any]) -> Any:
    """Value of one expression, the text between ``${`` and ``}``."""
    tree = _parse(expr)
    try:
        return _Evaluator(expr.strip(), scope).eval(tree.body)
    except RecursionError:  # e.g. two thousand unary minus signs in a row
        raise ExprError("expression is nested too deeply") from None


def names_used(expr: str) -> set[str]:
    """Free names an expression reads; called names are not free, calls always mean the builtins."""
    tree = _parse(expr)
    callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in callees}


def _pieces(text: str) -> Iterator[tuple[bool, str]]:
    """Split a string into (is_expression, text) pieces, turning ``$${`` escapes into ``${``."""
    start, literal = 0, ""
    while (at := text.find("${", start)) >= 0:
        if at > start and text[at - 1] == "$":
            literal, start = literal + text[start : at - 1] + "${", at + 2
            continue
        end = _closing_brace(text, at + 2)
        if literal or at > start:
            yield False, literal + text[start:at]
        yield True, text[at + 2 : end]
        start, literal = end + 1, ""
    if literal or start < len(text):
        yield False, literal + text[start:]


def closing_brace(text: str, start: int, stop: int | None = None) -> int:
    """Index of the ``}`` that closes a ``${`` whose expression starts at ``start`` (before ``stop``), or -1.

    Quotes and nesting are tracked so that ``${d['}']}`` closes at the right brace."""
    depth, quote, i = 1, "", start
    end = len(text) if stop is None else stop
    while i < end:
        char = text[i]
        if quote:
            i += char == "\\"
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "{}":
            depth += 1 if char == "{" else -1
            if depth == 0:
                return i
        i += 1
    return -1


def _closing_brace(text: str, start: int) -> int:
    end = closing_brace(text, start)
    if end < 0:
        raise ExprError(f"unterminated '${{' in {text!r}", "close it with '}', or write '$${' for a literal '${'")
    return end


def _substitute_str(text: str, scope: Mapping[str, Any]) -> Any:
    if "${" not in text:
        return text
    pieces = list(_pieces(text))
    if len(pieces) == 1 and pieces[0][0]:
        return evaluate(pieces[0][1], scope)
    parts: list[str] = []
    budget = MAX_ELEMENTS  # shared by all the pieces: "${h}${h}${h}..." could otherwise grow without bound
    for is_expr, part in pieces:
        parts.append(_to_text(evaluate(part, scope), budget) if is_expr else part)
        budget -= len(parts[-1]) if is_expr else 0
    return "".join(parts)


def has_refs(value: Any) -> bool:
    """True if a string in ``value`` contains ``${`` (a ``$${`` escape counts: substitution undoes it)."""
    if isinstance(value, str):
        return "${" in value
    if isinstance(value, Mapping):
        value = list(value.values())
    return isinstance(value, list | tuple) and any(has_refs(v) for v in value)


def substitute_at(
    value: Any, scope: Mapping[str, Any], path: SpecPath, on_error: Callable[[SpecPath, ExprError], None]
) -> Any:
    """Like :func:`substitute`, but hands every bad leaf to ``on_error`` and keeps its raw value."""
    if isinstance(value, str):
        try:
            return _substitute_str(value, scope)
        except ExprError as err:
            on_error(path, err)
            return value
    if isinstance(value, Mapping):
        keys = {k: k if isinstance(k, str | int) else str(k) for k in value}
        return {k: substitute_at(v, scope, (*path, keys[k]), on_error) for k, v in value.items()}
    if isinstance(value, list | tuple):
        items = [substitute_at(v, scope, (*path, i), on_error) for i, v in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    return value


def substitute(value: Any, scope: Mapping[str, Any]) -> Any:
    """``value`` with every ``${...}`` replaced; the first bad one raises ``ExprError`` with its ``path``."""

    def fail(path: SpecPath, err: ExprError) -> None:
        err.path = path
        raise err

    return substitute_at(value, scope, (), fail)


def names_in(value: Any) -> set[str]:
    """Names read by the ``${...}`` inside ``value``; broken ones are skipped, substitution reports them."""
    if isinstance(value, Mapping | list | tuple):
        return set().union(*map(names_in, value.values() if isinstance(value, Mapping) else value))
    used: set[str] = set()
    with suppress(ExprError):
        for is_expr, part in _pieces(value) if isinstance(value, str) else ():
            with suppress(ExprError):
                used |= names_used(part) if is_expr else set()
    return used


class _VarScope(Mapping[str, Any]):
    """Resolved vars over ``outer``; pending var names are listed (for did-you-mean hints) but unreadable."""

    def __init__(self, resolved: dict[str, Any], outer: Mapping[str, Any], pending: Mapping[str, Any]) -> None:
        self.resolved, self.outer, self.pending = resolved, outer, pending

    def __getitem__(self, name: str) -> Any:
        return self.resolved[name] if name in self.resolved else self.outer[name]

    def __iter__(self) -> Iterator[str]:
        return iter({**dict.fromkeys(self.outer), **dict.fromkeys(self.pending)})

    def __len__(self) -> int:
        return sum(1 for _ in self)


def resolve_vars(
    vars: Mapping[str, Any], outer: Mapping[str, Any] | None = None, budget: Budget | None = None
) -> dict[str, Any]:
    """Substitute every var with ``outer`` plus the vars it references, in dependency order.

    A var's own name always means the var, so ``a: ${a + 1}`` is a cycle even when ``outer`` has ``a``.
    Errors carry a ``path`` that starts with the var's name.
    """
    # Linear in the number of vars: each var's dependencies come from the names it reads, and the
    # dependency walk keeps its own stack (a chain of 100,000 vars cannot exhaust Python's).
    order = {name: k for k, name in enumerate(vars)}
    deps = {name: sorted((d for d in names_in(value) if d in order), key=order.get) for name, value in vars.items()}
    resolved: dict[str, Any] = {}
    scope = _VarScope(resolved, outer if outer is not None else {}, vars)
    on_stack: dict[str, int] = {}  # name -> position in the walk's current chain
    chain: list[str] = []

    def evaluate_var(name: str) -> None:
        try:
            resolved[name] = substitute(vars[name], scope)
        except ExprError as err:
            err.path = (name, *err.path)
            raise
        if budget is not None:
            budget.charge_value(resolved[name], (name,))

    for start in vars:
        if start in resolved:
            continue
        todo: list[tuple[str, int]] = [(start, 0)]  # (var, index of the next dependency to visit)
        while todo:
            name, k = todo.pop()
            if k == 0:
                on_stack[name] = len(chain)
                chain.append(name)
            pending = deps[name]
            while k < len(pending) and pending[k] in resolved:
                k += 1
            if k < len(pending):
                dep = pending[k]
                if dep in on_stack:
                    cycle = " -> ".join([*chain[on_stack[dep] :], dep])
                    raise ExprError(f"variables refer to each other in a cycle: {cycle}", path=(dep,))
                todo.append((name, k + 1))
                todo.append((dep, 0))
                continue
            chain.pop()
            del on_stack[name]
            evaluate_var(name)
    return {name: resolved[name] for name in vars}
