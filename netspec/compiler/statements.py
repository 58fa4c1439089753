"""Graph statements -> a ``torch.fx.Graph`` (the one IR): the statement language itself.

In: a Graph node's ``inputs``, then each ``forward`` statement (parsed with ``ast``, never
``eval``-ed; through ``statement_parse``'s shared trees where it can), its ``outputs``, plus what
its children are (``callees``: so ``blocks(h)`` over a ModuleList can be unrolled and a call's
inputs checked). Out: ``StatementBuilder``, whose ``torch.fx.Graph`` nodes carry the statement
they came from in ``node.meta["netspec"]``, or a ``StatementError`` (message, column, hint).
``graph_compile.compile_statements`` runs it over a Graph node and places the problems;
``graph_module.make_graph_module`` turns the graph plus built children into a real module.
"""

from __future__ import annotations

import ast
import contextlib
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.fx as fx

from ..errors import did_you_mean
from ..frontend import exprs
from .allowlists import (
    BINARY_OPS,
    BUFFER_UPDATES,
    COMPARE_OPS,
    CONSTANTS,
    DROPOUTS,
    DTYPES,
    FUNCTIONS,
    RESERVED_NAMES,
    TENSOR_ATTRIBUTES,
    TENSOR_METHODS,
    TO_METHOD,
    TRAINING,
    TRAINING_ALIASES,
    TRAINING_INDEX,
    UNARY_OPS,
    mode_select,
    route,
    set_index,
)
from .callees import Child, StatementError, check_arity
from .graph_module import BRANCH, JOIN
from .statement_children import SELF, ChildReferences
from .statement_parse import MARK, parse_shared
from .tree import RGraph

MAX_STATEMENT_CHARS = 10_000
THROWAWAY = "_"
_SLOTS = {f"{MARK}{k}": k for k in range(32)}  # a shared tree's first placeholders -> their positions


class SharedTreeFailed(Exception):
    """A statement parsed through a shared tree failed: compile the Graph again from each statement's own text."""


