"""What every artifact carries, and the one place that writes and reads it (torch-free).

An `ArtifactInfo` is the model metadata (classes, palette, mean/std, architecture, output kind,
source checkpoint hash) plus what the artifact itself fixes: its format, its precision and the
input shapes it accepts. Each format stores it in its own container, always as the same JSON:

    checkpoint (.safetensors)   the safetensors header            checkpoint_header / read_checkpoint_info
    ONNX (.onnx)                metadata_props                    set_onnx_info / read_onnx_info
    AOTInductor (.pt2)          the package's string metadata     info_to_strings / info_from_strings
    TensorRT (.engine)          the sidecar model.engine.json     sunet_deploy.engine_env
    Triton model repository     config.pbtxt parameters           export.triton / runtimes.triton

ONNX, AOTInductor and config.pbtxt also get the same facts as plain strings ("sunet_deploy.mean" = "0.485 0.456
0.406", ...), so that C++ readers need no JSON parser (runtimes/cpp). A field added to
`ArtifactInfo` or `ModelMetadata` travels in every format without touching a writer or a reader.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from . import formats
from .fileio import file_sha256
from .metadata import ModelMetadata

ARTIFACT_KEY = "sunet_deploy.artifact"
"""The key of the ArtifactInfo JSON in ONNX metadata_props and AOTInductor package metadata."""
ORT_DISABLED_OPTIMIZERS_KEY = "sunet_deploy.ort_disabled_optimizers"
"""ONNX metadata_props key: comma-separated ONNX Runtime graph transformers that must not run on this graph
(the exporter writes it where an optimizer would change the graph's answer; the ONNX Runtime adapter obeys it)."""
CHECKPOINT_KIND_KEY = "sunet_deploy.kind"
CHECKPOINT_META_KEY = "sunet_deploy.meta"
"""safetensors header keys: the kind of file ("checkpoint", "train_state") and its JSON."""
STRINGS_FORMAT = "sunet-deploy-1"
"""The value of "sunet_deploy.format" in the plain-string metadata, which C++ readers check."""
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
MAX_HEADER_BYTES = 100 << 20

Shape = tuple  # of int, or None for a dimension the artifact leaves free

TENSOR_TYPES = {  # name: (ONNX TensorProto data type, ONNX Runtime's type string, Triton's config type)
    "float32": (1, "tensor(float)", "TYPE_FP32"),
    "float16": (10, "tensor(float16)", "TYPE_FP16"),
    "int64": (7, "tensor(int64)", "TYPE_INT64"),
    "int32": (6, "tensor(int32)", "TYPE_INT32"),
    "uint8": (2, "tensor(uint8)", "TYPE_UINT8"),
    "bytes": (8, "tensor(string)", "TYPE_STRING"),
}
"""The one map of tensor element types: every container's spelling of each numpy-style name."""
_TYPE_COLUMNS = {"onnx": 0, "ort": 1, "triton": 2}


def dtype_name(kind: str, value) -> str:
    """The numpy-style name of an element type spelled as `kind` ("onnx", "ort", "triton") spells it;
    an unknown one comes back as its own string."""
    column = _TYPE_COLUMNS[kind]
    return next((name for name, spellings in TENSOR_TYPES.items() if spellings[column] == value), str(value))


LABELS_UINT8_MAX_CLASSES = 256
"""A labels output (a model with its argmax built in) is uint8, one byte per pixel, for up to this many classes
(indices 0-255); a model with more classes keeps int64 labels. Artifacts exported before labels were uint8
carry int64 labels, which every runtime still reads."""


def labels_dtype(num_classes: int) -> str:
    """The element type of a labels output for a model of `num_classes` classes."""
    return "uint8" if num_classes <= LABELS_UINT8_MAX_CLASSES else "int64"


def dtype_as(kind: str, name: str):
    """The spelling of element type `name` in `kind` ("onnx", "ort", "triton")."""
    return TENSOR_TYPES[name][_TYPE_COLUMNS[kind]]


class ArtifactError(ValueError):
    """A model file that is missing, of the wrong kind, or lacks sunet-deploy metadata; names the file."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


@dataclass(frozen=True)
class ArtifactInfo:
    """Metadata, format, precision and accepted input shapes of one artifact.

    `input_shape` is (N, 3, H, W) with None for a free dimension: (None, 3, None, None) for a fully
    dynamic model, (None, 3, 512, 512) for a fixed-size ONNX export, (1, 3, 512, 512) for an
    AOTInductor package. `profile` is a TensorRT engine's optimization profile (min, opt, max
    shapes): the engine accepts every shape between min and max.
    """

    metadata: ModelMetadata
    format: str
    precision: str = "fp32"
    input_shape: Shape = (None, 3, None, None)
    profile: tuple[Shape, Shape, Shape] | None = None

    def __post_init__(self) -> None:
        if self.format not in formats.artifact_formats():
            raise ValueError(f"format must be one of {formats.artifact_formats()}, got {self.format!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        object.__setattr__(self, "input_shape", _shape(self.input_shape))
        if self.profile is not None:
            object.__setattr__(self, "profile", tuple(_shape(s) for s in self.profile))

    @property
    def source_sha256(self) -> str:
        return self.metadata.source_sha256

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """(H, W) when the artifact runs one image size only, else None."""
        low, high = self.shape_bounds()
        if low[2:] == high[2:] and None not in high[2:]:
            return (high[2], high[3])
        return None

    def shape_bounds(self) -> tuple[Shape, Shape]:
        """(min, max) input shapes; None in max means unbounded, 1 in min means any."""
        if self.profile is not None:
            return self.profile[0], self.profile[2]
        low = tuple(1 if d is None else d for d in self.input_shape)
        return low, self.input_shape

    def accepts(self, shape: Shape) -> bool:
        low, high = self.shape_bounds()
        return len(shape) == len(low) and all(
            lo <= s and (hi is None or s <= hi) for s, lo, hi in zip(shape, low, high))

    def describe_shapes(self) -> str:
        low, high = self.shape_bounds()
        if low == high:
            return f"input {format_shape(high)} only"
        if self.profile is not None:
            return f"inputs from {format_shape(low)} to {format_shape(high)}"
        return f"inputs {format_shape(self.input_shape)}"

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["metadata"] = json.loads(self.metadata.to_json())
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ArtifactInfo":
        known = {k: data[k] for k in (f.name for f in dataclasses.fields(cls)) if k in data}
        known["metadata"] = ModelMetadata.from_json(json.dumps(data["metadata"]))
        return cls(**known)

    @classmethod
    def from_json(cls, text: str) -> "ArtifactInfo":
        return cls.from_dict(json.loads(text))


def _shape(shape) -> Shape:
    return tuple(None if d is None or (isinstance(d, int) and d < 0) else int(d) for d in shape)


def format_shape(shape: Shape) -> str:
    """(1, 3, None, None) -> '1x3x?x?'."""
    return "x".join("?" if d is None else str(d) for d in shape)


def parse_shape(text: str) -> Shape:
    """'1x3x?x?' -> (1, 3, None, None)."""
    return tuple(None if part == "?" else int(part) for part in text.split("x"))


# ---------------------------------------------------------------- string maps (ONNX, AOTInductor)


def info_to_strings(info: ArtifactInfo) -> dict[str, str]:
    """The string map stored in ONNX metadata_props and AOTInductor packages: the JSON, and plain
    strings of the facts a C++ reader needs."""
    meta = info.metadata
    return {
        ARTIFACT_KEY: info.to_json(),
        "sunet_deploy.format": STRINGS_FORMAT,
        "sunet_deploy.artifact_format": info.format,
        "sunet_deploy.precision": info.precision,
        "sunet_deploy.input_shape": format_shape(info.input_shape),
        "sunet_deploy.output": meta.output,
        "sunet_deploy.num_classes": str(meta.num_classes),
        "sunet_deploy.mean": " ".join(repr(float(v)) for v in meta.mean),
        "sunet_deploy.std": " ".join(repr(float(v)) for v in meta.std),
        "sunet_deploy.palette": " ".join(str(int(c)) for color in meta.palette for c in color),
        "sunet_deploy.classes": "\n".join(meta.classes),
        "sunet_deploy.input_color": meta.input_color,
        "sunet_deploy.source_sha256": meta.source_sha256,
    }


def info_from_strings(strings: dict[str, str], path: str | os.PathLike, format: str) -> ArtifactInfo:
    """Read what `info_to_strings` wrote."""
    if ARTIFACT_KEY not in strings:
        exporter = formats.get(format).exporter or "export"
        raise ArtifactError(path, f"has no sunet-deploy metadata; export it with `python -m {exporter}`")
    try:
        return ArtifactInfo.from_json(strings[ARTIFACT_KEY])
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(path, f"unreadable sunet-deploy metadata ({exc})") from exc


def set_onnx_info(model, info: ArtifactInfo) -> None:
    """Store `info` in an onnx.ModelProto's metadata_props (replacing earlier sunet_deploy entries)."""
    entries = info_to_strings(info)
    kept = [p for p in model.metadata_props if not p.key.startswith("sunet_deploy.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)


@dataclass(frozen=True)
class OnnxInfo:
    """What an ONNX file says of itself, read with the onnx package: its ArtifactInfo, its tensors
    ({"name", "shape" with strings for symbolic dimensions, "dtype"}) and the graph."""

    path: Path
    artifact: ArtifactInfo
    inputs: list[dict]
    outputs: list[dict]
    model: object = dataclasses.field(repr=False, compare=False)  # onnx.ModelProto, weights included

    @property
    def precision(self) -> str:
        return self.artifact.precision

    @property
    def sha256(self) -> str:
        return file_sha256(self.path)


def read_onnx_info(path: str | os.PathLike) -> OnnxInfo:
    """The ArtifactInfo and tensors of an ONNX file (ArtifactError for a missing or unreadable one)."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "no such file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError) as exc:
        raise ArtifactError(path, f"not a readable ONNX model ({exc})") from exc
    info = info_from_strings({p.key: p.value for p in model.metadata_props}, path, "onnx")
    inputs, outputs = [_tensor(v) for v in model.graph.input], [_tensor(v) for v in model.graph.output]
    return OnnxInfo(path, info, inputs, outputs, model)


def _tensor(value) -> dict:
    tensor = value.type.tensor_type
    shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim]
    return {"name": value.name, "shape": shape, "dtype": dtype_name("onnx", tensor.elem_type)}


# ---------------------------------------------------------------- checkpoints (safetensors header)


def derived_info(source: ArtifactInfo, source_sha256: str, format: str, output: str = "logits",
                 precision: str = "fp32", input_shape: Shape = (None, 3, None, None)) -> ArtifactInfo:
    """The ArtifactInfo of an artifact made from a checkpoint (`source`, the file's SHA-256): its
    metadata with the artifact's output kind and the checkpoint as the source (the one place that says so)."""
    meta = dataclasses.replace(source.metadata, output=output, source_sha256=source_sha256)
    return ArtifactInfo(meta, format, precision, input_shape)


def checkpoint_info(meta: ModelMetadata) -> ArtifactInfo:
    """A checkpoint runs any input size in FP32 (the runtime may choose another precision)."""
    return ArtifactInfo(meta, "checkpoint")


def read_safetensors_header(path: str | os.PathLike) -> dict:
    """The JSON header of a safetensors file, checked for structure and truncation; pickles are refused
    by their signature before anything is deserialised."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(path, "no such file")
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        # A safetensors header length can start with byte 0x80 too: only a file whose header
        # does not open as JSON is judged by its pickle/zip signature.
        looks_like_safetensors = len(prefix) == 8 and f.read(1) == b"{"
        f.seek(8)
        if not looks_like_safetensors and (prefix[:1] == b"\x80" or prefix[:2] == b"PK"):
            what = "a Python pickle" if prefix[:1] == b"\x80" else "a zip archive (PyTorch's pickle format)"
            raise ArtifactError(path, f"is {what}; refusing to unpickle it, since pickles can run code. "
                                "Re-save the weights as safetensors (safetensors.torch.save_file) and load that.")
        if len(prefix) < 8:
            raise ArtifactError(path, f"too short to be a checkpoint ({size} bytes)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(size - 8, MAX_HEADER_BYTES):
            raise ArtifactError(path, "not a safetensors checkpoint, or truncated inside its header")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactError(path, f"not a safetensors checkpoint (unreadable header: {exc})") from exc
    if not isinstance(header, dict):
        raise ArtifactError(path, "not a safetensors checkpoint (header is not a JSON object)")
    data_end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + header_len + data_end > size:
        raise ArtifactError(path, f"truncated: holds {size} bytes, its header promises {8 + header_len + data_end}")
    return header


def read_checkpoint_info(path: str | os.PathLike) -> ArtifactInfo:
    """The ArtifactInfo of a checkpoint, from its header alone (no tensor is read)."""
    header = read_safetensors_header(path).get("__metadata__", {})
    if header.get(CHECKPOINT_KIND_KEY) != "checkpoint":
        raise ArtifactError(path, "a safetensors file but not a sunet-deploy checkpoint")
    return checkpoint_info_from_json(header[CHECKPOINT_META_KEY], path)


def checkpoint_info_from_json(text: str, path: str | os.PathLike) -> ArtifactInfo:
    """The header JSON is an ArtifactInfo."""
    try:
        return ArtifactInfo.from_json(text)
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(path, f"invalid metadata ({exc})") from exc
