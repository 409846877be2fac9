"""`python -m export.onnx CHECKPOINT -o model.onnx`: one self-contained, verified ONNX file.

The graph takes float32 NCHW images (normalised as the metadata says) with dynamic batch, height
and width, or fixed height and width with `--static HxW`; it outputs float32 logits (N, C, H, W),
or with `--argmax` uint8 labels (N, H, W; int64 beyond 256 classes), which moves 4C times less data
off the device. `--fp16` stores an FP16 graph with FP32 inputs and outputs, as TensorRT 11's strongly
typed networks need.
`--int8` stores an explicitly quantized graph (Q/DQ nodes, symmetric INT8, per-channel weights,
FP32 inputs and outputs; the unquantized parts FP16 for TensorRT, see --int8-float) calibrated on
images of the checkpoint's dataset (export.quantize).
The checkpoint's metadata (classes, palette, mean/std, architecture, output stride, output kind,
precision, checkpoint sha256) is stored as JSON in the model's metadata_props.

Nothing is written unless the export passes: onnx.checker (full check), the TensorRT operator
check (export.opcheck), and ONNX Runtime against PyTorch FP32 on images of the checkpoint's own
dataset (export.calibration; each image alone, then two as one batch, at an odd non-square size
for a dynamic graph). Thresholds, per-batch and per-class results are printed; a failure exits 1.

Exporter: the TorchScript-based torch.onnx exporter (dynamo=False). The torch.export-based one
takes 13 s on SUNet-64 with static shapes and did not finish in minutes with dynamic height/width;
see docs/export.md for the measurements.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from export.calibration import dataset_images, image_source, model_inputs, \
    verification_batches
from export.cli import parse_export_args
from export.common import check_writable, to_float16
from export.heads import LabelsHead, cast_labels
from export.opcheck import check_graph, format_report
from export.quantize import Sensitivity, agreement_on, int8_quantizer, ort_disabled_optimizers, sensitivity_search
from export.verify import Verification, onnx_runner, reference_outputs, verify
from sunet_deploy.artifact import ORT_DISABLED_OPTIMIZERS_KEY, labels_dtype, set_onnx_info
from sunet_deploy.checkpoint import CheckpointError, load_model
from sunet_deploy.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from sunet_deploy.data import DatasetError
from sunet_deploy.data.selection import DatasetChoice
from sunet_deploy.fileio import atomic_write_bytes
from sunet_deploy.formats import Int8Recipe, OnnxRecipe
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.options import add_option_flags, from_args

OPSET = OnnxRecipe.opset
INPUT_NAME = "input"
TRACE_SIZE = (128, 160)
"""Height x width the model is traced at for a dynamic export (any size works; verification uses others)."""


class ExportError(RuntimeError):
    """The export ran but its result failed a check; the message says which and by how much."""


@dataclass(frozen=True)
class OnnxExport:
    """What `export_onnx` wrote, and the evidence that it is right."""

    path: Path
    metadata: ModelMetadata
    precision: str
    static_size: tuple[int, int] | None
    verification: Verification
    tensorrt_checked: bool
    node_count: int
    seconds: float
    images: str = ""
    sensitivity: Sensitivity | None = None

    def report(self) -> str:
        size_mb = self.path.stat().st_size / 2**20
        shape = "dynamic N/H/W" if self.static_size is None else "static {}x{}, dynamic N".format(*self.static_size)
        opcheck = format_report([], self.node_count) if self.tensorrt_checked else "TensorRT operator check skipped"
        return (f"verification images: {self.images}\n{self.verification.report()}\n{opcheck}\n"
                f"wrote {self.path} ({size_mb:.1f} MiB, {self.precision}, {self.metadata.output}, {shape}) "
                f"in {self.seconds:.1f} s")


def export_onnx(
    checkpoint_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    recipe: OnnxRecipe = OnnxRecipe(),
    *,
    images: DatasetChoice | None = None,
    verify_images: int = 4,
    seed: int = 0,
    progress: Callable[[str], None] = lambda message: None,
) -> OnnxExport:
    """Export a checkpoint to `onnx_path`, verify it, and only then write it (atomically).

    `images` is the dataset verification (and INT8 calibration) draws from, `seed` chooses the
    images (the first `verify_images` verify, the next `recipe.int8.images` calibrate). Raises
    CheckpointError for an unusable checkpoint, OSError for an unwritable output, and ExportError
    when the exported graph fails a check (nothing is written then).
    """
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    argmax, fp16, int8, static, opset = recipe.argmax, recipe.fp16, recipe.int8, recipe.static, recipe.opset
    tensorrt_check = recipe.tensorrt_check
    check_writable(onnx_path)
    model, ckpt = load_model(checkpoint_path)
    precision = recipe.precision
    info = ckpt.artifact_info("onnx", "labels" if argmax else "logits", precision, (None, 3, *(static or (None, None))))
    meta = info.metadata
    progress(f"exporting {ckpt.meta.arch} (OS{ckpt.meta.output_stride}) with the TorchScript exporter, opset {opset}, "
             + ("dynamic batch/height/width" if static is None else "static {}x{}".format(*static)))
    proto = trace_to_onnx(LabelsHead(model) if argmax else model, static, opset, meta.output)
    proto = transform(proto, recipe.simplify, fp16, progress)
    source = image_source(meta, images)[1]
    drawn = dataset_images(meta, images, verify_images + (int8.images if int8 else 0), seed)
    sensitivity = None
    if int8:
        method = f"percentile {int8.percentile:g}" if int8.method == "percentile" else int8.method
        progress(f"calibrating INT8 ranges ({method}) on {len(drawn) - verify_images} images of "
                 f"{source}")
        proto, sensitivity = quantize(proto, model, model_inputs(drawn[verify_images:], meta, static), int8, progress)
    if argmax:
        proto = cast_labels(proto, labels_dtype(meta.num_classes))
    set_onnx_info(proto, info)
    disabled = ort_disabled_optimizers(int8) if int8 else ()
    if disabled:
        proto.metadata_props.add(key=ORT_DISABLED_OPTIMIZERS_KEY, value=",".join(disabled))
    if int8 and int8.activations == "uint8" and tensorrt_check:
        progress("TensorRT operator check skipped: TensorRT takes int8 activations, this graph's are uint8")
        tensorrt_check = False
    progress("checking the graph (onnx.checker full check" + (", TensorRT operators)" if tensorrt_check else ")"))
    check_onnx(proto, tensorrt_check)
    data = proto.SerializeToString()
    progress(f"verifying with ONNX Runtime against PyTorch FP32 on {min(verify_images, len(drawn))} images of "
             f"{source}")
    batches = verification_batches(drawn[:verify_images], meta, static)
    runner = onnx_runner(data, disabled)
    verification = verify(runner, model, batches, precision, meta.classes)
    if not verification.passed:
        raise ExportError(verification.report() + "\nexport failed verification, nothing written:\n  "
                          + "\n  ".join(verification.failures))
    atomic_write_bytes(onnx_path, data)
    return OnnxExport(onnx_path, meta, precision, static, verification, tensorrt_check, len(proto.graph.node),
                      time.perf_counter() - start, source, sensitivity)


def quantize(proto: onnx.ModelProto, model: nn.Module, calibration: list, settings: Int8Recipe,
             progress: Callable[[str], None]) -> tuple[onnx.ModelProto, Sensitivity | None]:
    """The INT8 Q/DQ graph of `proto`, with the layers a sensitivity search chose kept FP32."""
    with int8_quantizer(proto, calibration, settings) as quantizer:
        if not settings.sensitivity_budget:
            return quantizer.quantize(), None
        references = reference_outputs(model, calibration)
        agreement = agreement_on(calibration, references, ort_disabled_optimizers(settings))
        sensitivity = sensitivity_search(quantizer, agreement, settings.sensitivity_budget,
                                         settings.target_agreement, progress)
        progress(sensitivity.report())
        return quantizer.quantize(sensitivity.kept_fp32), sensitivity


def check_onnx(proto: onnx.ModelProto, tensorrt_check: bool) -> None:
    """onnx.checker's full check, then (optionally) the TensorRT operator check; ExportError on a problem."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"onnx.checker rejected the exported graph: {exc}") from exc
    issues = check_graph(proto) if tensorrt_check else []
    if issues:
        raise ExportError(format_report(issues, len(proto.graph.node)) +
                          "\n(pass tensorrt_check=False / --skip-tensorrt-check for an ONNX Runtime-only model)")


