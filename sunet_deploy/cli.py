"""Argument types shared by every command-line tool (torch-free)."""

from __future__ import annotations

import argparse
import os
import re
import sys


def parse_dims(text: str, count: int, example: str) -> tuple[int, ...]:
    """'512x512' -> (512, 512): `count` positive integers joined by 'x' (an argparse type)."""
    parts = text.lower().split("x")
    if len(parts) != count or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(f"expected {count} positive integers such as {example}, got {text!r}")
    return tuple(int(p) for p in parts)


def parse_size(text: str, square: bool = False) -> tuple[int, int]:
    """'HxW' such as '512x512' (an argparse type); with `square` also 'SIZE' for SIZExSIZE."""
    dims = f"{text}x{text}" if square and text.isdigit() else text
    try:
        return parse_dims(dims, 2, "512x512")
    except argparse.ArgumentTypeError:
        if not square:
            raise
        raise argparse.ArgumentTypeError(f"expected SIZE or HxW (positive integers, e.g. 512 or 384x512), got {text!r}") from None


def parse_square_size(text: str) -> tuple[int, int]:
    """'SIZE' (a square) or 'HxW' (an argparse type: parse_size with `square`)."""
    return parse_size(text, square=True)


EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran but a check failed (parity outside tolerance, verification, a diverged run,
some inputs skipped)."""
EXIT_USAGE = 2
"""Bad usage or bad input: wrong flags, missing or unreadable files, refused artifacts."""
EXIT_STATUS_HELP = "exit status: 0 ok, 1 a check failed (details on stderr), 2 bad usage or input"
"""The epilog of every command's --help."""


def first_line(exc: BaseException) -> str:
    """What one `skipped:` or `error:` line says of an exception: its message's first line, else its type."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- a missing extra, said in one line

PACKAGES = ("sunet_deploy", "train", "export", "runtimes", "benchmarks")
"""The project's top-level packages: a `python -m` of a module under them is one of our entry points."""
DISTRIBUTIONS = {"skimage": "scikit-image", "onnx_ir": "onnx-ir", "tensorrt_libs": "tensorrt", "cv2":
                 "opencv-python-headless", "PIL": "pillow", "pytriton": "nvidia-pytriton"}
"""Importable names whose distribution is not the name itself (with '_' as '-')."""


def entry_point() -> str | None:
    """"train" when this process is `python -m train ...` and the module is one of ours, else None."""
    argv = getattr(sys, "orig_argv", [])
    module = argv[argv.index("-m") + 1] if "-m" in argv[:-1] else ""
    return module if module.partition(".")[0] in PACKAGES else None


def extra_of(module: str) -> str | None:
    """The extra of this project that installs top-level `module` ("" for the core), or None when none does."""
    from importlib.metadata import PackageNotFoundError, requires

    wanted = DISTRIBUTIONS.get(module, module.replace("_", "-")).lower()
    try:
        requirements = requires("sunet-deploy") or []
    except PackageNotFoundError:
        return None
    for requirement in requirements:
        name = re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        if name == wanted:
            extra = re.search(r"""extra\s*==\s*["']([^"']+)""", requirement)
            return extra.group(1) if extra else ""
    return None


def loaded_packages(module: str) -> set[str]:
    """The top-level names of the other distributions' packages that `import module` imports: the import
    statements at module level, followed through this project's modules (and their packages' __init__), read
    from the source, so that this works where some of them are missing."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    seen: set[str] = set()
    found: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) not in seen]
        path = next((p for p in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py"))
                     if p.is_file()), None)
        if name in seen or path is None:
            continue
        seen.add(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.rsplit(".", node.level - 1)[0]
                    base = f"{anchor}.{base}".rstrip(".")
                names = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for imported in names:
                (todo.append(imported) if imported.partition(".")[0] in PACKAGES
                 else found.add(imported.partition(".")[0]))
    return found - {""}


def missing_extra_line(exc: BaseException) -> str | None:
    """One `error:` line for a ModuleNotFoundError of a package an extra installs, in one of our entry points:
    the packages missing here that the entry point imports as it loads, and the extras that install them."""
    import importlib.util

    command = entry_point()
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or command is None:
        return None
    failed = exc.name.partition(".")[0]
    if not extra_of(failed):
        return None
    module = f"{command}.__main__" if command in PACKAGES or command == "sunet_deploy.models" else command
    missing = {failed}
    for name in loaded_packages(module) | loaded_packages(command):
        try:
            if importlib.util.find_spec(name) is None and extra_of(name):
                missing.add(name)
        except (ImportError, ValueError):
            pass
    extras = ",".join(sorted({extra_of(name) for name in missing}))
    return f'error: python -m {command} needs {", ".join(sorted(missing))}, not installed here: ' \
           f'pip install "sunet-deploy[{extras}]"'


def _excepthook(kind: type[BaseException], exc: BaseException, tb) -> None:
    line = missing_extra_line(exc)
    if line is None:
        _previous_excepthook(kind, exc, tb)
        return
    print(line, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_USAGE)  # an uncaught exception exits 1 whatever the hook does; a missing install is bad usage


def say_missing_extras() -> None:
    """Make an entry point that fails on a package an extra installs end in one line naming the extra, exit 2,
    instead of a ModuleNotFoundError traceback. Installed by the __init__ of each top-level package, so it is
    in place before any entry point's own imports run; it acts only in `python -m` of one of our modules."""
    global _previous_excepthook
    if sys.excepthook is not _excepthook:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _excepthook


_previous_excepthook = sys.excepthook
