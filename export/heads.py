"""Output heads wrapped around a model before export, and the labels' element type in an ONNX graph."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    import onnx


class LabelsHead(nn.Module):
    """The model with its argmax built in: (N, H, W) class indices instead of logits, int64 (torch's argmax)
    or uint8 (`dtype`, see sunet_deploy.artifact.labels_dtype)."""

    def __init__(self, model: nn.Module, dtype: str = "int64") -> None:
        super().__init__()
        self.model = model
        self.uint8 = dtype == "uint8"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = self.model(x).argmax(1)
        return labels.to(torch.uint8) if self.uint8 else labels


def cast_labels(proto: "onnx.ModelProto", dtype: str) -> "onnx.ModelProto":
    """The graph of an int64 labels output with that output cast to `dtype` ("uint8"; "int64" leaves it).

    Appended to the finished graph, after FP16 conversion, onnxslim and INT8 quantization, whose ONNX
    Runtime pre-processing folds a Cast chain into one Cast: TensorRT converts to UINT8 only from FLOAT or
    HALF (NvInferRuntimeBase.h, DataType::kUINT8: "kUINT8 conversions are only supported for {kFLOAT,
    kHALF}"), so the indices go int64 -> float32 -> uint8 (exact up to 255) instead of one INT64 -> UINT8 Cast.
    """
    if dtype == "int64":
        return proto
    import onnx  # the onnx extra; export.aoti imports this module without it

    (output,) = proto.graph.output
    if output.type.tensor_type.elem_type != onnx.TensorProto.INT64:
        found = onnx.TensorProto.DataType.Name(output.type.tensor_type.elem_type)
        raise ValueError(f"expected an int64 labels output, got {found}")
    name = output.name
    indices, as_float = f"{name}_int64", f"{name}_float"
    for node in proto.graph.node:
        node.output[:] = [indices if o == name else o for o in node.output]
        node.input[:] = [indices if i == name else i for i in node.input]
    proto.graph.node.extend([
        onnx.helper.make_node("Cast", [indices], [as_float], to=onnx.TensorProto.FLOAT, name=f"{name}_to_float"),
        onnx.helper.make_node("Cast", [as_float], [name], to=onnx.TensorProto.UINT8, name=f"{name}_to_uint8"),
    ])
    output.type.tensor_type.elem_type = onnx.TensorProto.UINT8
    return proto
