"""A resolved Graph node's statements compiled to its ``torch.fx.Graph``, problems placed at their statement.

In: a Graph ``RNode`` (inputs, statements, outputs, children, tensors, left-out children), the
``Source`` and a problem list. Out: ``compile_statements`` — the fx graph, or None after adding the
first failing statement's problem at its line and column (the caret under the offending part when
the statement sits on its item's own line); a warning for each layer forward never uses.
Statements go through ``statements.StatementBuilder``, first on shared trees (one parse per shape of
statement); a failure compiles the Graph again from each statement's own text, so what a problem
says and where it points come from the statement as written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch.fx as fx

from ..errors import Problem, ProblemList
from ..frontend.source import Source
from .callees import StatementError, describe_children
from .statements import SharedTreeFailed, StatementBuilder
from .tree import RNode


def compile_statements(node: RNode, source: Source, problems: ProblemList) -> fx.Graph | None:
    """Compile a resolved Graph node's statements; problems are located at their statement."""
    try:
        return _compile(node, source, problems, shared=True)
    except SharedTreeFailed:  # the failing statement's column and text come from its own tree
        return _compile(node, source, problems, shared=False)


def _compile(node: RNode, source: Source, problems: ProblemList, *, shared: bool) -> fx.Graph | None:
    graph_def = node.graph
    if graph_def is None:
        raise ValueError("not a Graph node")
    omitted = {name: _left_out(source, path) for name, path in node.omitted.items()}
    buffers = [name for name, t in node.tensors.items() if t.is_buffer]
    builder = StatementBuilder(graph_def, describe_children(node), list(node.tensors), omitted, buffers, shared)
    ok = True
    for stmt in graph_def.statements:
        try:
            builder.statement(stmt.text, stmt.path)
        except StatementError as err:
            problems.add(_statement_problem(source, stmt.path, stmt.text, err))
            ok = False
            break  # later statements would only repeat "not defined" errors
    if not ok:
        return None
    try:
        builder.g.output(builder.outputs(graph_def.outputs))
    except StatementError as err:
        problems.add(source.problem(graph_def.outputs_path, err.message, hint=err.hint))
        return None
    for name in node.children:
        if name not in builder.used:
            problems.add(
                source.problem(
                    node.children[name].path,
                    f"layer {name!r} is never used in forward; it stays registered",
                    warning=True,
                )
            )
    return builder.g


def _left_out(source: Source, if_path: Any) -> str:
    loc = source.locate(if_path)
    return "its 'if:' is false" + (f" (line {loc.line})" if loc is not None else "")


def _statement_problem(source: Source, path: Any, text: str, err: StatementError) -> Problem:
    problem = source.problem(path, f"{err.message} in '{text.strip()}'", hint=err.hint)
    loc, line = problem.location, problem.source_line
    if loc is None or line is None or not err.col:
        return problem
    # Point the caret at the offending part of the statement when the statement sits on the item's own
    # line as written (plain or quoted); a folded or multi-line scalar keeps the caret at the item.
    statement = text.strip()
    first_line = statement.split("\n", 1)[0]
    begin = loc.column - 1 + (1 if line[loc.column - 1 : loc.column] in ("'", '"') else 0)
    if err.col >= len(first_line) or line[begin : begin + len(first_line)] != first_line:
        return problem
    return dataclasses.replace(problem, location=dataclasses.replace(loc, column=begin + 1 + err.col))
