"""No import circle in the scripts around the library: ``benchmarks/`` and ``recipes/``, each walked as the folder
its scripts run from (``benchmarks/`` and ``recipes/`` on ``sys.path``), by a plain AST walk that reads every
import statement of every module: at the top, inside functions, and under ``if TYPE_CHECKING:`` (a type-only import
is a dependency too: the two modules cannot be read, moved or tested apart).
"""

import ast
from pathlib import Path

import pytest


REPO_ROOT = Path(__file__).resolve().parent.parent


def module_names(root: Path) -> dict[str, Path]:
    """Every module under ``root`` by its dotted name as ``root`` on ``sys.path`` imports it (a package by its
    folder's name)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if parts:
            modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that the module ``name`` (at ``path``) imports, the deepest one each import
    names: ``import engine.store`` and ``from engine import store`` -> ``engine.store``; ``from engine import
    Study`` -> ``engine``; ``from .data import x`` -> the sibling ``data``."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            stem = ".".join([*base, *([node.module] if node.module else [])])
            targets = [f"{stem}.{alias.name}" if stem else alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            deepest = next(
                (".".join(parts[:end]) for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in modules), None
            )
            if deepest is not None and deepest != name:
                found.add(deepest)
    return found


def import_circles(root: Path) -> list[list[str]]:
    """The import circles among the modules under ``root``: one circle (``[a, b, a]``) per group of modules that
    import each other, directly or through others (Tarjan's strongly connected components)."""
    modules = module_names(root)
    graph = {name: sorted(imported_modules(name, path, modules)) for name, path in modules.items()}
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circle(graph, component) for component in components)


def circle(graph: dict[str, list[str]], component: list[str]) -> list[str]:
    """One import path that leaves the component's first module and comes back to it, within the component."""
    start, members = component[0], set(component)
    paths = [[start]]
    while paths:
        path = paths.pop(0)
        for target in graph[path[-1]]:
            if target == start:
                return [*path, start]
            if target in members and target not in path:
                paths.append([*path, target])
    raise AssertionError(f"{component} is not a circle")


def test_the_walk_finds_a_circle_through_a_function_body_and_a_relative_import(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("from .a import A\n")
    (tmp_path / "pkg" / "a.py").write_text("from pkg.b import B\nA = 1\n")
    (tmp_path / "pkg" / "b.py").write_text("def later():\n    from . import a\n")
    (tmp_path / "report.py").write_text("import plots\nimport pkg\n")
    (tmp_path / "plots.py").write_text("def draw():\n    import report\n")
    (tmp_path / "leaf.py").write_text("import json\nfrom pkg import a\n")
    assert import_circles(tmp_path) == [["pkg.a", "pkg.b", "pkg.a"], ["plots", "report", "plots"]]


@pytest.mark.parametrize("folder", ["benchmarks", "recipes"])
def test_no_import_circle(folder):
    circles = import_circles(REPO_ROOT / folder)
    assert circles == [], f"import circles under {folder}/: " + "; ".join(" -> ".join(path) for path in circles)
