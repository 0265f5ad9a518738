"""The package layout itself: layers import only downwards, no cycles, small modules and functions.

The layers, lowest first, are listed in `LAYERS` (docs/architecture.md explains them). A module
may import its own package and any package below it, never one above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "depthkit"
LAYERS = ["core", "source", "synth", "shard", "loader", "model", "eval", "train", "app"]
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 50
MAX_PARAMETERS = 7


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def _imports(name: str, tree: ast.Module) -> set[str]:
    """Every depthkit module `name` imports, at top level or inside functions."""
    found: set[str] = set()
    package = name if _is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("depthkit")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("depthkit"):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def _layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "app"  # depthkit, depthkit.cli, depthkit.demo, depthkit.__main__


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: {m for m in _imports(name, tree) if m in mods and m != name}
            for name, tree in mods.items()}


def test_layers_import_only_downwards() -> None:
    bad = []
    for mod, deps in _graph().items():
        for dep in deps:
            if LAYERS.index(_layer(dep)) > LAYERS.index(_layer(mod)):
                bad.append(f"{mod} ({_layer(mod)}) imports {dep} ({_layer(dep)})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    graph = _graph()
    # A package's __init__ re-exporting its modules is not a cycle of the code's design.
    graph = {m: {d for d in deps if not (_is_package(d) and m.startswith(d + "."))}
             for m, deps in graph.items()}
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "\n".join(cycles)


def test_modules_are_small() -> None:
    big = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, "\n".join(big)


def _functions(tree: ast.Module):
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_functions_fit_on_a_screen() -> None:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for fn in _functions(ast.parse(path.read_text())):
            lines = fn.end_lineno - fn.lineno + 1 - _docstring_lines(fn)
            a = fn.args
            params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
            params = [p for p in params if p.arg not in ("self", "cls")]
            where = f"{path.relative_to(PACKAGE.parent)}:{fn.lineno} {fn.name}"
            if lines > MAX_FUNCTION_LINES:
                bad.append(f"{where}: {lines} lines")
            if len(params) > MAX_PARAMETERS:
                bad.append(f"{where}: {len(params)} parameters")
    assert not bad, "\n".join(bad)


def _docstring_lines(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    first = fn.body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str):
        return first.end_lineno - first.lineno + 1
    return 0


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_each_layer_is_a_package_with_a_docstring(layer: str) -> None:
    init = PACKAGE / layer / "__init__.py"
    assert init.is_file(), f"depthkit/{layer}/ is not a package"
    assert ast.get_docstring(ast.parse(init.read_text())), f"depthkit/{layer}/__init__.py " \
        "has no docstring saying what the layer does"
