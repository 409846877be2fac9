"""No import circle among the project's modules: every `import` statement (at module level or inside
a function) is an edge, read with ast, and the graph of the project's packages must have no cycle."""

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sunet_deploy", "runtimes", "export", "benchmarks", "train")


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The project modules `path` (module `name`) imports; `from package import module` names the module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m in known and m != name}


def import_graph(root: Path, packages=PACKAGES) -> dict[str, set[str]]:
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, name, known) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return exc.args[1]
    return None


def test_the_projects_modules_import_without_a_circle():
    graph = import_graph(ROOT)
    assert len(graph) > 50 and graph["runtimes.ort"] >= {"runtimes.base", "runtimes.options"}
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph))}"


def test_a_circle_is_found(tmp_path):
    """The check can fail: a circle through a function-level relative import, as runtimes/options.py
    importing runtimes/ort.py (which imports options) once made one."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "options.py").write_text("def availability():\n    from .ort import provider\n")
    (package / "ort.py").write_text("from .options import availability\n")
    cycle = find_cycle(import_graph(tmp_path, ("pkg",)))
    assert cycle is not None and set(cycle) == {"pkg.options", "pkg.ort"}