def trace_to_onnx(model: nn.Module, static: tuple[int, int] | None, opset: int, output: str) -> onnx.ModelProto:
    """torch.onnx.export with the TorchScript exporter, the whole model in one protobuf."""
    example = torch.randn(1, 3, *(static or TRACE_SIZE))
    dynamic = {0: "batch"} if static else {0: "batch", 2: "height", 3: "width"}
    dynamic_out = dict(dynamic)
    if output == "labels" and not static:  # labels are N, H, W
        dynamic_out = {0: "batch", 1: "height", 2: "width"}
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated, not removed
        try:
            torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[output],
                              dynamic_axes={INPUT_NAME: dynamic, output: dynamic_out})
        except RuntimeError as exc:  # e.g. an input too small for the model's pooling
            raise ExportError(f"torch.onnx.export failed on a {'x'.join(map(str, example.shape))} input: "
                              f"{str(exc).splitlines()[0]}") from exc
    return onnx.load_from_string(buffer.getvalue())


def transform(proto: onnx.ModelProto, simplify: bool, fp16: bool, progress: Callable[[str], None]) -> onnx.ModelProto:
    """Optional FP16 conversion (FP32 inputs/outputs, Resize scales kept FP32), then onnxslim."""
    if fp16:
        progress("converting to FP16 (inputs and outputs stay FP32)")
        proto = to_float16(proto)
    if simplify:
        try:
            import onnxslim  # optional (the onnx extra): a bare GPU image has none
        except ImportError:
            progress("onnxslim is not installed: the graph is not slimmed (pip install onnxslim)")
            return proto
        progress("simplifying with onnxslim")
        proto = onnxslim.slim(proto)
    return proto


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    return parse_export_args(argv, "python -m export.onnx", __doc__, ("checkpoint", "sunet-deploy .safetensors checkpoint"),
                             "ONNX file to write", OnnxRecipe, images=True, more_flags=add_int8_flags,
                             recipe_extra=lambda args: {"int8": from_args(Int8Recipe, args) if args.int8 else None})  # fmt: skip


def add_int8_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("INT8 (explicit Q/DQ quantization, export.quantize)")
    group.add_argument("--int8", action="store_true",
                       help="symmetric INT8 Q/DQ graph (per-channel weights), calibrated on dataset images")
    add_option_flags(group, [Int8Recipe], absent_default=False)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = export_onnx(args.checkpoint, args.output, args.recipe, images=args.images,
                             verify_images=args.verify_images, seed=args.seed,
                             progress=lambda message: print(message, flush=True))
    except ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (CheckpointError, DatasetError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(result.report())
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
