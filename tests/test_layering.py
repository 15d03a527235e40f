"""The core's layering: genkit's modules import each other in one direction only.

Every module under ``genkit/`` is parsed with ``ast``; imports of genkit modules, at module
level and inside functions, make the graph. It must have no cycle, and an import inside a
function is allowed only where it keeps a heavy library out of start-up, marked with a
``# lazy:`` comment saying so.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "genkit"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The genkit modules an import statement names (``from genkit.x import y`` names
    ``genkit.x.y`` when that is a module, else ``genkit.x``)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:  # relative import
            package = module.split(".")[: len(module.split(".")) - node.level + (
                1 if MODULES[module].name == "__init__.py" else 0)]
            base = ".".join([*package, base] if base else package)
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                 for alias in node.names]
    return sorted({n for n in names if n in MODULES and n != "genkit" or n == "genkit"
                   and n in MODULES})


def _imports(module: str) -> tuple[set[str], list[tuple[int, str]]]:
    """(genkit modules imported anywhere, [(line, text) of function-level genkit imports])."""
    source = MODULES[module].read_text(encoding="utf-8")
    lines = source.splitlines()
    tree = ast.parse(source)
    targets: set[str] = set()
    nested: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool, in_type_checking: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # annotations only: no import at run time
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found = [t for t in _resolve(module, child) if t != module]
                targets.update(found)
                if found and in_function:
                    nested.append((child.lineno, lines[child.lineno - 1]))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef)), in_type_checking)

    visit(tree, False, False)
    return targets, nested


GRAPH = {module: _imports(module)[0] for module in MODULES}


def _find_cycle() -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(GRAPH):
        if module not in state and (cycle := dfs(module)):
            return cycle
    return None


def test_genkit_modules_import_each_other_without_cycles() -> None:
    cycle = _find_cycle()
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_a_cycle() -> None:
    """The checker itself: a graph with a cycle is caught (guards against a check that
    always passes)."""
    saved = {k: set(v) for k, v in GRAPH.items()}
    try:
        GRAPH["genkit.errors"].add("genkit.api")  # api imports errors (indirectly)
        assert _find_cycle() is not None
    finally:
        GRAPH.clear()
        GRAPH.update(saved)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_function_level_imports_say_why(module: str) -> None:
    """An import of a genkit module inside a function exists only to keep heavy libraries
    (torch and the model libraries) out of start-up, and says so with ``# lazy:``."""
    _, nested = _imports(module)
    lines = MODULES[module].read_text(encoding="utf-8").splitlines()
    unexplained = [f"{MODULES[module].name}:{n}: {text.strip()}" for n, text in nested
                   if "# lazy:" not in text and "# lazy:" not in lines[n - 2]]
    assert not unexplained, "\n".join(unexplained)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_short(module: str) -> None:
    count = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert count <= MAX_LINES, f"{module} has {count} lines (at most {MAX_LINES})"


def test_plugins_import_only_the_plugin_api() -> None:
    """The built-in plugins and the example plugin import nothing from genkit but
    ``genkit.plugin``."""
    roots = [ROOT.parent / "plugins", ROOT.parent / "examples" / "genkit-plugin-flow" / "src"]
    offenders = []
    for path in (p for root in roots for p in root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if (n == "genkit" or n.startswith("genkit.")) and n != "genkit.plugin"]
    assert not offenders, offenders
