"""A fake `tensorrt` module of TensorRT 10.x (default version string "10.9.0").

API surface and enum values: tensorrt_api_10.json, transcribed from NVIDIA/TensorRT release/10.0
(ccf11997) and release/10.16 (d0faf303): python/src/infer/pyCore.cpp, pyFoundationalTypes.cpp,
python/src/parsers/pyOnnx.cpp, include/NvInfer.h, NvInferRuntimeBase.h. There `BuilderFlag.FP16` = 0
exists (deprecated since 10.12) and `NetworkDefinitionCreationFlag.STRONGLY_TYPED` = 1.

Inspector JSON (`get_engine_information(LayerInformationFormat.JSON)`, ProfilingVerbosity.DETAILED),
the 10.x schema: {"Layers": [...], "Bindings": [tensor names]}; each layer tensor has Name, Location,
Dimensions and one combined "Format/Datatype" string. Modelled on real outputs: NVIDIA/TensorRT issue
#4020 (TensorRT 10.x trtexec --exportLayerInfo: "Row major linear FP32", "Channel major FP16 format
where channel % 8 == 0", TacticValue, StreamId, Metadata); the Myelin layer ("LayerType": "kgen",
short "Format/Datatype": "Half", TacticName instead of TacticValue) on samples/sampleEditableTimingCache/
README.md of release/10.16 ("Name: matMul1_myl0_0, LayerType: gemm, ... Format/Datatype: Float ...
TacticName: ..., StreamId: 0"); "Bindings" on tools/experimental/trt-engine-explorer/tests/inputs/
*.graph.json of release/10.16. Explicit-quantization (Q/DQ) layers: see tensorrt_base.qdq_layers
(examples/pytorch/resnet/A100/qat/resnet-qat.onnx.engine.graph.json of trt-engine-explorer: "Thirty-two
wide channel vectorized row major Int8 format", "Weights": {"Type": "Int8", "Count": ...}).
"""

from __future__ import annotations

import json

from .tensorrt_base import Scenario, build_module, engine_layers

DTYPE_WORDS = {"Float": "FP32", "Half": "FP16", "Int8": "Int8", "Int64": "Int64"}  # Int8 as in "... vectorized row major Int8 format"


def _tensor(tensor, myelin: bool) -> dict:
    # Myelin layers print the bare type ("Float", "Half"), the others a format with the type word in it
    text = tensor.dtype if myelin else tensor.layout.format(DTYPE_WORDS[tensor.dtype])
    return {"Name": tensor.name, "Location": "Device", "Dimensions": tensor.dims, "Format/Datatype": text}


def inspector_json(plan: dict, scenario: Scenario) -> str:
    layers = []
    for layer in engine_layers(plan, scenario):
        myelin = layer.layer_type == "kgen"
        layers.append({"Name": layer.name, "LayerType": layer.layer_type,
                       "Inputs": [_tensor(t, myelin) for t in layer.inputs],
                       "Outputs": [_tensor(t, myelin) for t in layer.outputs], **layer.extra})
    return json.dumps({"Layers": layers, "Bindings": [t["name"] for t in plan["io"]]}, indent=1)


def make(version: str = "10.9.0", **scenario):
    return build_module(10, version, Scenario(**scenario), inspector_json)
