"""The core install (`pip install .`, no extra) is a deployment install without PyTorch: runtimes.predict
on an ONNX model runs in a process where every package that only an extra brings cannot be imported."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from factory import several_class_checkpoint
from photos import write_photos
from runtimes.predict import main as predict
from sunet_deploy.cli import PACKAGES
from sunet_deploy.pipeline.images import read_image

REPO = Path(__file__).resolve().parents[1]
tomllib = pytest.importorskip("tomllib", reason="tomllib (Python 3.11+) reads pyproject.toml")


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def extra_only_modules() -> set[str]:
    """Top-level modules of the distributions that only the extras require."""
    core = {requirement_name(r) for r in project()["dependencies"]}
    extras = {requirement_name(r) for reqs in project()["optional-dependencies"].values() for r in reqs} - core
    return {module for module, dists in packages_distributions().items()
            if any(requirement_name(d) in extras for d in dists)}


BLOCKER = """
import os, sys

BLOCKED = set(os.environ["SUNET_TEST_BLOCKED"].split(","))


class Hiding:
    \"\"\"Finds what `finder` finds, except the blocked packages: they look not installed.\"\"\"

    def __init__(self, finder):
        self.finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            return None
        find = getattr(self.finder, "find_spec", None)
        return find(name, path, target) if find else None

    def __getattr__(self, attribute):
        return getattr(self.finder, attribute)


sys.meta_path[:] = [Hiding(finder) for finder in sys.meta_path]
"""
"""A sitecustomize that makes the extras' packages unimportable in a Python process started with its folder
first on PYTHONPATH (and in every process that one starts)."""


@pytest.fixture(scope="session")
def core_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a process that sees only the core install."""
    folder = tmp_path_factory.mktemp("core_site")
    (folder / "sitecustomize.py").write_text(BLOCKER)
    blocked = extra_only_modules()
    assert {"torch", "scipy", "matplotlib", "onnx", "tritonclient"} <= blocked
    path = os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "SUNET_TEST_BLOCKED": ",".join(sorted(blocked))}
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "No module named 'torch'" in check.stderr, "the blocker does not block"
    return env


