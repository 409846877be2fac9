"""runtimes/cpp's per-backend CMake options (AUTO, ON, OFF): configure-only checks, no compiling."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MISSING_TOOLS = [tool for tool in ("cmake", "c++") if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(bool(MISSING_TOOLS), reason=f"C++ runtime needs {', '.join(MISSING_TOOLS)} on PATH")
NO_TORCH = "-DCMAKE_DISABLE_FIND_PACKAGE_Torch=ON"


@pytest.mark.parametrize(("options", "message"), [
    ([NO_TORCH, "-DSUNET_WITH_AOTI=ON", "-DSUNET_WITH_ONNXRUNTIME=OFF"], "SUNET_WITH_AOTI=ON but not found: LibTorch"),
    ([NO_TORCH, "-DSUNET_WITH_ONNXRUNTIME=OFF", "-DSUNET_WITH_TENSORRT=OFF"], "no backend to build"),
    (["-DSUNET_WITH_ONNXRUNTIME=maybe"], "SUNET_WITH_ONNXRUNTIME is 'maybe'; it must be AUTO, ON or OFF"),
])
def test_configure_refuses_with_a_clear_message(tmp_path, options, message):
    done = subprocess.run(["cmake", "-S", str(ROOT / "runtimes/cpp"), "-B", str(tmp_path), *options],
                          capture_output=True, text=True)
    assert done.returncode != 0
    assert message in " ".join(done.stderr.split())  # CMake wraps its error messages
