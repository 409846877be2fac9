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


@pytest.mark.parametrize(("version_header", "major"), [
    ("#define NV_TENSORRT_MAJOR 10 //!< TensorRT major version.\n", 10),  # include/NvInferVersion.h, release/10.0
    ("#define TRT_MAJOR_ENTERPRISE 11\n#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< TensorRT major version.\n",
     11),  # release/10.16 and 11.1
])
def test_tensorrt_found_as_pip_lays_it_out(tmp_path, version_header, major):
    """pip's tensorrt_libs holds libnvinfer.so.<major> and no unversioned libnvinfer.so; given the headers,
    CMake finds that library (a fake layout: empty files, configure only)."""
    include, libs = tmp_path / "include", tmp_path / "site-packages" / "tensorrt_libs"
    include.mkdir()
    libs.mkdir(parents=True)
    (include / "NvInfer.h").touch()
    (include / "NvInferVersion.h").write_text(version_header)
    for name in (f"libnvinfer.so.{major}", f"libnvinfer_plugin.so.{major}", f"libnvonnxparser.so.{major}"):
        (libs / name).touch()
    done = subprocess.run(["cmake", "-S", str(ROOT / "runtimes/cpp"), "-B", str(tmp_path / "build"), NO_TORCH,
                           "-DSUNET_WITH_ONNXRUNTIME=OFF", f"-DTensorRT_INCLUDE_DIR={include}",
                           f"-DTensorRT_LIBRARY_DIR={libs}"], capture_output=True, text=True)
    assert f"TensorRT found: {libs / f'libnvinfer.so.{major}'}" in done.stdout
    assert "TensorRT (NvInfer.h" not in done.stdout + done.stderr
