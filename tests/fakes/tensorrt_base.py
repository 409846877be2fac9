"""What the fake `tensorrt` modules of TensorRT 10.x and 11.x share (see tensorrt10.py, tensorrt11.py).

Copied behaviour, with where it was read (NVIDIA/TensorRT, branches release/10.0, release/10.16,
release/11.0, release/11.1; commits in tensorrt_api_10.json / tensorrt_api_11.json):

- class, method, argument and property names, and every enum value, come from tensorrt_api_*.json,
  transcribed from python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp, python/src/parsers/pyOnnx.cpp
  and include/NvInfer*.h; enums are integers (pybind11 py::arithmetic enums);
- `nptype` as in python/packaging/bindings_wheel/tensorrt/__init__.py: no numpy type for BF16, FP8,
  INT4, FP4, E8M0, so it raises TypeError for them;
- `IBuilderConfig.get_timing_cache()` is None while no cache is set, and `set_timing_cache(cache,
  ignore_mismatch=False)` returns False for a cache from another device and sets nothing
  (python/docstrings/infer/pyCoreDoc.h: set_timing_cache, get_timing_cache);
- `BuilderFlag.TF32` is set by default (NvInfer.h: "kTF32 ... Enabled by default");
- `build_serialized_network`, `deserialize_cuda_engine` and `create_execution_context` return None on
  failure (out of memory, a foreign engine), and `set_input_shape` returns False for a shape outside
  the optimization profile (Polygraphy backend/trt/runner.py and loader.py check each of these);
- the engine inspector's JSON follows the version's schema (each fake module supplies it).

Every public attribute read or written on a fake object is recorded in RECORDED, and writing a
property the real class does not have raises AttributeError, so tests/test_tensorrt_api_conformance.py
can check what the project touched against the real API surface.
"""

from __future__ import annotations

import ctypes
import enum
import json
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

HERE = Path(__file__).parent
RECORDED: set[tuple[str, str]] = set()
ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"
CACHE_MAGIC = b"FAKE-TRT-CACHE\n"
NUMPY_TYPES = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
               "BOOL": np.bool_, "UINT8": np.uint8}
ONNX_TO_TRT = {onnx.TensorProto.FLOAT: "FLOAT", onnx.TensorProto.FLOAT16: "HALF", onnx.TensorProto.INT64: "INT64",
               onnx.TensorProto.INT32: "INT32", onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.BOOL: "BOOL",
               onnx.TensorProto.BFLOAT16: "BF16"}


def load_api(major: int) -> dict:
    return json.loads((HERE / f"tensorrt_api_{major}.json").read_text())


@dataclass
class Scenario:
    """What the fake TensorRT will do: the knobs a test turns to reach each failure path."""

    device: str = "NVIDIA Test GPU sm_90"  # timing caches and engines are tied to it
    parse_errors: tuple[str, ...] = ()
    build_fails: bool = False
    deserialize_fails: bool = False
    context_fails: bool = False  # create_execution_context returns None (out of device memory)
    fp16_share: float = 1.0  # share of the convolutions the builder runs in FP16 when FP16 is allowed
    int8_share: float = 1.0  # share of the convolutions a strongly typed Q/DQ network runs in INT8
    on_execute: object = None  # called with the stream handle by execute_async_v3 (fake CUDA checks)
    executed_streams: list = field(default_factory=list)


def fake_logits(batch: np.ndarray, num_classes: int) -> np.ndarray:
    """What the fake engine computes: class c scores input channel c % 3 times (c + 1)."""
    return np.stack([batch[:, c % 3] * (c + 1) for c in range(num_classes)], axis=1)


