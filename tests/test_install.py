"""The core install (`pip install .`, no extra) is a deployment install without PyTorch: runtimes.predict
on an ONNX model runs in a process where every package that only an extra brings cannot be imported."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from factory import several_class_checkpoint
from photos import write_photos
from runtimes.predict import main as predict
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


BLOCKED_RUN = """
import runpy, sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (not in the core install)", name=name)

BLOCKED = set(sys.argv[1].split(","))
sys.meta_path.insert(0, Blocked())
try:
    import torch
except ImportError:
    pass
else:
    sys.exit("torch imported")
sys.argv = ["runtimes.predict", *sys.argv[2:]]
runpy.run_module("runtimes.predict", run_name="__main__", alter_sys=True)
"""


def test_core_install_has_no_torch():
    core = {requirement_name(r) for r in project()["dependencies"]}
    assert "onnxruntime" in core and not core & {"torch", "scipy", "safetensors", "matplotlib", "psutil"}
    assert "torch" in {requirement_name(r) for r in project()["optional-dependencies"]["torch"]}


def predict_in_core(*args: str) -> subprocess.CompletedProcess:
    """`python -m runtimes.predict ARGS` where the extras' packages cannot be imported."""
    blocked = extra_only_modules()
    assert {"torch", "scipy", "matplotlib", "onnx", "tritonclient"} <= blocked
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, ",".join(sorted(blocked)), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_predict_on_onnx_runs_with_only_the_core_install(tmp_path):
    from export.onnx import export_onnx

    photos = write_photos(tmp_path / "photos")
    checkpoint = several_class_checkpoint(tmp_path / "model.safetensors", read_image(photos["coffee"]))
    model = export_onnx(checkpoint, tmp_path / "model.onnx").path
    result = predict_in_core(str(model), str(tmp_path / "photos"), "-o", str(tmp_path / "core"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "7 of 7 inputs written" in result.stdout
    for other, extra in ((checkpoint, "torch"), ("triton://127.0.0.1:1/sunet", "serve")):  # one line, not a traceback
        result = predict_in_core(str(other), str(tmp_path / "photos"), "-o", str(tmp_path / "other"))
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr[-3000:]
        assert f"pip install 'sunet-deploy[{extra}]'" in result.stderr
    assert predict([str(model), str(tmp_path / "photos"), "-o", str(tmp_path / "full")]) == 0
    written = sorted(p.relative_to(tmp_path / "full") for p in (tmp_path / "full").rglob("*_mask.png"))
    assert len(written) == 7
    for path in written:
        assert (tmp_path / "core" / path).read_bytes() == (tmp_path / "full" / path).read_bytes()
