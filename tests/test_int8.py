"""export.onnx --int8: a symmetric INT8 Q/DQ graph, calibrated deterministically, gated like every export."""

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import export.quantize as quantize_module
from export.calibration import dataset_images, model_inputs
from export.onnx import ExportError, export_onnx, main, trace_to_onnx
from export.quantize import LayerGain, int8_quantizer, sensitivity_search
from sunet_deploy.artifact import read_onnx_info
from sunet_deploy.checkpoint import load_model
from sunet_deploy.formats import Int8Recipe, OnnxRecipe

INT8_TYPES = {onnx.TensorProto.INT8}


@pytest.fixture(scope="module")
def checkpoint(artifacts):
    return artifacts.checkpoint(num_classes=3)


def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {output: node for node in graph.node for output in node.output}


def quantization_params(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    """Every scale and zero point of the graph's Q/DQ nodes, by initializer name."""
    names = {name for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")
             for name in node.input[1:]}
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer if t.name in names}


def test_int8_export_is_symmetric_qdq_that_tensorrt_reads(tmp_path, checkpoint):
    path = tmp_path / "model_int8.onnx"
    result = export_onnx(checkpoint, path, OnnxRecipe(int8=Int8Recipe(images=4)))
    print(result.report())
    assert result.verification.passed and result.tensorrt_checked and len(result.verification.class_agreement()) >= 3
    info = read_onnx_info(path).artifact
    assert (info.precision, info.input_shape) == ("int8", (None, 3, None, None))
    graph = onnx.load(str(path)).graph
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    by_output = producers(graph)
    assert all(by_output[n.input[1]].op_type == "DequantizeLinear" for n in convs)  # every weight INT8
    params = quantization_params(graph)
    zero_points = [v for v in params.values() if v.dtype.kind in "iu"]
    assert zero_points and all(v.dtype == np.int8 and not v.any() for v in zero_points)  # symmetric INT8
    weights = [numpy_helper.to_array(t) for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert all(w.min() >= -64 and w.max() <= 64 for w in weights)  # 7-bit weights (see export.quantize)
    assert_fp16_float_parts(onnx.load(str(path)))
    assert_runtime_computes_the_verified_graph(path)


def assert_runtime_computes_the_verified_graph(path) -> None:
    """The ONNX Runtime adapter leaves out the optimizer verification left out (FP16 Q/DQ bias overflow), so
    predict computes the graph the export verified."""
    from export.verify import onnx_runner
    from runtimes import open_runtime

    batch = np.random.default_rng(0).standard_normal((1, 3, 48, 64)).astype(np.float32)
    verified = onnx_runner(path.read_bytes(), quantize_module.ORT_FP16_QDQ_DISABLED)(batch)
    with open_runtime(path, threads=1) as runtime:
        assert runtime.disabled_optimizers == list(quantize_module.ORT_FP16_QDQ_DISABLED)
        np.testing.assert_allclose(runtime.infer(batch), verified, atol=1e-3)


def assert_fp16_float_parts(model: onnx.ModelProto) -> None:
    """TensorRT's INT8 graph: Q/DQ (opset 19, FP16 scales) around the convolutions, FP16 everywhere else,
    FP32 only at the graph's input and output and in Resize's scales."""
    graph = model.graph
    assert next(o.version for o in model.opset_import if o.domain == "") >= 19
    scales = [v for v in quantization_params(graph).values() if v.dtype.kind == "f"]
    assert scales and all(v.dtype == np.float16 for v in scales)
    resize_inputs = {name for node in graph.node if node.op_type == "Resize" for name in node.input[1:]}
    float32 = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT and t.name not in resize_inputs]
    assert not float32, float32
    convs = [n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]
    biases = {t.name: t.data_type for t in graph.initializer}
    assert all(biases[n.input[2]] == onnx.TensorProto.FLOAT16 for n in convs if len(n.input) > 2)
    io = [v.type.tensor_type.elem_type for v in (*graph.input, *graph.output)]
    assert io == [onnx.TensorProto.FLOAT] * len(io)


def test_int8_labels_reach_uint8_through_float(tmp_path, checkpoint):
    """--int8 --argmax: quantization's ONNX Runtime pre-processing folds Cast chains, so the uint8 cast is
    appended after it; the graph still ends ArgMax -> FLOAT -> UINT8, which TensorRT converts."""
    from test_export_onnx import assert_uint8_labels_through_float

    path = tmp_path / "labels_int8.onnx"
    result = export_onnx(checkpoint, path, OnnxRecipe(argmax=True, int8=Int8Recipe(images=4)))
    assert result.verification.passed and result.tensorrt_checked
    assert_uint8_labels_through_float(onnx.load(str(path)))


def test_calibration_is_deterministic_for_a_seed(checkpoint):
    model, ckpt = load_model(checkpoint)
    proto = trace_to_onnx(model, None, 17, "logits")

    def scales(seed):
        batches = model_inputs(dataset_images(ckpt.meta, count=3, seed=seed), ckpt.meta)
        with int8_quantizer(proto, batches, Int8Recipe(method="minmax")) as quantizer:
            return quantization_params(quantizer.quantize().graph)

    first, again, other = scales(0), scales(0), scales(1)
    assert first.keys() == again.keys() == other.keys()
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert any(not np.array_equal(first[k], other[k]) for k in first)