def host_view(address: int, shape: tuple, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buffer = (ctypes.c_byte * (count * dtype.itemsize)).from_address(address)
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


class Recorded:
    """Records public attribute use; only the real class's writable properties can be set."""

    _api: str = ""
    _writable: frozenset = frozenset()

    def __getattribute__(self, name):
        if not name.startswith("_"):
            RECORDED.add((type(self)._api, name))
        return object.__getattribute__(self, name)

    def __setattr__(self, name, value):
        if not name.startswith("_"):
            RECORDED.add((type(self)._api, name))
            if name not in type(self)._writable:
                raise AttributeError(f"{type(self)._api}.{name} is not a writable property")
        object.__setattr__(self, name, value)


def build_module(major: int, version: str, scenario: Scenario, inspector_json) -> types.ModuleType:
    """A fake `tensorrt` module of `version`; `inspector_json(engine_plan) -> str` is the version's schema."""
    api = load_api(major)
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.scenario = scenario
    trt.api = api
    for name, members in api["enums"].items():
        setattr(trt, name, enum.IntEnum(name, {k: m["value"] for k, m in members.items() if m["value"] is not None}))
    DataType = trt.DataType

    def nptype(trt_type):
        for name, numpy_type in NUMPY_TYPES.items():
            if trt_type == getattr(DataType, name):
                return numpy_type
        raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")

    trt.nptype = nptype

    def writable(cls_name):
        return frozenset(p for p, kind in api["classes"][cls_name]["properties"].items() if kind == "readwrite")

    class Logger(Recorded):
        _api = "Logger"
        _writable = writable("Logger")

        def __init__(self, min_severity=trt.Severity.WARNING):
            object.__setattr__(self, "min_severity", min_severity)

    for severity in trt.Severity:
        setattr(Logger, severity.name, severity)

    class ITimingCache(Recorded):
        _api = "ITimingCache"

        def __init__(self, device, entries):
            self._device, self._entries = device, entries

        def serialize(self):
            return IHostMemory(CACHE_MAGIC + json.dumps({"device": self._device, "entries": self._entries}).encode())

    class IHostMemory(Recorded):
        _api = "IHostMemory"

        def __init__(self, data: bytes):
            self._data = data

        @property
        def nbytes(self):
            return len(self._data)

        def __bytes__(self):
            return self._data

    class IOptimizationProfile(Recorded):
        _api = "IOptimizationProfile"

        def __init__(self):
            self._shapes = {}

        def set_shape(self, input, min, opt, max):
            self._shapes[input] = (tuple(min), tuple(opt), tuple(max))

    class IBuilderConfig(Recorded):
        _api = "IBuilderConfig"
        _writable = writable("IBuilderConfig")

        def __init__(self):
            self._flags = {trt.BuilderFlag.TF32}
            self._pools, self._profiles, self._cache = {}, [], None
            object.__setattr__(self, "builder_optimization_level", 3)
            object.__setattr__(self, "profiling_verbosity", trt.ProfilingVerbosity.LAYER_NAMES_ONLY)

        def set_memory_pool_limit(self, pool, pool_size):
            self._pools[pool] = pool_size

        def set_flag(self, flag):
            self._flags.add(trt.BuilderFlag(flag))

        def clear_flag(self, flag):
            self._flags.discard(trt.BuilderFlag(flag))

        def get_flag(self, flag):
            return trt.BuilderFlag(flag) in self._flags

        def add_optimization_profile(self, profile):
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache):
            data = bytes(serialized_timing_cache)
            if not data:
                return ITimingCache(scenario.device, [])
            if not data.startswith(CACHE_MAGIC):
                return None  # not a timing cache at all
            content = json.loads(data[len(CACHE_MAGIC):])
            return ITimingCache(content["device"], content["entries"])

        def set_timing_cache(self, cache, ignore_mismatch):
            if cache._device != scenario.device and not ignore_mismatch:
                return False  # "A failure will be reported if the CUDA device property ... is different"
            self._cache = cache
            return True

        def get_timing_cache(self):
            return self._cache

    class INetworkDefinition(Recorded):
        _api = "INetworkDefinition"

        def __init__(self, flags):
            self._flags = flags
            self._graph = None

    class Builder(Recorded):
        _api = "Builder"
        _writable = writable("Builder")

        def __init__(self, logger):
            self._logger = logger

        def create_network(self, flags=0):
            return INetworkDefinition(flags)

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            if scenario.build_fails or network._graph is None:
                return None
            strongly_typed = _strongly_typed(network._flags)
            fp16_graph = network._graph["fp16_weights"]
            fp16 = fp16_graph if strongly_typed else trt.BuilderFlag.FP16 in config._flags
            if config._cache is not None:
                config._cache._entries.append(f"conv tactics for {network._graph['inputs'][0]['name']}")
            settings = config.__dict__  # read without recording: the project did not touch these here
            # explicit quantization: in a strongly typed network the Q/DQ nodes make their tensors INT8
            plan = {"device": scenario.device, "network_flags": network._flags, "fp16": fp16,
                    "int8": strongly_typed and network._graph["qdq"],
                    "tf32": trt.BuilderFlag.TF32 in config._flags, "strongly_typed": strongly_typed,
                    "flags": sorted(int(f) for f in config._flags),
                    "workspace": config._pools.get(trt.MemoryPoolType.WORKSPACE),
                    "optimization_level": settings["builder_optimization_level"],
                    "verbosity": int(settings["profiling_verbosity"]), "io": network._graph["io"],
                    "profiles": [{k: [list(s) for s in v] for k, v in p._shapes.items()} for p in config._profiles]}
            return IHostMemory(ENGINE_MAGIC + json.dumps(plan).encode())

    def _strongly_typed(flags: int) -> bool:
        if not hasattr(trt.BuilderFlag, "FP16"):
            return True  # TensorRT 11: "Strongly typed mode is always enabled" (NvInfer.h)
        return bool(flags & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))

    class OnnxParser(Recorded):
        _api = "OnnxParser"
        _writable = writable("OnnxParser")

        def __init__(self, network, logger):
            self._network = network

        @property
        def num_errors(self):
            return len(scenario.parse_errors)

        def get_error(self, index):
            return scenario.parse_errors[index]

        def parse_from_file(self, model):
            if scenario.parse_errors:
                return False
            graph = onnx.load(model, load_external_data=False).graph
            io = [{"name": v.name, "mode": mode, "dtype": ONNX_TO_TRT[v.type.tensor_type.elem_type],
                   "rank": len(v.type.tensor_type.shape.dim)}
                  for values, mode in ((graph.input, "INPUT"), (graph.output, "OUTPUT")) for v in values]
            fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
            qdq = any(node.op_type == "QuantizeLinear" for node in graph.node)
            self._network._graph = {"io": io, "fp16_weights": fp16, "qdq": qdq, "inputs": io[:1]}
            return True

    class EngineInspector(Recorded):
        _api = "EngineInspector"
        _writable = writable("EngineInspector")

        def __init__(self, plan):
            self._plan = plan

        def get_engine_information(self, format):
            if format != trt.LayerInformationFormat.JSON:
                raise NotImplementedError("the fake inspector writes JSON only")
            return inspector_json(self._plan, scenario)

    class IExecutionContext(Recorded):
        _api = "IExecutionContext"
        _writable = writable("IExecutionContext")

        def __init__(self, engine):
            self._engine = engine
            self._shapes, self._addresses = {}, {}

        def set_input_shape(self, name, shape):
            low, _, high = self._engine.get_tensor_profile_shape(name, 0)
            shape = tuple(shape)
            if len(shape) != len(low) or any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
                return False  # TensorRT logs "... outside of the optimization profile" and refuses
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            if name in self._shapes:
                return self._shapes[name]
            source = next(iter(self._shapes.values()), None)
            rank = self._engine._io[name]["rank"]
            if source is None:
                return (-1,) * rank
            n, _, h, w = source
            return (n, self._engine._num_classes, h, w) if rank == 4 else (n, h, w)

        def set_tensor_address(self, name, memory):
            self._addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle):
            scenario.executed_streams.append(stream_handle)
            if scenario.on_execute is not None:
                scenario.on_execute(stream_handle)
            inputs = [n for n, t in self._engine._io.items() if t["mode"] == "INPUT"]
            outputs = [n for n, t in self._engine._io.items() if t["mode"] == "OUTPUT"]
            batch = host_view(self._addresses[inputs[0]], self._shapes[inputs[0]],
                              NUMPY_TYPES[self._engine._io[inputs[0]]["dtype"]])
            for name in outputs:
                out = host_view(self._addresses[name], self.get_tensor_shape(name),
                                NUMPY_TYPES[self._engine._io[name]["dtype"]])
                logits = fake_logits(batch.astype(np.float32), self._engine._num_classes)
                out[...] = logits if out.ndim == 4 else logits.argmax(axis=1)
            return True

    class ICudaEngine(Recorded):
        _api = "ICudaEngine"
        _writable = writable("ICudaEngine")
        _num_classes = 4

        def __init__(self, plan):
            self._plan = plan
            self._io = {t["name"]: t for t in plan["io"]}

        @property
        def num_io_tensors(self):
            return len(self._io)

        def get_tensor_name(self, index):
            return list(self._io)[index]

        def get_tensor_mode(self, name):
            return getattr(trt.TensorIOMode, self._io[name]["mode"])

        def get_tensor_dtype(self, name):
            return getattr(DataType, self._io[name]["dtype"])

        def get_tensor_profile_shape(self, name, profile_index):
            return [tuple(s) for s in self._plan["profiles"][profile_index][name]]

        def create_execution_context(self, strategy=trt.ExecutionContextAllocationStrategy.STATIC):
            return None if scenario.context_fails else IExecutionContext(self)

        def create_engine_inspector(self):
            return EngineInspector(self._plan)

    class Runtime(Recorded):
        _api = "Runtime"
        _writable = writable("Runtime")

        def __init__(self, logger):
            self._logger = logger

        def deserialize_cuda_engine(self, serialized_engine):
            data = bytes(serialized_engine)
            if scenario.deserialize_fails or not data.startswith(ENGINE_MAGIC):
                return None  # TensorRT logs the reason and returns nullptr
            plan = json.loads(data[len(ENGINE_MAGIC):])
            return None if plan["device"] != scenario.device else ICudaEngine(plan)

    for cls in (Logger, Builder, Runtime, OnnxParser, IBuilderConfig, IOptimizationProfile, ITimingCache,
                IHostMemory, INetworkDefinition, ICudaEngine, IExecutionContext, EngineInspector):
        setattr(trt, cls.__name__, cls)
    return trt


