"""Everything the project touches on `tensorrt` exists, with that signature, in the real 10.x and 11.x API.

The real API surface is data (tests/fakes/tensorrt_api_10.json, _11.json), transcribed from NVIDIA/
TensorRT's pybind11 sources and headers (branches and commits inside). What the project touches is
collected automatically, so new code is checked too:
- statically: every `trt.X` / `trt.X.Y` in the project's sources (an attribute only looked up through
  hasattr/getattr is a capability test and needs to exist in one major version only);
- dynamically: the build and runtime code paths run against the fakes, which record every attribute
  read or written on a TensorRT object; methods are then checked by the fakes' own signatures, and the
  fakes themselves are checked to define nothing the real classes lack.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest

from export import tensorrt as trt_export
from fakes import tensorrt10, tensorrt11
from fakes.pycuda_driver import FakeDriver
from fakes.tensorrt_base import RECORDED, load_api
from runtimes import trt_buffers
from runtimes import trt as trt_runtime
from runtimes.options import TensorRTOptions
from sunet_deploy import engine_env
from sunet_deploy.engine_env import GpuInfo
from sunet_deploy.formats import EngineRecipe, OnnxRecipe

ROOT = Path(__file__).parent.parent
SOURCES = sorted(p for folder in ("export", "runtimes", "sunet_deploy", "benchmarks", "train")
                 for p in (ROOT / folder).rglob("*.py"))
APIS = {10: load_api(10), 11: load_api(11)}
MODULE_ATTRIBUTES = {"__version__"}  # set in python/packaging/bindings_wheel/tensorrt/__init__.py (both majors)
GPU = GpuInfo("NVIDIA Test GPU", "9.0")


def has(api: dict, chain: tuple[str, ...]) -> bool:
    """Whether `trt.<chain>` exists in this API surface."""
    head, *rest = chain
    if not rest:
        return head in api["classes"] or head in api["enums"] or head in api["functions"] or head in MODULE_ATTRIBUTES
    if head in api["enums"]:
        return rest[0] in api["enums"][head]
    return head in api["classes"] and member_of(api, head, rest[0]) is not None


def member_of(api: dict, cls: str, name: str):
    """('method', overload argument lists) or ('property', kind) of `cls.name`, looking through base classes."""
    entry = api["classes"].get(cls)
    if entry is None:
        return None
    if name in entry["methods"]:
        return "method", entry["methods"][name]
    if name in entry["properties"]:
        return "property", entry["properties"][name]
    return next((found for base in entry["bases"] if (found := member_of(api, base, name))), None)


class TrtUses(ast.NodeVisitor):
    """`trt.X[.Y]` chains in one module; those inside hasattr()/getattr() are capability tests."""

    def __init__(self) -> None:
        self.direct: set[tuple[str, ...]] = set()
        self.probed: set[tuple[str, ...]] = set()

    def visit_Call(self, node: ast.Call) -> None:
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in ("hasattr", "getattr") and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
            base = chain_of(node.args[0])
            if base is not None:
                self.probed.add((*base, node.args[1].value))
                for arg in node.args[2:]:
                    self.visit(arg)
                return
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = chain_of(node)
        if chain is not None:
            self.direct.add(chain[:2])
            return
        self.generic_visit(node)


def chain_of(node) -> tuple[str, ...] | None:
    names = []
    while isinstance(node, ast.Attribute):
        names.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in ("trt", "tensorrt") and names:
        return tuple(reversed(names))
    return None


def scan() -> dict[Path, TrtUses]:
    uses = {}
    for path in SOURCES:
        visitor = TrtUses()
        visitor.visit(ast.parse(path.read_text(), str(path)))
        if visitor.direct or visitor.probed:
            uses[path.relative_to(ROOT)] = visitor
    return uses


def test_the_scan_finds_the_project_s_tensorrt_code():
    uses = scan()
    assert {str(p) for p in uses} >= {"export/trt_build.py", "runtimes/trt.py"}
    assert ("BuilderFlag", "FP16") in uses[Path("export/trt_build.py")].probed
    assert ("BuilderFlag", "FP16") not in uses[Path("export/trt_build.py")].direct


@pytest.mark.parametrize("major", [10, 11])
def test_every_tensorrt_attribute_in_the_sources_exists(major):
    missing = [f"{path}: trt.{'.'.join(chain)}" for path, visitor in scan().items()
               for chain in sorted(visitor.direct) if not has(APIS[major], chain)]
    assert missing == [], f"not in the TensorRT {major}.x API (tests/fakes/tensorrt_api_{major}.json)"


def test_capability_tests_probe_attributes_that_exist_somewhere():
    for path, visitor in scan().items():
        for chain in visitor.probed:
            assert any(has(api, chain) for api in APIS.values()), f"{path}: {'.'.join(chain)} exists in no version"
    assert has(APIS[10], ("BuilderFlag", "FP16")) and not has(APIS[11], ("BuilderFlag", "FP16"))


@pytest.mark.parametrize("fake", [tensorrt10, tensorrt11])
def test_the_fakes_define_only_real_api(fake):
    trt = fake.make()
    api = trt.api
    for name in dir(trt):
        cls = getattr(trt, name)
        if not (isinstance(cls, type) and hasattr(cls, "_api")) or cls._api == "INetworkDefinition":
            continue  # INetworkDefinition (pyGraph.cpp) is only passed along, never used by the project
        constructible = "__init__" in api["classes"][cls._api]["methods"]
        for attr, value in vars(cls).items():
            if attr.startswith("_") and not (attr == "__init__" and constructible):
                continue  # private helpers, and constructors of classes only TensorRT itself creates
            found = member_of(api, cls._api, attr)
            assert found is not None, f"the fake {cls._api}.{attr} is not in the real API"
            if callable(value) and not isinstance(value, (property, type)) and found[0] == "method":
                params = [p for p in inspect.signature(value).parameters if p != "self"]
                assert params in found[1], f"{cls._api}.{attr}{tuple(params)} matches no real overload {found[1]}"


@pytest.fixture
def onnx_pair(artifacts):
    return artifacts.onnx(), artifacts.onnx(recipe=OnnxRecipe(fp16=True))


@pytest.mark.parametrize("fake", [tensorrt10, tensorrt11])
def test_the_code_paths_touch_only_real_api(tmp_path, monkeypatch, onnx_pair, fake):
    fp32, fp16 = onnx_pair
    trt = fake.make()
    RECORDED.clear()
    shape = (1, 3, 64, 64)
    options = EngineRecipe(min=shape, opt=shape, max=shape, timing_cache=tmp_path / "cache")
    engine = tmp_path / "m.engine"
    trt_export.build_engine(fp16, engine, options, trt=trt, gpu=GPU)
    trt_export.build_engine(fp32, tmp_path / "f.engine", EngineRecipe(fp32=True), trt=trt, gpu=GPU)

    driver = FakeDriver()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(engine_env, "query_gpu", lambda device_id=0: GPU)
    monkeypatch.setattr(trt_runtime, "_cuda_device_count", lambda: 1)
    monkeypatch.setattr(trt_buffers, "_pycuda_driver", lambda: driver)
    with trt_runtime.TensorRTRuntime(engine, TensorRTOptions(buffers="pycuda")) as runtime:
        runtime.infer(np.zeros(shape, np.float32))

    touched = sorted(RECORDED)
    assert ("IBuilderConfig", "set_timing_cache") in touched and ("IExecutionContext", "execute_async_v3") in touched
    unknown = [f"{cls}.{attr}" for cls, attr in touched if member_of(trt.api, cls, attr) is None]
    assert unknown == [], f"touched but not in the TensorRT {trt.__version__} API"
