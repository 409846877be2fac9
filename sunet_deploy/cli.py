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


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' such as '512x512' (an argparse type)."""
    return parse_dims(text, 2, "512x512")


EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran but a check failed (parity outside tolerance, verification, a diverged run,
some inputs skipped)."""
EXIT_USAGE = 2
"""Bad usage or bad input: wrong flags, missing or unreadable files, refused artifacts."""
EXIT_STATUS_HELP = "exit status: 0 ok, 1 a check failed (details on stderr), 2 bad usage or input"
"""The epilog of every command's --help."""


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


def missing_extra_line(exc: BaseException) -> str | None:
    """One `error:` line for a ModuleNotFoundError of a package an extra installs, in one of our entry points."""
    command = entry_point()
    if not isinstance(exc, ModuleNotFoundError) or not exc.name or command is None:
        return None
    module = exc.name.partition(".")[0]
    extra = extra_of(module)
    if extra is None:
        return None
    target = f"sunet-deploy[{extra}]" if extra else "sunet-deploy"
    which = f"the [{extra}] extra" if extra else "the core install"
    return f'error: python -m {command} needs {module} ({which}), which is not installed: pip install "{target}"'


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