def engine_bytes(io=None, profile=((1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64)), device=Scenario.device,
                 fp16=True) -> bytes:
    """A serialized fake engine, as the fake builder writes it (for runtime tests that need no build)."""
    io = io or [{"name": "input", "mode": "INPUT", "dtype": "FLOAT", "rank": 4},
                {"name": "logits", "mode": "OUTPUT", "dtype": "FLOAT", "rank": 4}]
    plan = {"device": device, "io": io, "fp16": fp16, "profiles": [{io[0]["name"]: [list(s) for s in profile]}]}
    return ENGINE_MAGIC + json.dumps(plan).encode()


LINEAR = "Row major linear {}"  # layouts as the inspector prints them, "{}" standing for the type word
CHANNEL_MAJOR_8 = "Channel major {} format where channel % 8 == 0"
VECTORIZED_32 = "Thirty-two wide channel vectorized row major {} format"


@dataclass
class Tensor:
    name: str
    dims: list
    dtype: str  # the DataType name as TensorRT prints it: "Float", "Half", "Int8", "Int64"
    layout: str = LINEAR  # the format description with "{}" where the type word goes ("FP32", "FP16", "Int8")


@dataclass
class Layer:
    name: str
    layer_type: str
    inputs: list
    outputs: list
    extra: dict


