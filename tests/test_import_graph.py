"""No import circle among the project's modules: every `import` statement (at module level or inside
a function) is an edge, read with ast, and the graph of the project's packages must have no cycle.
Packages import downwards only (LAYERS), and the format table's (module, class) strings, which no
import statement shows, are checked as references: they resolve and keep the same rules."""

import ast
import graphlib
import re
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


# ---------------------------------------------------------------- layers, and the format table's references

LAYERS = {"sunet_deploy": 0, "runtimes": 1, "train": 1, "export": 2, "benchmarks": 3}
"""A package imports its own modules and those of lower layers only (ARCHITECTURE.md, "Direction of imports")."""


def package(module: str) -> str:
    return module.split(".")[0]


def upward_imports(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a, targets in graph.items() for b in targets
                  if package(a) != package(b) and LAYERS[package(b)] >= LAYERS[package(a)])


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), set()) - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def module_level_imports(path: Path) -> set[str]:
    """The top-level names a module imports when it is imported (statements in its body, not in functions)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def module_path(root: Path, module: str) -> Path:
    base = root.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def table_problems(rows, root: Path, graph: dict[str, set[str]]) -> list[str]:
    """What is wrong with the (module, class) references of format rows: each names a class defined in a
    module of the runtimes layer (the one upward reference the core makes, imported only when used);
    what that module imports reaches no higher layer; an options module imports no torch, not even
    through the project's modules it imports (predict's flags and torch-free deployments load it)."""
    problems = []
    for fmt in rows:
        for role, (module, name) in (("adapter", fmt.adapter), ("options", fmt.options)):
            where = f"{fmt.name} {role} {module}:{name}"
            if module not in graph:
                problems.append(f"{where}: no such module")
                continue
            tree = ast.parse(module_path(root, module).read_text())
            if name not in {n.name for n in tree.body if isinstance(n, ast.ClassDef)}:
                problems.append(f"{where}: no class {name} in it")
            if package(module) != "runtimes":
                problems.append(f"{where}: the table names adapters of the runtimes layer only")
            closure = reachable(graph, module) | {module}
            higher = sorted(m for m in closure if LAYERS[package(m)] > LAYERS["runtimes"])
            if higher:
                problems.append(f"{where}: reaches {higher[0]}, a higher layer")
            with_torch = sorted(m for m in closure if "torch" in module_level_imports(module_path(root, m)))
            if role == "options" and with_torch:
                problems.append(f"{where}: imports torch (through {with_torch[0]})")
    return problems


def test_packages_import_their_own_and_lower_layers_only():
    assert upward_imports(import_graph(ROOT)) == []


def test_the_format_tables_references_resolve_and_keep_the_rules():
    from sunet_deploy import formats

    graph = import_graph(ROOT)
    assert table_problems(formats.formats(), ROOT, graph) == []
    named = {module for f in formats.formats() for module, _ in (f.adapter, f.options)}
    assert named >= {"runtimes.ort", "runtimes.pytorch", "runtimes.options"}  # the table is read, not empty


def test_a_bad_table_reference_is_found():
    from sunet_deploy import formats

    graph = import_graph(ROOT)
    rows = [formats.Format("a", "a", ("runtimes.ort", "NoSuchRuntime"), ("runtimes.absent", "Options")),
            formats.Format("b", "b", ("export.onnx", "export_onnx"), ("runtimes.pytorch", "PyTorchRuntime"))]
    problems = [re.sub(r"reaches export\.\w+", "reaches export.*", p) for p in table_problems(rows, ROOT, graph)]
    assert problems == [
        "a adapter runtimes.ort:NoSuchRuntime: no class NoSuchRuntime in it",
        "a options runtimes.absent:Options: no such module",
        "b adapter export.onnx:export_onnx: no class export_onnx in it",
        "b adapter export.onnx:export_onnx: the table names adapters of the runtimes layer only",
        "b adapter export.onnx:export_onnx: reaches export.*, a higher layer",
        "b options runtimes.pytorch:PyTorchRuntime: imports torch (through runtimes.pytorch)",
    ], problems
    assert upward_imports({"sunet_deploy.x": {"runtimes.y"}, "runtimes.y": set()}) == [("sunet_deploy.x", "runtimes.y")]