class StatementBuilder(ChildReferences):
    """Compiles one Graph's statements, in order, into its fx graph (``g``); ``StatementError`` at a bad one."""

    def __init__(
        self,
        graph_def: RGraph,
        children: Mapping[str, Child],
        tensors: Sequence[str],
        omitted: Mapping[str, str] | None = None,
        buffers: Sequence[str] = (),
        shared: bool = False,
    ) -> None:
        self.g = fx.Graph()
        # Parse statements through their shape's shared tree (``statement_parse``): its columns are the
        # shape's, so a failing statement raises ``SharedTreeFailed`` and the Graph is compiled again without it.
        self.shared = shared
        self.names: list[str] = []  # the statement's names, when its tree is a shared one (``ǂk`` is names[k])
        # ``h = <expr>``: the node <expr> makes is created with the name h (a rename costs as much as the node).
        self.naming: tuple[ast.expr, str] | None = None
        self.named: tuple[fx.Node, str] | None = None  # the last node created with a name asked for
        self.children = children
        self.tensors = set(tensors)
        self.buffers = set(buffers)
        self.updating = False  # inside a buffer-update statement
        self.omitted = omitted or {}  # children left out by a false ``if:`` -> where that ``if:`` is
        self.env: dict[str, Any] = {}
        self.used: set[str] = set()
        self.stmt: tuple[Any, str] = ((), "")
        self._attrs: dict[str, fx.Node] = {}
        self.branch: tuple[int, bool] | None = None  # inside a run-time branch: (join id, which branch)
        self._joins = 0
        for name in graph_def.inputs:
            self.env[name] = self.g.placeholder(name)

    def node(
        self,
        op: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        e: ast.expr | None = None,
    ) -> fx.Node:
        """A new node; ``e``: the expression it computes (the statement's whole value gets the target's name)."""
        if name is None and e is not None and self.naming is not None and self.naming[0] is e:
            name = self.naming[1]
        if name is None and target == "self":  # a child named self (BertAttention.self): fx would name the
            name = "self_out"  # node self, shadowing the generated forward's own self
        # Arguments set after creation: create_node walks them with pytree looking for SymInts, which a
        # statement (constants from its text, fx nodes) never holds — a third of the node's cost. They are
        # set through the ``args``/``kwargs`` properties (which record the uses), not ``Node.__setattr__``:
        # that one also takes the node out of the graph's (op, target) lookup table and puts it back at
        # the end, where the node just created already is — a no-op costing twice the node itself.
        n = self.g.create_node(op, target, name=name)
        if name is not None:
            self.named = (n, name)
        if args:
            object.__setattr__(n, "args", args)
        if kwargs:
            object.__setattr__(n, "kwargs", kwargs)
        n.meta["netspec"] = self.stmt
        if self.branch is not None:
            n.meta[BRANCH] = self.branch
        return n

    def attr(self, target: str) -> fx.Node:
        if target not in self._attrs:
            # Reads of self.<tensor> and self.training go to the top of forward: one read, outside any branch.
            first = next((n for n in self.g.nodes if n.op != "placeholder"), None)
            with self.g.inserting_before(first) if first is not None else contextlib.nullcontext():
                n = self.g.create_node("get_attr", target, (), {})
            n.meta["netspec"] = self.stmt
            self._attrs[target] = n
        return self._attrs[target]

    # -- statements ---------------------------------------------------------------------------
    def statement(self, text: str, path: Any) -> None:
        self.stmt = (path, text)
        if len(text) > MAX_STATEMENT_CHARS:
            raise StatementError(f"statement is {len(text):,} characters long; the limit is {MAX_STATEMENT_CHARS:,}")
        if self.shared:
            found = parse_shared(text.strip())
            if found is not None:
                tree, self.names = found
                try:
                    self.parsed(tree)
                except (StatementError, RecursionError):
                    raise SharedTreeFailed from None
                finally:
                    self.names = []
                return
        try:
            tree = ast.parse(text.strip(), mode="exec")
        except SyntaxError as err:
            raise StatementError(f"invalid statement: {err.msg}", (err.offset or 1) - 1) from None
        except (RecursionError, MemoryError):
            raise StatementError("statement is nested too deeply; split it into several statements") from None
        try:
            self.parsed(tree)
        except RecursionError:
            raise StatementError("statement is nested too deeply; split it into several statements") from None

    def ident(self, e: ast.Name) -> str:
        """The name ``e`` stands for in the statement (a shared tree holds placeholders)."""
        n = e.id
        if not self.names:  # the statement's own tree (a name written ǂ0 is a name like any other)
            return n
        k = _SLOTS.get(n)
        if k is not None:
            return self.names[k]
        return self.names[int(n[1:])] if n[0] == MARK else n

    def parsed(self, tree: ast.Module) -> None:
        if len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr):
            self.update(tree.body[0].value)
            return
        if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign) or len(tree.body[0].targets) != 1:
            raise StatementError("a statement must be one assignment 'name = expression'", 0, "e.g. h = relu(conv1(x))")
        assign = tree.body[0]
        target = assign.targets[0]
        if isinstance(target, ast.Name):
            self.naming = (assign.value, self.ident(target))
        try:
            value = self.expr(assign.value)
        finally:
            self.naming = None
        self.assign(target, value)

    def update(self, e: ast.expr) -> None:
        """A statement without ``=`` updates one of the Graph's buffers in place: ``count.add_(1)``, or in
        training only ``count.add_(1) if training else None`` (nn.BatchNorm's ``num_batches_tracked``)."""
        call = e.body if isinstance(e, ast.IfExp) else e
        if isinstance(e, ast.IfExp) and not (isinstance(e.orelse, ast.Constant) and e.orelse.value is None):
            raise StatementError("a buffer update's other branch is None: 'count.add_(1) if training else None'", 0)
        if not (
            isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in BUFFER_UPDATES
        ):
            raise StatementError(
                "a statement must be one assignment 'name = expression', or an in-place update of one of this "
                f"Graph's buffers ({', '.join(f'.{m}()' for m in sorted(BUFFER_UPDATES))})",
                0,
                "e.g. h = relu(conv1(x)), or num_batches_tracked.add_(1) if training else None",
            )
        self.updating = True
        try:
            self.expr(e)
        finally:
            self.updating = False

    def assign(self, target: ast.expr, value: Any) -> None:
        """``h = ...``, ``a, b = ...`` and nested ``out, (h, c) = lstm(x)``."""
        if isinstance(target, ast.Name):
            self.bind(target, value)
        elif isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            self.assign_index(target, target.value, value)
        elif isinstance(target, ast.Tuple) and all(isinstance(t, (ast.Name, ast.Tuple)) for t in target.elts):
            for k, elt in enumerate(target.elts):
                if isinstance(elt, ast.Name) and self.ident(elt) == THROWAWAY:
                    continue  # `a, _ = attn(h, h, h)`: the value is not needed
                if isinstance(value, (list, tuple)):
                    item = value[k]
                else:
                    name = self.ident(elt) if isinstance(elt, ast.Name) else None
                    item = self.node("call_function", operator.getitem, (value, k), {}, name=name)
                self.assign(elt, item)
        else:
            raise StatementError("assign to a name, a tuple of names or a part of a value (h[:, 0])", target.col_offset)

    def assign_index(self, target: ast.Subscript, name_of: ast.Name, value: Any) -> None:
        """``h[:, 0] = v``: ``h`` rebound to a copy of itself with that part set to ``v`` (``set_index``); the
        value ``h`` had, and every value computed from it before, stays as it was."""
        name = self.ident(name_of)
        base = self.env.get(name)
        if not isinstance(base, fx.Node):
            what = (
                f"a layer or tensor of this Graph; copy it first (h = {name}.clone()) and assign into the copy"
                if name in self.children or name in self.tensors
                else "not a value computed earlier in forward"
                if base is None
                else f"the constant {base!r}, not a tensor"
            )
            raise StatementError(f"'{name}[...] = ...' assigns into {name!r}, which is {what}", target.col_offset)
        key = self.index(target.slice)
        self.bind(name_of, self.node("call_function", set_index, (base, key, value), {}, e=target))

    def bind(self, target: ast.Name, value: Any) -> None:
        name = self.ident(target)
        if name == THROWAWAY:
            raise StatementError("'_' only throws away part of a tuple, as in 'a, _ = attn(h, h, h)'", 0)
        if name.startswith("_") or name in RESERVED_NAMES:
            raise StatementError(f"the name {name!r} is reserved; choose another", target.col_offset)
        if name in self.children or name in self.tensors:
            raise StatementError(f"{name!r} is a layer or tensor of this Graph; choose another name", target.col_offset)
        fresh = self.named is not None and self.named[0] is value and self.named[1] == name  # made as `name`
        if (
            isinstance(value, fx.Node)
            and value.op not in ("placeholder", "get_attr")
            and value.name != name
            and not fresh
        ):
            # Rename so the generated forward reads with the spec's own variable names.
            value._rename(name)
        self.env[name] = value

    # -- expressions --------------------------------------------------------------------------
    def expr(self, e: ast.expr) -> Any:
        t = type(e)  # the two commonest first (each type below is its own class: the order changes nothing)
        if t is ast.Name:
            return self.name(e)
        if t is ast.Call:
            return self.call(e)
        if isinstance(e, ast.Constant) and (
            isinstance(e.value, (int, float, str, bool, type(None))) or e.value is Ellipsis
        ):
            return e.value
        if isinstance(e, ast.Name):
            return self.name(e)
        if isinstance(e, (ast.List, ast.Tuple)):
            items = [self.expr(x) for x in e.elts]
            return items if isinstance(e, ast.List) else tuple(items)
        if isinstance(e, ast.BinOp) and type(e.op) in BINARY_OPS:
            return self.apply(BINARY_OPS[type(e.op)], self.expr(e.left), self.expr(e.right), e=e)
        if isinstance(e, ast.UnaryOp) and type(e.op) in UNARY_OPS:
            return self.apply(UNARY_OPS[type(e.op)], self.expr(e.operand), e=e)
        if isinstance(e, ast.Compare) and len(e.ops) == 1 and type(e.ops[0]) in COMPARE_OPS:
            return self.apply(COMPARE_OPS[type(e.ops[0])], self.expr(e.left), self.expr(e.comparators[0]), e=e)
        if isinstance(e, ast.Subscript):
            tensor = self.parameter_entry(e)
            if tensor is not None:
                return tensor
            return self.apply(operator.getitem, self.expr(e.value), self.index(e.slice), e=e)
        if isinstance(e, ast.Attribute):
            return self.attribute(e)
        if isinstance(e, ast.Call):
            return self.call(e)
        if isinstance(e, ast.IfExp):
            return self.conditional(e)
        kind = type(e).__name__
        raise StatementError(f"{kind} expressions are not allowed in forward statements", e.col_offset)

    def condition(self, e: ast.expr) -> tuple[Any, bool]:
        """The test of ``a if test else b`` and whether it is negated (``not training``)."""
        if isinstance(e, ast.UnaryOp) and isinstance(e.op, ast.Not):
            value, negated = self.condition(e.operand)
            return value, not negated
        return self.expr(e), False

    def conditional(self, e: ast.IfExp) -> Any:
        """``a if c else b``: a condition known now keeps one branch; ``training`` stays a run-time branch."""
        test, negated = self.condition(e.test)
        if not isinstance(test, fx.Node):
            taken = bool(test) != negated
            return self.expr(e.body if taken else e.orelse)
        if test is not self._attrs.get(TRAINING):
            raise StatementError(
                "a run-time condition must be 'training' (the module's mode) or 'not training'",
                e.test.col_offset,
                "for an element-wise choice between tensors use where(cond, a, b)",
            )
        if self.branch is not None:
            raise StatementError("a run-time branch inside another one is not supported", e.col_offset)
        join = self._joins
        self._joins += 1
        values = []
        for branch, part in ((True, e.body), (False, e.orelse)):
            self.branch = (join, branch != negated)
            try:
                values.append(self.expr(part))
            finally:
                self.branch = None
        if_training, if_eval = values if not negated else values[::-1]
        n = self.node("call_function", mode_select, (test, if_training, if_eval), {}, e=e)
        n.meta[JOIN] = join
        return n

    def apply(self, fn: Callable[..., Any], *args: Any, e: ast.expr | None = None) -> Any:
        if not any(isinstance(a, fx.Node) for a in args):
            # Constant folding (plain numbers stay numbers) through the cost checks of ${...}: 9**9**9,
            # 'a' * 6000000000 and (x, x) * 2**22 are refused before they are built, 1/0 is an error.
            # (A shared tree's text would show placeholders: a failure compiles the statement from its own.)
            text = ast.unparse(e) if e is not None and not self.names else ""
            try:
                return exprs.fold(fn, *args, text=text[:200])
            except exprs.ExprError as err:
                raise StatementError(err.message, e.col_offset if e is not None else 0, err.hint) from None
        return self.node("call_function", fn, args, {}, e=e)

    def index(self, e: ast.expr) -> Any:
        if isinstance(e, ast.Slice):
            parts = [self.expr(p) if p is not None else None for p in (e.lower, e.upper, e.step)]
            return slice(*parts)
        if isinstance(e, ast.Tuple):
            return tuple(self.index(x) for x in e.elts)
        return self.expr(e)

    def name(self, e: ast.Name) -> Any:
        n = self.ident(e)
        if n in self.env:
            return self.env[n]
        if n == TRAINING:
            return self.attr(TRAINING)
        if n in self.omitted:
            raise StatementError(f"layer {n!r} is left out: {self.omitted[n]}", e.col_offset)
        if n == THROWAWAY:
            raise StatementError("'_' is a thrown-away value and cannot be read", e.col_offset)
        if n in self.tensors:
            self.used.add(n)
            return self.attr(n)
        if n in CONSTANTS:
            return CONSTANTS[n]
        if n == SELF:
            raise StatementError(
                "'self' only indexes the Graph's own children: self[0](h) calls the first, self['0'](h) the one "
                "named '0'",
                e.col_offset,
            )
        if n in DTYPES:
            return DTYPES[n]
        if n in self.children:
            raise StatementError(f"layer {n!r} must be called, e.g. {n}(h)", e.col_offset)
        if n in FUNCTIONS:
            raise StatementError(f"function {n!r} must be called", e.col_offset)
        known = [*self.env, *self.tensors, *self.children, *FUNCTIONS]
        hint = did_you_mean(n, known) or None
        if n in ("torch", "F", "nn", "math"):
            hint = "functions are written without a module prefix: cat(...), relu(...), flatten(h, 1)"
        raise StatementError(f"name {n!r} is not defined before this statement", e.col_offset, hint)

    def attribute(self, e: ast.Attribute) -> Any:
        if e.attr.startswith("_"):
            raise StatementError(f"attribute {e.attr!r} is not allowed", e.col_offset)
        inner = e.value  # qkv.weight.dtype: an attribute of a child's tensor
        holder = self.child_path(inner.value) if isinstance(inner, ast.Attribute) else None
        if (
            holder is not None
            and isinstance(inner, ast.Attribute)
            and inner.attr not in holder[1].children
            and not inner.attr.startswith("_")
        ):
            base = self.child_tensor(holder, inner.attr, inner.col_offset)
        else:
            owner = self.child_path(e.value)
            if owner is not None:
                return self.child_tensor(owner, e.attr, e.col_offset)
            base = self.expr(e.value)
        if isinstance(base, fx.Node) and e.attr in TENSOR_ATTRIBUTES:
            return self.node("call_function", getattr, (base, e.attr), {}, e=e)
        raise StatementError(
            f"attribute {e.attr!r} is not allowed here", e.col_offset, did_you_mean(e.attr, TENSOR_ATTRIBUTES) or None
        )

    def call(self, e: ast.Call) -> Any:
        if (ast.Starred in map(type, e.args)) or (e.keywords and any(k.arg is None for k in e.keywords)):
            raise StatementError("*args and **kwargs are not allowed", e.col_offset)
        args = tuple([self.expr(a) for a in e.args])
        kwargs = {k.arg: self.expr(k.value) for k in e.keywords if k.arg} if e.keywords else {}
        func = e.func
        target: tuple[str, Child] | None = None
        if isinstance(func, ast.Subscript):
            parent = self.own(func.value) or self.child_path(func.value)
            if parent is not None:
                key = self.index(func.slice)
                if isinstance(key, fx.Node) and not parent[0]:
                    raise StatementError(
                        "self[...] is indexed by a value computed in forward; index the Graph's own children by a "
                        "constant position or name",
                        func.slice.col_offset,
                    )
                if isinstance(key, fx.Node) and key.op == "placeholder":
                    # heads[key](h): route through a ModuleDict by a forward input
                    self.used.add(parent[0].split(".")[0])
                    return self.node("call_function", route, (self.attr(parent[0]), key, *args), kwargs, e=e)
                if isinstance(key, fx.Node):
                    raise StatementError(
                        f"{parent[0]}[...] is indexed by a value computed in forward; index a child by a "
                        "constant position or name, or route by a forward input: heads[key](h)",
                        func.slice.col_offset,
                    )
                target = self.child_key(parent, key, func.slice.col_offset)
        else:
            target = self.child_path(func)
        if target is not None:
            path, child = target
            self.used.add(path.split(".")[0])
            if child.kind == "ModuleList":
                if kwargs or len(args) != 1:
                    raise StatementError(f"{path}(h) applies every element in order and takes one input", e.col_offset)
                value = args[0]
                last = next(reversed(child.children), None)
                for key in child.children:
                    value = self.node("call_module", f"{path}.{key}", (value,), {}, e=e if key == last else None)
                return value
            if child.kind in ("ModuleDict", "ParameterList", "ParameterDict"):
                raise StatementError(f"{path} is a {child.kind} and cannot be called; index it", e.col_offset)
            check_arity(path, child, args, kwargs, e.col_offset)
            return self.node("call_module", path, args, kwargs, e=e)
        if isinstance(func, ast.Name) and self.ident(func) == SELF:
            return self.name(func)  # says how self is used
        if isinstance(func, ast.Name):
            fname = self.ident(func)
            if fname in FUNCTIONS:
                if fname in DROPOUTS and len(args) <= TRAINING_INDEX:
                    kwargs.setdefault(TRAINING, self.attr(TRAINING))
                if fname in TRAINING_ALIASES and TRAINING in kwargs:
                    kwargs[TRAINING_ALIASES[fname]] = kwargs.pop(TRAINING)
                return self.node("call_function", FUNCTIONS[fname], args, kwargs, e=e)
            known = [*FUNCTIONS, *self.children]
            raise StatementError(
                f"unknown function or layer {fname!r}", func.col_offset, did_you_mean(fname, known) or None
            )
        if isinstance(func, ast.Attribute) and func.attr in BUFFER_UPDATES:
            own = isinstance(func.value, ast.Name) and self.ident(func.value) in self.buffers
            if not (self.updating and own):
                raise StatementError(
                    f"in-place .{func.attr}() only updates one of this Graph's buffers, in a statement of its own "
                    "('count.add_(1)' or 'count.add_(1) if training else None'); write it out of place: "
                    f".{func.attr.rstrip('_')}()",
                    func.col_offset,
                )
            return self.node("call_method", func.attr, (self.expr(func.value), *args), kwargs, e=e)
        if isinstance(func, ast.Attribute):
            base = self.expr(func.value)
            if func.attr == TO_METHOD and not (len(args) == 1 and not kwargs and isinstance(args[0], fx.Node)):
                raise StatementError(
                    ".to() takes one value read from a tensor ('h.to(x.dtype)', 'h.to(x.device)', 'h.to(x)'); "
                    "for a fixed dtype write h.float(), h.half(), h.double(), h.bfloat16(), h.long(), h.int() "
                    "or h.bool()",
                    func.col_offset,
                )
            if isinstance(base, fx.Node) and func.attr in TENSOR_METHODS:
                return self.node("call_method", func.attr, (base, *args), kwargs, e=e)
            raise StatementError(
                f"method {func.attr!r} is not allowed", func.col_offset, did_you_mean(func.attr, TENSOR_METHODS) or None
            )
        self.expr(func)  # names the construct when it is not allowed at all (a lambda, ...)
        raise StatementError("only layers, allow-listed functions and tensor methods can be called", e.col_offset)

    def outputs(self, outputs: str | list[str] | dict[str, str]) -> Any:
        def get(n: str) -> Any:
            if n not in self.env:
                raise StatementError(f"output {n!r} is not defined", 0, did_you_mean(n, self.env) or None)
            return self.env[n]

        if isinstance(outputs, str):
            return get(outputs)
        if isinstance(outputs, list):
            return tuple(get(n) for n in outputs)
        return {k: get(v) for k, v in outputs.items()}