def weight_is_quantized(graph: onnx.GraphProto, name: str) -> bool:
    node = next(n for n in graph.node if n.name == name)
    return node.input[1] in producers(graph)  # produced by a DequantizeLinear, not an FP32 initializer


def test_a_layer_the_search_keeps_fp32_has_no_qdq(tmp_path, checkpoint, monkeypatch):
    import export.onnx as export_module

    real_layers = quantize_module.Int8Quantizer.layers
    monkeypatch.setattr(quantize_module.Int8Quantizer, "layers", lambda self: real_layers(self)[-3:])  # fewer to try
    head = None

    def agreement_on(batches, references, disabled=()):  # keeping the head FP32 is what helps, by construction
        return lambda proto: 0.9 if weight_is_quantized(proto.graph, head) else 0.99

    monkeypatch.setattr(export_module, "agreement_on", agreement_on)
    model, ckpt = load_model(checkpoint)
    with int8_quantizer(trace_to_onnx(model, None, 17, "logits"), [], Int8Recipe()) as quantizer:
        head = real_layers(quantizer)[-1]
    result = export_onnx(checkpoint, tmp_path / "m.onnx", OnnxRecipe(int8=Int8Recipe(images=4, sensitivity_budget=2)))
    assert result.sensitivity.kept_fp32 == (head,) and len(result.sensitivity.gains) == 3
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    node = next(n for n in graph.node if n.name == head)
    by_output = producers(graph)
    assert all(by_output[name].op_type != "DequantizeLinear" for name in node.input if name in by_output)
    weight = next(t for t in graph.initializer if t.name == node.input[1])
    assert weight.data_type == onnx.TensorProto.FLOAT16  # kept out of INT8: floating point, FP16 as the rest
    assert weight_is_quantized(graph, real_layers_of(graph)[0])  # the others stay INT8


def real_layers_of(graph: onnx.GraphProto) -> list[str]:
    return [n.name for n in graph.node if n.op_type in ("Conv", "ConvTranspose")]


def test_search_keeps_the_best_layers_within_budget():
    class Fake:
        def quantize(self, keep=()):
            return tuple(keep)

        def layers(self):
            return ["a", "b", "c", "d"]

    alone = {(): 0.90, ("a",): 0.95, ("b",): 0.93, ("c",): 0.89, ("d",): 0.94}
    together = {("a", "d"): 0.94, ("a", "b"): 0.97}  # d helps alone, not with a: it is skipped
    search = sensitivity_search(Fake(), lambda keep: together.get(keep, alone.get(keep)), budget=3)
    assert [g.layer for g in search.gains] == ["a", "d", "b", "c"]
    assert search.gains[0] == LayerGain("a", 0.95, pytest.approx(0.05))
    assert search.kept_fp32 == ("a", "b") and search.steps == (0.95, 0.97)
    assert sensitivity_search(Fake(), lambda keep: together.get(keep, alone.get(keep)), 3, target=0.95).kept_fp32 == ("a",)
    assert sensitivity_search(Fake(), lambda keep: alone.get(keep, 0.0), budget=0).kept_fp32 == ()


def test_int8_outside_tolerance_fails_the_gate_and_writes_nothing(tmp_path, checkpoint, monkeypatch):
    real_quantize = quantize_module.Int8Quantizer.quantize

    def broken(self, keep_fp32=()):  # one weight scale 8x too large: a wrong INT8 graph
        proto = real_quantize(self, keep_fp32)
        scale = next(t for t in proto.graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1)
        scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 8, scale.name))
        return proto

    monkeypatch.setattr(quantize_module.Int8Quantizer, "quantize", broken)
    path = tmp_path / "m.onnx"
    with pytest.raises(ExportError, match=r"all images: pixel-label agreement [0-9.]+ is below 0.95"):
        export_onnx(checkpoint, path, OnnxRecipe(int8=Int8Recipe(images=4)))
    assert not path.exists()


def test_uint8_activations_for_onnxruntime_cpu(tmp_path, checkpoint, capsys):
    path = tmp_path / "m.onnx"
    assert main([str(checkpoint), "-o", str(path), "--int8", "--int8-activations", "uint8", "--calibration-images", "4",
                 "--calibration-method", "minmax", "--static", "64x64"]) == 0
    out = capsys.readouterr().out
    assert "calibrating INT8 ranges (minmax) on 4 images" in out and "export (int8)" in out
    assert "TensorRT operator check skipped: TensorRT takes int8 activations" in out
    params = quantization_params(onnx.load(str(path)).graph)
    activation_zero_points = {int(v) for v in params.values() if v.dtype == np.uint8}
    assert activation_zero_points == {128}  # symmetric: the int8 grid shifted by 128
    assert {v.dtype for v in params.values() if v.dtype.kind == "f"} == {np.dtype(np.float32)}  # FP32 for ORT
    assert read_onnx_info(path).precision == "int8"
    from runtimes import open_runtime

    assert open_runtime(path).disabled_optimizers == []  # FP32 float parts: ONNX Runtime optimizes freely


def test_int8_flags(tmp_path, checkpoint):
    for bad in (["--int8", "--fp16"], ["--int8", "--calibration-images", "0"], ["--calibration-method", "max"],
                ["--int8", "--calibration-percentile", "20"], ["--int8-activations", "int4"], ["--int8-float", "fp8"]):
        with pytest.raises(SystemExit) as exc:
            main([str(checkpoint), "-o", str(tmp_path / "x.onnx"), *bad])
        assert exc.value.code == 2
