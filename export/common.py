"""Pieces the exporters share (torch-free, so export.tensorrt runs without PyTorch)."""

from __future__ import annotations

import os
from pathlib import Path

import onnx


def check_writable(path: Path) -> None:
    """Fail before the slow work when `path` cannot be written."""
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory; give the file to write")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: directory {path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise PermissionError(f"{path}: directory {path.parent} is not writable")


def to_float16(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The graph in FP16 with FP32 inputs and outputs (ONNX Runtime's converter keeps Resize scales and
    other FP32-only inputs FP32), its nodes in topological order: the converter appends the input casts
    at the end of the node list, and ONNX wants them first."""
    import onnx_ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx_ir.from_proto(convert_float_to_float16(proto, keep_io_types=True))
    model.graph.sort()
    return onnx_ir.to_proto(model)
