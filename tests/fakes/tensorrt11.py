"""A fake `tensorrt` module of TensorRT 11.x (default version string "11.1.0").

API surface and enum values: tensorrt_api_11.json, transcribed from NVIDIA/TensorRT release/11.0
(93842ac9) and release/11.1 (90536162): python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp,
python/src/parsers/pyOnnx.cpp, include/NvInfer.h, NvInferRuntimeBase.h. There `BuilderFlag.FP16` is
gone (weak typing removed), `NetworkDefinitionCreationFlag.STRONGLY_TYPED` = 0 is deprecated and
ignored ("Strongly typed mode is always enabled"), and value 1 is PREFER_JIT_PYTHON_PLUGINS.

Inspector JSON, the 11.x schema (NVIDIA's "Migrating IEngineInspector Usage from TensorRT 10.x to
11.x", docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x-IEngineInspector.html):
"Bindings" is replaced by "I/O Tensors", a list of objects with Name, IOMode, DataType, Dimensions,
Location, IsShapeInferenceIO, ProfileInfo (Min/Opt/MaxShape, Format); the combined "Format/Datatype"
of layer tensors is split into "Format" and "Datatype" (key names as in the tensor schema of
.agents/skills/trt-perf-analysis/schemas/analyze-data.schema.json on release/11.1). The values of the
split fields ("Half", "Float"; the format description) are modelled on the I/O Tensors example of
that page; no full 11.x engine dump was available to copy. The layers themselves, Q/DQ ones included
("Weights": {"Type": "Int8"}), are the 10.x dump's (tensorrt_base.qdq_layers): assumed unchanged in 11.x.
"""

from __future__ import annotations

import json

from .tensorrt_base import Scenario, build_module, engine_layers

DTYPE_WORDS = {"Float": "FP32", "Half": "FP16", "Int8": "Int8", "Int64": "Int64"}  # Int8 as in "... vectorized row major Int8 format"


def _tensor(tensor) -> dict:
    return {"Name": tensor.name, "Location": "Device", "Dimensions": tensor.dims,
            "Format": tensor.layout.format(DTYPE_WORDS[tensor.dtype]), "Datatype": tensor.dtype}


def _io_tensor(tensor: dict, plan: dict) -> dict:
    shapes = next(iter(plan["profiles"][0].values()))
    return {"Name": tensor["name"], "IOMode": tensor["mode"].capitalize(),
            "DataType": {"FLOAT": "Float", "HALF": "Half", "INT64": "Int64"}[tensor["dtype"]],
            "Dimensions": [-1] * tensor["rank"], "Location": "Device", "IsShapeInferenceIO": False,
            "ProfileInfo": [{"MinShape": shapes[0], "OptShape": shapes[1], "MaxShape": shapes[2],
                             "Format": "Row major linear FP32 format (kLINEAR)"}]}


def inspector_json(plan: dict, scenario: Scenario) -> str:
    layers = [{"Name": layer.name, "LayerType": layer.layer_type, "Inputs": [_tensor(t) for t in layer.inputs],
               "Outputs": [_tensor(t) for t in layer.outputs], **layer.extra}
              for layer in engine_layers(plan, scenario)]
    return json.dumps({"Layers": layers, "I/O Tensors": [_io_tensor(t, plan) for t in plan["io"]]}, indent=1)


def make(version: str = "11.1.0", **scenario):
    return build_module(11, version, Scenario(**scenario), inspector_json)