DIMS = [-1, 16, -1, -1]


def engine_layers(plan: dict, scenario: Scenario, convolutions: int = 8) -> list[Layer]:
    """The layers a built SUNet-like engine shows: reformats at the boundary, CaskConvolution layers and a
    Myelin-compiled resize/add region. A weakly typed FP16 build runs `scenario.fp16_share` of the
    convolutions in FP16; a strongly typed build takes every type from the graph (FP16 where its weights
    are FP16), and a Q/DQ graph gives explicit-quantization layers (`qdq_layers`)."""
    fp16 = plan.get("fp16", False)
    if plan.get("int8"):
        return qdq_layers("Half" if fp16 else "Float", round(convolutions * scenario.int8_share), convolutions)
    half = round(convolutions * scenario.fp16_share) if fp16 else 0
    tf32 = plan.get("tf32", False)
    layers = [Layer("Reformatting CopyNode for Input Tensor 0 to /stem/conv/Conv + /stem/relu/Relu", "Reformat",
                    [Tensor("input", [-1, 3, -1, -1], "Float")],
                    [Tensor("Reformatted Input Tensor 0", [-1, 3, -1, -1], "Half" if fp16 else "Float",
                            CHANNEL_MAJOR_8 if fp16 else LINEAR)],
                    {"ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x00000000000003e8"})]
    for i in range(convolutions):
        kind = "Half" if i < half else "Float"
        gemm = "f16f16_f16f16_f16" if kind == "Half" else "tf32f32_tf32f32_f32" if tf32 else "f32f32_f32f32_f32"
        layers.append(Layer(f"/block{i}/conv/Conv + /block{i}/relu/Relu", "CaskConvolution",
                            [Tensor(f"/block{i - 1}/relu/Relu_output_0", DIMS, kind)],
                            [Tensor(f"/block{i}/relu/Relu_output_0", DIMS, kind)],
                            _convolution_extra(kind, kind, gemm)))
    return layers + _myelin_head("Half" if fp16 else "Float", f"/block{convolutions - 1}/relu/Relu_output_0")