def run_in_core(env: dict[str, str], module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` where the extras' packages cannot be imported."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)


def test_core_install_has_no_torch():
    core = {requirement_name(r) for r in project()["dependencies"]}
    assert "onnxruntime" in core and not core & {"torch", "scipy", "safetensors", "matplotlib", "psutil"}
    assert "torch" in {requirement_name(r) for r in project()["optional-dependencies"]["torch"]}


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> dict[str, Path]:
    """The real photos, a checkpoint and its ONNX model (made here, where the extras are installed)."""
    from export.onnx import export_onnx

    root = tmp_path_factory.mktemp("artifacts")
    photos = write_photos(root / "photos")
    checkpoint = several_class_checkpoint(root / "model.safetensors", read_image(photos["coffee"]))
    return {"photos": root / "photos", "photo": photos["coffee"], "checkpoint": checkpoint,
            "onnx": export_onnx(checkpoint, root / "model.onnx").path}


def test_predict_on_onnx_runs_with_only_the_core_install(core_env, artifacts, tmp_path):
    model, photos = artifacts["onnx"], str(artifacts["photos"])
    result = run_in_core(core_env, "runtimes.predict", str(model), photos, "-o", str(tmp_path / "core"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "7 of 7 inputs written" in result.stdout
    for other, extra in ((artifacts["checkpoint"], "torch"), ("triton://127.0.0.1:1/sunet", "serve")):  # one line
        result = run_in_core(core_env, "runtimes.predict", str(other), photos, "-o", str(tmp_path / "other"))
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
        assert f"pip install 'sunet-deploy[{extra}]'" in result.stderr
    assert predict([str(model), photos, "-o", str(tmp_path / "full")]) == 0
    written = sorted(p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*_mask.png"))
    assert len(written) == 7
    for path in written:
        assert (tmp_path / "core" / path).read_bytes() == (tmp_path / "full" / path).read_bytes()


def entry_points() -> list[str]:
    """Every `python -m` entry point of the project: each module with `if __name__ == "__main__"` and each package
    with a __main__.py, under the top-level packages the missing-extra hook knows."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            if path.name == "__main__.py":
                found.append(".".join(parts[:-1]))
            elif re.search(r"""^if __name__ == ["']__main__["']""", path.read_text(), re.M):
                found.append(".".join(parts))
    return found


FAKE_SUNET_PREDICT = "#!/bin/sh\necho 'more runs: median 1.0 ms'\n"
REAL_CALLS = {
    "runtimes.predict": (["{checkpoint}", "{photos}", "-o", "{tmp}/predicted"], "pip install 'sunet-deploy[torch]'"),
    "runtimes.serve": (["{photos}"], "error: nvidia-pytriton is not installed"),
    "export.triton": (["{onnx}", "-o", "{tmp}/repository"], 'pip install "sunet-deploy[onnx'),
    "cpp_latency": (["{tmp}/sunet_predict", "{onnx}", "{photo}", "--repeat", "1", "--rounds", "1"], None),
    "sunet_deploy.flags": ([], None),
}
"""A real call of each entry point that gets past its imports in a core install, and what it must say (one
`error:` line with this text, exit 2) or None: it runs (exit 0). By full name, or by the module's own name
(benchmarks move into subpackages)."""

NEEDS = re.compile(r'^error: python -m (?P<module>\S+) needs (?P<packages>\w+(, \w+)*), not installed here: '
                   r'pip install "sunet-deploy\[(?P<extras>\w+(,\w+)*)\]"$')


def says_what_to_install(module: str, result: subprocess.CompletedProcess) -> None:
    """One line: the packages missing here that the module needs, and the extras that install them all."""
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 1, f"{module}: {result.returncode}\n{result.stderr[-3000:]}"
    said = NEEDS.match(lines[0])
    assert said and said["module"] == module, lines[0]
    packages, extras = said["packages"].split(", "), said["extras"].split(",")
    assert set(packages) <= extra_only_modules(), packages
    named = {requirement_name(r) for extra in extras for r in project()["optional-dependencies"][extra]}
    for package in packages:
        assert {requirement_name(d) for d in packages_distributions()[package]} & named, f"{package} not in {extras}"


def test_every_entry_point_says_what_to_install(core_env, artifacts, tmp_path):
    """`python -m X --help` for every entry point in a core install: its help, or one line naming the extra to
    install, exit 2. Those that get past their imports then make one real call, which runs or says what is
    missing in one line (an entry point whose imports fail never reaches its arguments). About 25 processes,
    each about a second of imports: 20-60 s on 2 cores."""
    modules = entry_points()
    assert {"train", "export.onnx", "runtimes.predict", "sunet_deploy.data"} <= set(modules) and len(modules) > 15
    with ThreadPoolExecutor(2) as pool:
        helps = dict(zip(modules, pool.map(lambda module: run_in_core(core_env, module, "--help"), modules)))
    for module, result in helps.items():
        if result.returncode == 0:
            assert f"usage: python -m {module}" in " ".join(result.stdout.split()), result.stdout[:500]
        else:
            says_what_to_install(module, result)
    ran = [module for module, result in helps.items() if result.returncode == 0]
    assert "runtimes.predict" in ran and "train" not in ran
    (tmp_path / "sunet_predict").write_text(FAKE_SUNET_PREDICT)
    (tmp_path / "sunet_predict").chmod(0o755)
    places = {**{k: str(v) for k, v in artifacts.items()}, "tmp": str(tmp_path)}
    for module in ran:
        call = REAL_CALLS.get(module) or REAL_CALLS.get(module.rpartition(".")[2])
        assert call, f"python -m {module} runs in a core install: give it a real call in REAL_CALLS"
        args, said = call
        result = run_in_core(core_env, module, *(arg.format(**places) for arg in args))
        if said is None:
            assert result.returncode == 0, f"{module}: {result.stderr[-3000:]}"
        else:
            assert result.returncode == 2 and result.stderr.splitlines() == [result.stderr.strip()], result.stderr
            assert result.stderr.startswith("error: ") and said in result.stderr, result.stderr


def test_the_hook_knows_every_package():
    """say_missing_extras acts on the packages cli.PACKAGES names: every top-level package the project installs."""
    found = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    installed = {name.rstrip("*") for name in found["include"]}
    assert set(PACKAGES) == installed
