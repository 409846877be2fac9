"""INT8 by explicit quantization: QuantizeLinear/DequantizeLinear (Q/DQ) nodes in the ONNX graph.

ONNX Runtime's static quantizer (`onnxruntime.quantization.quantize_static`) in QDQ format:

- weights INT8, symmetric, per output channel (axis 0 of Conv, axis 1 of ConvTranspose), in 7
  bits (-64..64, `reduce_range`): ONNX Runtime's x86 kernels without VNNI multiply u8 x s8 pairs
  into saturating int16 sums (vpmaddubsw); with full-range weights the fused QLinearConvs of a
  SUNet labelled 38 % of pixels like PyTorch where the same graph run unfused labelled 95 %
  (docs/export.md); with 7-bit weights both give 94 %;
- activations symmetric, per tensor, as INT8 with zero point 0 (`activations="int8"`, the
  default): what TensorRT's explicit quantization takes. Or as UINT8 with zero point 128
  (`activations="uint8"`), the same grid of values shifted by 128: ONNX Runtime's x86 kernels
  take UINT8 activations, and convert an INT8 Q/DQ pair to UINT8 only where the tensor has one
  consumer, so in a SUNet (skips, crops) a third of the convolutions of an INT8-activation graph
  stay unfused and it runs no faster than FP32; the UINT8 graph fuses them all (docs/export.md);
- biases stay floating point: TensorRT has no INT32 DequantizeLinear, and ONNX Runtime quantizes a Conv's
  bias itself when it fuses the Conv;
- only convolutions are quantized (their inputs, weights and outputs): the residual trunk (Add),
  Concat, BatchNorm/ReLU, pooling and the final Resize stay floating point between them. Quantizing
  every operator ONNX Runtime can quantize also rounds the trunk at every block, and on the demo
  model moved the mIoU by -0.2 to -2.8 points depending on the calibration images, against +0.1 to
  -0.8 with convolutions only (docs/export.md);
- the floating-point parts are FP16 in the TensorRT graph (`int8` activations, `float_type` "auto"),
  FP32 in the ONNX Runtime one (`uint8`): TensorRT builds a Q/DQ graph strongly typed, taking every
  type from the graph, so FP32 parts would run in strict FP32 there (NVIDIA's explicit-quantization
  guide). FP16 parts mean FP16 scales, which QuantizeLinear/DequantizeLinear take from opset 19 on:
  the graph is converted to opset 19, then to FP16 with FP32 inputs and outputs, as `--fp16` does.

The FP32 graph is first prepared by `onnxruntime.quantization`'s pre-processing (ONNX shape
inference and ONNX Runtime's basic optimizations, which fold each BatchNorm that follows a Conv
into it). Activation ranges are calibrated once, on images of the checkpoint's own dataset
(percentile 99.9 by default; minmax and entropy too), one image at a time (bounded memory), and
cached, so that the sensitivity search re-quantizes without re-calibrating.

Sensitivity search (`sensitivity_search`): every Conv/ConvTranspose is quantized with that one
layer kept FP32, and the gain in pixel-label agreement with PyTorch FP32 on the calibration images
is measured. The layers with the largest gains stay in floating point ("FP32" in the reports; the
graph's float type, FP16 in the TensorRT graph), up to a budget or until a target agreement is reached.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir
import onnx_ir.passes.common
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from export.common import to_float16
from export.verify import TOLERANCES, compare, onnx_runner
from sunet_deploy.formats import INT8_ACTIVATIONS, INT8_METHODS, Int8Recipe

METHODS = dict(zip(INT8_METHODS, (CalibrationMethod.MinMax, CalibrationMethod.Entropy, CalibrationMethod.Percentile)))
ACTIVATIONS = dict(zip(INT8_ACTIVATIONS, (QuantType.QInt8, QuantType.QUInt8)))
"""ONNX Runtime's names for the choices an Int8Recipe declares (sunet_deploy.formats)."""
FP16_QDQ_OPSET = 19  # the first opset whose Q/DQ take float16 scales
ORT_FP16_QDQ_DISABLED = ("WeightBiasQuantization",)
"""ONNX Runtime's graph transformer that quantizes a Q/DQ convolution's float bias to INT32
(onnxruntime/core/optimizer/qdq_transformer/weight_bias_quantization.cc: Mul of the input and weight
scales, Div of the bias by it, Round, Cast to INT32), in the scales' type: with FP16 scales the quotient
overflows FP16 (max 65504), and the graph then agreed with its FP32-parts twin on 85 % of the pixels
instead of 99.5 % (sunet_tiny, ORT 1.32). Verification leaves it out; TensorRT keeps such a bias in
floating point ("Bias": {"Type": "Float"} in its INT8 engine dumps)."""
LAYER_TYPES = ("Conv", "ConvTranspose")
"""The operators quantized, and the layers a sensitivity search may keep in FP32."""
QDQ_OPTIONS = {
    "ActivationSymmetric": True,
    "WeightSymmetric": True,
    "QuantizeBias": False,
    "CalibStridedMinMax": 1,  # calibrate image by image (any method), not all intermediate tensors at once
}