def qdq_layers(float_type: str, int8: int, convolutions: int) -> list[Layer]:
    """A strongly typed Q/DQ network as TensorRT 10.x shows it, modelled on the QAT ResNet dump
    tools/experimental/trt-engine-explorer/examples/pytorch/resnet/A100/qat/resnet-qat.onnx.engine.graph.json
    (NVIDIA/TensorRT release/10.16, added by commit 7a07608d; its build metadata says "Precision":
    "FP32+FP16+INT8", a flag-built engine: here the float types come from the graph instead, as a
    strongly typed build takes them; the layer layout is the dump's):

    - a QuantizeLinear is a Reformat layer, "Origin": "QDQ", with an Int8 output;
    - an INT8 convolution (name "<weights> + QuantizeLinear_N + Conv_M") has an Int8 input and
      "Weights": {"Type": "Int8"} (its bias stays "Float"); its output is Int8 only when a Q follows:
      followed by a float layer it keeps a float output ("conv1.weight + QuantizeLinear_7 + Conv_9":
      Int8 in, FP32 out before MaxPool), and fused with a float residual Add it takes that float tensor
      as a second input and writes a float output ("... + Conv_34 + Add_36 + Relu_37": Int8 + FP16 in,
      FP16 out, tactic "i8f16");
    - layers outside the convolutions run in the graph's float type (`float_type`: "Half" for FP16 parts).
    The first `int8` convolutions are quantized; the others read and write `float_type` with float weights."""
    layout = VECTORIZED_32 if float_type == "Half" else LINEAR
    layers = [_qdq("QuantizeLinear", Tensor("input", DIMS, "Float"), Tensor("input_q", DIMS, "Int8", VECTORIZED_32))]
    current, residual = layers[0].outputs[0], Tensor("input", DIMS, "Float")

    def convert(tensor: Tensor, dtype: str) -> Tensor:  # a Q or DQ layer where the type changes
        if tensor.dtype == dtype:
            return tensor
        op, new = ("QuantizeLinear", Tensor(f"{tensor.name}_q", DIMS, "Int8", VECTORIZED_32)) if dtype == "Int8" \
            else ("DequantizeLinear", Tensor(f"{tensor.name}_dq", DIMS, float_type, layout))
        layers.append(_qdq(op, tensor, new))
        return new

    for i in range(convolutions):
        conv = f"/block{i}/conv/Conv"
        if i >= int8:  # kept in floating point
            out = Tensor(f"b{i}", DIMS, float_type, layout)
            layers.append(Layer(f"{conv} + /block{i}/relu/Relu", "CaskConvolution", [convert(current, float_type)],
                                [out], _convolution_extra(float_type, float_type, "f16f16_f16f16_f16")))
            current = out
            continue
        source = convert(current, "Int8")
        name = f"{conv}_weight + QuantizeLinear_w{i} + {conv}"
        if i == 0 or i % 3 == 2:  # followed by a float layer, or fused with the float residual Add
            out = Tensor(f"b{i}", DIMS, float_type, layout)
            inputs = [source, residual] if i else [source]
            fused = f" + /block{i}/Add + /block{i}/relu/Relu" if i else f" + /block{i}/relu/Relu"
            gemm = "i8f16_i8i32_f32" if i and float_type == "Half" else "i8i8_i8i32_f32"
            layers.append(Layer(name + fused, "CaskConvolution", inputs, [out], _convolution_extra("Int8", "Float", gemm)))
            current = residual = out
        else:
            out = Tensor(f"q{i}", DIMS, "Int8", VECTORIZED_32)
            layers.append(Layer(f"{name} + /block{i}/relu/Relu", "CaskConvolution", [source], [out],
                                _convolution_extra("Int8", "Float", "i8i8_i8i32_f32")))
            current = out
    return layers + _myelin_head(float_type, convert(current, float_type).name)


