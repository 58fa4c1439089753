"""The package's structure, checked on the source: no import cycles, no stage importing a later
one, a torch-free front end, and no module calling another module's private names."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "netspec"

# Lower layers first. A module may import from its own layer and the layers before it, never
# from a later one. ``io`` (file formats: atomic writes, weights, checkpoints) needs nothing
# above errors, and sits below training because ``init: from:`` reads weight files through it.
LAYERS: list[tuple[str, ...]] = [
    ("netspec.version", "netspec.errors"),
    ("netspec.frontend",),
    ("netspec.catalog",),
    ("netspec.compiler",),
    ("netspec.io",),
    ("netspec.training",),
    ("netspec.distributed",),
    ("netspec.emitter", "netspec.spec", "netspec.schema", "netspec.summary"),
    (
        "netspec.api",
        "netspec.viz",
        "netspec.comparison",
        "netspec.planning",
        "netspec.figures",
        "netspec.sweep",
        "netspec.schedule",
    ),
    ("netspec.cli", "netspec.__main__"),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> Iterator[tuple[str, int, bool]]:
    """(imported netspec module, line, at module level) for every import outside ``if TYPE_CHECKING``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and is_type_checking(node)
        for child in node.body
        for n in ast.walk(child)
    }
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            targets = [f"{name}.{a.name}" if f"{name}.{a.name}" in MODULES else name for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target in MODULES and target != module:
                yield target, node.lineno, id(node) in top


def layer_of(module: str) -> int:
    for index, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "netspec":  # the package root only re-exports, lazily
            layer_of(module)


def test_no_module_imports_a_later_stage() -> None:
    wrong = [
        f"{module}:{line} imports {target}"
        for module in MODULES
        if module != "netspec"
        for target, line, _ in imports(module)
        if target != "netspec" and layer_of(target) > layer_of(module)
    ]
    assert not wrong, "imports reaching forward:\n" + "\n".join(wrong)


def find_cycle(graph: dict[str, list[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (module -> imported modules), or None."""
    # Packages import their own modules from __init__; a module importing its package's __init__
    # is the same package, not a cycle of stages.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if nxt.startswith(node + ".") and MODULES[node].name == "__init__.py":
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for module in graph:
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_no_import_cycles() -> None:
    # Module-level imports: what runs when a module is imported.
    graph = {m: sorted({t for t, _, top in imports(m) if top and t != "netspec"}) for m in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    # A function-level import is still a dependency: two modules that reach each other, however
    # late, are one idea split in two (what both need belongs in a module below both).
    graph = {m: sorted({t for t, _, _ in imports(m) if t != "netspec"}) for m in MODULES}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle (function-level imports counted): " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_function_level_cycle() -> None:
    # The checker itself: a cycle closed by a late import is reported.
    graph = {"netspec.io.checkpoint": ["netspec.io.dcp"], "netspec.io.dcp": ["netspec.io.checkpoint"]}
    assert find_cycle(graph) == ["netspec.io.checkpoint", "netspec.io.dcp", "netspec.io.checkpoint"]
    assert find_cycle({"netspec.io.checkpoint": ["netspec.io.payload"], "netspec.io.payload": []}) is None


def test_the_front_end_imports_no_torch() -> None:
    for module, path in MODULES.items():
        if not module.startswith("netspec.frontend"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            torch_names = [n for n in names if n == "torch" or n.startswith("torch.")]
            assert not torch_names, f"{module}:{node.lineno} imports {torch_names[0]}"


def private_uses(module: str) -> Iterator[str]:
    """``other_module._name`` and ``from other import _name`` where the other module is netspec's."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if not source.startswith("netspec"):
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                if full in MODULES:
                    aliases[alias.asname or alias.name] = full
                elif alias.name.startswith("_") and not alias.name.startswith("__") and source != module:
                    yield f"{module}:{node.lineno} imports {source}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("netspec"):
                    aliases[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            yield f"{module}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}"


def test_no_module_uses_another_modules_private_names() -> None:
    found = [use for module in MODULES for use in private_uses(module)]
    assert not found, "private names used across modules:\n" + "\n".join(found)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_says_what_goes_in_and_what_comes_out(module: str) -> None:
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    if not tree.body:  # an empty __init__.py
        return
    assert ast.get_docstring(tree), f"{module} has no module docstring"