def ort_disabled_optimizers(settings: Int8Recipe) -> tuple[str, ...]:
    """What ONNX Runtime must leave out to compute this recipe's graph as written (ORT_FP16_QDQ_DISABLED)."""
    return ORT_FP16_QDQ_DISABLED if settings.float_type == "fp16" else ()


class BatchReader(CalibrationDataReader):
    """Calibration batches for ONNX Runtime's calibrator, readable in strides (`set_range`)."""

    def __init__(self, input_name: str, batches: Sequence[np.ndarray]) -> None:
        self.input_name = input_name
        self.batches = list(batches)
        self.set_range(0, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.pending = iter(self.batches[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.pending, None)
        return None if batch is None else {self.input_name: batch}


class Int8Quantizer:
    """One FP32 graph, prepared and calibrated once, quantized with any set of layers kept FP32."""

    def __init__(self, fp32: onnx.ModelProto, calibration: Sequence[np.ndarray], settings: Int8Recipe,
                 workdir: Path) -> None:
        self.workdir = workdir
        self.prepared = workdir / "prepared.onnx"
        onnx.save(fp32, workdir / "fp32.onnx")  # a file: given a ModelProto, the pre-processing alters it
        with quiet_quantizer():
            quant_pre_process(workdir / "fp32.onnx", self.prepared, skip_symbolic_shape=True)
        self.input_name = fp32.graph.input[0].name
        self.calibration = list(calibration)
        self.settings = settings
        self.options = {**QDQ_OPTIONS, "CalibPercentile": settings.percentile}
        self.cache = workdir / "calibration.json"

    def layers(self) -> list[str]:
        """Names of the prepared graph's Conv and ConvTranspose nodes, in graph order."""
        graph = onnx.load(self.prepared, load_external_data=False).graph
        return [node.name for node in graph.node if node.op_type in LAYER_TYPES]

    def quantize(self, keep_fp32: Sequence[str] = ()) -> onnx.ModelProto:
        """The QDQ graph with the nodes named in `keep_fp32` left in floating point."""
        output = self.workdir / "int8.onnx"
        with quiet_quantizer():
            quantize_static(self.prepared, output, BatchReader(self.input_name, self.calibration),
                            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(LAYER_TYPES),
                            per_channel=True, reduce_range=True,
                            activation_type=ACTIVATIONS[self.settings.activations], weight_type=QuantType.QInt8,
                            calibrate_method=METHODS[self.settings.method],
                            nodes_to_exclude=list(keep_fp32), extra_options=dict(self.options),
                            calibration_cache_path=self.cache)
        proto = fp32_inputs(onnx.load(output), set(keep_fp32))
        return fp16_float_parts(proto) if self.settings.float_type == "fp16" else proto


def fp16_float_parts(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The Q/DQ graph with its floating-point parts (scales, biases, unquantized layers and kept-FP32
    layers alike) in FP16, inputs and outputs FP32."""
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset < FP16_QDQ_OPSET:
        proto = onnx.version_converter.convert_version(proto, FP16_QDQ_OPSET)
    return to_float16(proto)


def fp32_inputs(proto: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """Feed the named nodes the FP32 tensors that Q/DQ pairs in front of them round. The quantizer
    leaves a node it excludes behind the Q/DQ pair of its input when the input's producer is
    quantized (a ReLU), so the layer would still see INT8-rounded inputs."""
    if not names:
        return proto
    model = onnx_ir.from_proto(proto)
    for node in model.graph:
        if node.name not in names:
            continue
        for index, value in enumerate(node.inputs):
            dq = value.producer() if value is not None else None
            q = dq.inputs[0].producer() if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.replace_input_with(index, q.inputs[0])
    onnx_ir.passes.common.RemoveUnusedNodesPass()(model)
    return onnx_ir.to_proto(model)


@contextlib.contextmanager
def quiet_quantizer():
    """onnxruntime.quantization logs advice through the root logger and its histogram calibrators
    print progress; keep both off the console."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def int8_quantizer(fp32: onnx.ModelProto, calibration: Sequence[np.ndarray], settings: Int8Recipe):
    """An Int8Quantizer whose files live in a temporary directory for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="sunet-int8-") as workdir:
        yield Int8Quantizer(fp32, calibration, settings, Path(workdir))


# ---------------------------------------------------------------- sensitivity search


@dataclass(frozen=True)
class LayerGain:
    layer: str
    agreement: float  # with this layer alone kept FP32
    gain: float  # over the graph with every layer INT8


@dataclass(frozen=True)
class Sensitivity:
    """What a sensitivity search measured and chose (agreements with PyTorch FP32, pixel shares)."""

    baseline: float  # every layer INT8
    gains: tuple[LayerGain, ...]  # largest gain first
    kept_fp32: tuple[str, ...] = ()
    steps: tuple[float, ...] = ()  # agreement after keeping each chosen layer

    def report(self, top: int = 8) -> str:
        lines = [f"sensitivity search: every layer INT8 agrees {self.baseline:.5f} with PyTorch FP32 on the "
                 f"calibration images; largest gains from keeping one layer FP32 ({len(self.gains)} layers measured):"]
        lines += [f"  {g.layer}: {g.agreement:.5f} ({g.gain:+.5f})" for g in self.gains[:top]]
        if not self.kept_fp32:
            return "\n".join(lines + ["  no layer kept FP32"])
        lines.append("kept FP32 (agreement after each):")
        lines += [f"  {name}: {agreement:.5f}" for name, agreement in zip(self.kept_fp32, self.steps)]
        return "\n".join(lines)


Agreement = Callable[[onnx.ModelProto], float]


def sensitivity_search(quantizer: Int8Quantizer, agreement: Agreement, budget: int,
                       target: float | None = None, progress: Callable[[str], None] = lambda message: None) -> Sensitivity:
    """Measure every layer's gain when it alone is kept FP32. Then try the `budget` layers of largest
    gain, best first: keep one FP32 when that (with those already kept) raises the agreement; stop at
    a layer that gains nothing on its own, or once the agreement reaches `target`."""
    baseline = agreement(quantizer.quantize())
    layers = quantizer.layers()
    progress(f"sensitivity search: quantizing {len(layers)} times with one layer kept FP32")
    gains = []
    for layer in layers:
        value = agreement(quantizer.quantize([layer]))
        gains.append(LayerGain(layer, value, value - baseline))
    gains.sort(key=lambda g: -g.gain)
    kept: list[str] = []
    steps: list[float] = []
    current = baseline
    for candidate in gains[:budget]:
        if candidate.gain <= 0 or (target is not None and current >= target):
            break
        value = agreement(quantizer.quantize([*kept, candidate.layer]))
        if value > current:
            kept.append(candidate.layer)
            steps.append(value)
            current = value
    return Sensitivity(baseline, tuple(gains), tuple(kept), tuple(steps))


def agreement_on(batches: Sequence[np.ndarray], references: Sequence[np.ndarray],
                 disabled_optimizers: Sequence[str] = ()) -> Agreement:
    """A graph's pixel-label agreement with the reference logits over `batches`, run by ONNX Runtime (CPU)."""

    def measure(proto: onnx.ModelProto) -> float:
        run = onnx_runner(proto.SerializeToString(), disabled_optimizers)
        results = [compare(run(batch), reference, TOLERANCES["int8"]) for batch, reference in zip(batches, references)]
        return sum(sum(r.class_agreed) for r in results) / sum(sum(r.class_pixels) for r in results)

    return measure