def _qdq(op: str, source: Tensor, output: Tensor) -> Layer:
    return Layer(f"{op}_{source.name}", "Reformat", [source], [output],
                 {"ParameterType": "Reformat", "Origin": "QDQ", "TacticValue": "0x00000000000003ea"})


def _convolution_extra(weights: str, bias: str, gemm: str) -> dict:
    return {"ParameterType": "Convolution", "Kernel": [3, 3], "Groups": 1, "OutMaps": 16,
            "Weights": {"Type": weights, "Count": 2304}, "Bias": {"Type": bias, "Count": 16},
            "TacticName": f"sm90_xmma_fprop_implicit_gemm_{gemm}_nhwckrsc_nhwc", "TacticValue": "0x9fc1d6e3a5b4c2d1"}


def _myelin_head(float_type: str, source: str) -> list[Layer]:
    """The Myelin-compiled resize/add region and the reformat of the output to FP32."""
    return [Layer("__myl_ResizeAdd_myl0_9", "kgen", [Tensor(source, DIMS, float_type)],
                  [Tensor("logits_myl", [-1, 4, -1, -1], float_type)],
                  {"TacticName": "__myl_ResizeAdd_0x7f3ae1c9d05b41e28a6b", "StreamId": 0, "Metadata": ""}),
            Layer("Reformatting CopyNode for Output Tensor 0 to __myl_ResizeAdd_myl0_9", "Reformat",
                  [Tensor("logits_myl", [-1, 4, -1, -1], float_type)], [Tensor("logits", [-1, 4, -1, -1], "Float")],
                  {"ParameterType": "Reformat", "Origin": "REFORMAT", "TacticValue": "0x00000000000003e8"})]
