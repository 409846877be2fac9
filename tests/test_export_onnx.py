"""export.onnx: every variant runs in ONNX Runtime like PyTorch FP32; bad inputs give clear errors."""

import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from export.calibration import dataset_images, letterbox
from export.heads import LabelsHead, cast_labels
from export.onnx import ExportError, export_onnx, main, trace_to_onnx
from export.opcheck import Issue
from export.verify import TOLERANCES, compare
from factory import bad_case_paths, several_class_checkpoint
from sunet_deploy.checkpoint import load_model
from sunet_deploy.artifact import ARTIFACT_KEY, labels_dtype, read_onnx_info
from sunet_deploy.formats import OnnxRecipe

STATIC = (72, 104)
# (output stride, static size or None, argmax, fp16, simplify): every value of each option, pairwise mixed
VARIANTS = [
    (8, None, False, False, False),
    (16, None, True, False, True),
    (32, None, False, True, False),
    (16, None, True, True, False),
    (8, STATIC, True, True, True),
    (16, STATIC, False, True, False),
    (32, STATIC, True, False, False),
    (16, STATIC, False, False, True),
]


@pytest.fixture(scope="module")
def checkpoints(artifacts):
    return {os_: artifacts.checkpoint(os_) for os_ in (8, 16, 32)}


@pytest.mark.parametrize("output_stride, static, argmax, fp16, simplify", VARIANTS,
                         ids=[f"os{v[0]}-{'static' if v[1] else 'dynamic'}-{'argmax' if v[2] else 'logits'}-"
                              f"{'fp16' if v[3] else 'fp32'}{'-slim' if v[4] else ''}" for v in VARIANTS])
def test_export_matches_pytorch(tmp_path, checkpoints, output_stride, static, argmax, fp16, simplify):
    path = tmp_path / "model.onnx"
    result = export_onnx(checkpoints[output_stride], path, OnnxRecipe(argmax=argmax, fp16=fp16, static=static, simplify=simplify))
    assert result.verification.passed and result.tensorrt_checked
    model = onnx.load(str(path))
    assert model.opset_import[0].version >= 17
    check_io(model, static, argmax)
    weight_types = {init.data_type for init in model.graph.initializer if len(init.dims) == 4}
    assert weight_types == {onnx.TensorProto.FLOAT16 if fp16 else onnx.TensorProto.FLOAT}
    size_types = resize_size_types(model)
    assert size_types and size_types <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT64}
    # An independent run on images and a shape the export was not verified on.
    torch_model, ckpt = load_model(checkpoints[output_stride])
    images = dataset_images(ckpt.meta, count=2, seed=1)
    x = np.concatenate([letterbox(image, ckpt.meta, static or (89, 121)) for image in images])
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    with torch.no_grad():
        reference = torch_model(torch.from_numpy(x)).numpy()
    check = compare(out, reference, TOLERANCES["fp16" if fp16 else "fp32"])
    print(f"os{output_stride} static={static} argmax={argmax} fp16={fp16}: agreement {check.agreement:.5f}, "
          f"max |logit error| {check.max_abs_error}")
    assert check.classes >= 3, "the reference is vacuous: too few classes"
    assert check.failures(TOLERANCES["fp16" if fp16 else "fp32"]) == []


def check_io(model, static, argmax):
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert out.type.tensor_type.elem_type == (onnx.TensorProto.UINT8 if argmax else onnx.TensorProto.FLOAT)
    if argmax:
        assert_uint8_labels_through_float(model)
    dims = [d.dim_value or d.dim_param for d in inp.type.tensor_type.shape.dim]
    assert dims == (["batch", 3, *static] if static else ["batch", 3, "height", "width"])
    assert len(out.type.tensor_type.shape.dim) == (3 if argmax else 4)


def assert_uint8_labels_through_float(model: onnx.ModelProto) -> None:
    """ArgMax -> Cast to FLOAT -> Cast to UINT8 at the end: TensorRT converts to UINT8 from a float type only
    (export.heads.cast_labels)."""
    (out,) = model.graph.output
    assert out.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    producers = {o: node for node in model.graph.node for o in node.output}
    last = producers[out.name]
    before = producers[last.input[0]]
    to = onnx.helper.get_attribute_value
    assert (last.op_type, to(last.attribute[0])) == ("Cast", onnx.TensorProto.UINT8)
    assert (before.op_type, to(before.attribute[0])) == ("Cast", onnx.TensorProto.FLOAT)
    assert producers[before.input[0]].op_type == "ArgMax"


def test_labels_are_uint8_up_to_256_classes():
    """One byte per pixel holds the indices of up to 256 classes; a model with more keeps int64 labels."""
    assert (labels_dtype(256), labels_dtype(257)) == ("uint8", "int64")
    x = torch.randn(2, 3, 4, 5)
    conv = torch.nn.Conv2d(3, 256, 1)
    with torch.no_grad():
        conv.bias.copy_(torch.linspace(0, 9, 256))  # the last classes win: indices above 200
        expected = conv(x).argmax(1)
        labels = LabelsHead(conv, "uint8")(x)  # what export.aoti compiles
    assert int(expected.max()) > 200 and labels.dtype == torch.uint8
    torch.testing.assert_close(labels.long(), expected)
    proto = trace_to_onnx(LabelsHead(conv), None, 17, "labels")  # what export.onnx traces, then casts
    assert cast_labels(proto, "int64") is proto
    uint8 = cast_labels(onnx.ModelProto.FromString(proto.SerializeToString()), "uint8")
    onnx.checker.check_model(uint8, full_check=True)
    session = ort.InferenceSession(uint8.SerializeToString(), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected.numpy())


def test_int64_labels_exported_before_still_read(tmp_path, checkpoints):
    """An --argmax model exported before labels were uint8 runs as before: the same masks as today's export,
    through the ONNX Runtime adapter and predict's Predictor, and as the PyTorch runtime's labels."""
    from benchmarks.serving.labels_dtype import export_int64_labels
    from runtimes import open_runtime
    from runtimes.options import PyTorchOptions
    from runtimes.predict import Predictor

    old = export_int64_labels(checkpoints[16], tmp_path / "old.onnx")
    new = export_onnx(checkpoints[16], tmp_path / "new.onnx", OnnxRecipe(argmax=True)).path
    _, ckpt = load_model(checkpoints[16])
    images = dataset_images(ckpt.meta, count=2, seed=1)
    masks, outputs = {}, {}
    runs = (("old", old, None), ("new", new, None), ("pytorch", checkpoints[16], PyTorchOptions(argmax=True)))
    for name, path, options in runs:
        with open_runtime(path, options) as runtime:
            outputs[name] = (runtime.outputs()[0].dtype, runtime.infer(letterbox(images[0], ckpt.meta, (64, 64))).dtype)
            masks[name] = [Predictor(runtime).mask(image) for image in images]
    assert outputs == {"old": ("int64", np.int64), "new": ("uint8", np.uint8), "pytorch": ("uint8", np.uint8)}
    assert len(np.unique(masks["new"][0])) >= 2
    for old, new, eager in zip(masks["old"], masks["new"], masks["pytorch"]):
        np.testing.assert_array_equal(old, new)  # the same graph up to the last Cast
        assert (eager == new).mean() >= 0.999  # PyTorch's kernels round otherwise: near-ties may flip


def resize_size_types(model):
    """Element types of every Resize's scales/sizes inputs: never FP16, so output sizes stay exact."""
    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input]}
    types.update({t.name: t.data_type for t in graph.initializer})
    return {types[name] for node in graph.node if node.op_type == "Resize" for name in node.input[2:] if name}


def test_metadata_round_trip_in_one_file(tmp_path, checkpoints):
    path = tmp_path / "model.onnx"
    result = export_onnx(checkpoints[16], path, OnnxRecipe(argmax=True))
    _, ckpt = load_model(checkpoints[16])
    info = read_onnx_info(path).artifact
    meta = info.metadata
    assert (info.format, info.precision, info.input_shape) == ("onnx", "fp32", (None, 3, None, None))
    assert meta == result.metadata
    assert meta.output == "labels" and meta.source_sha256 == ckpt.sha256
    assert (meta.classes, meta.palette, meta.mean, meta.model) == (ckpt.meta.classes, ckpt.meta.palette,
                                                                   ckpt.meta.mean, ckpt.meta.model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert ARTIFACT_KEY in session.get_modelmeta().custom_metadata_map
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no external data, no temporary files
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in onnx.load(str(path)).graph.initializer)


def corrupt_a_weight(monkeypatch, factor=2.0, which=0):
    """Make export.onnx produce a wrong graph: one convolution's weights scaled by `factor`."""
    import export.onnx as export_module

    real_transform = export_module.transform

    def corrupt(proto, *args):
        proto = real_transform(proto, *args)
        weight = [t for t in proto.graph.initializer if len(t.dims) == 4][which]
        data = onnx.numpy_helper.to_array(weight) * factor
        weight.CopyFrom(onnx.numpy_helper.from_array(data, weight.name))
        return proto

    monkeypatch.setattr(export_module, "transform", corrupt)


def test_verification_runs_dataset_images_and_reports_every_class(tmp_path, checkpoints):
    result = export_onnx(checkpoints[16], tmp_path / "m.onnx", verify_images=3)
    report = result.report()
    print(report)
    shapes = [r.shape for r in result.verification.results]
    assert shapes == [(1, 3, 128, 128)] * 3 + [(2, 3, 75, 113)]  # synthetic val images, then an odd pair
    per_class = result.verification.class_agreement()
    assert len(per_class) >= 3 and all(share == 1.0 for share, _ in per_class.values())
    assert "per-class agreement" in report and "class1 1.0000" in report and "synthetic val" in report


def test_verification_on_a_folder_dataset_at_its_own_size_or_letterboxed(tmp_path, checkpoints, capsys):
    from sunet_deploy.data import SyntheticSegmentation
    from sunet_deploy.data.__main__ import write_synthetic_folder

    folder = write_synthetic_folder(SyntheticSegmentation(3, (80, 96), num_classes=5, seed=3, split="val"),
                                    tmp_path / "data")
    flags = ["--dataset", "folder", "--data-root", str(folder), "--verify-images", "2"]
    assert main([str(checkpoints[16]), "-o", str(tmp_path / "d.onnx"), *flags]) == 0
    assert "1x3x80x96" in capsys.readouterr().out
    assert main([str(checkpoints[16]), "-o", str(tmp_path / "s.onnx"), "--static", "64x64", *flags]) == 0
    out = capsys.readouterr().out
    assert "1x3x64x64" in out and "2x3x64x64" in out and f"folder {folder}" in out


def test_a_wrong_labels_export_fails_on_agreement(tmp_path, checkpoints, monkeypatch):
    corrupt_a_weight(monkeypatch, factor=-1.0, which=-1)  # the head flipped: labels, no logits to compare
    with pytest.raises(ExportError, match=r"all images: pixel-label agreement [0-9.]+ is below 0.999"):
        export_onnx(checkpoints[16], tmp_path / "m.onnx", OnnxRecipe(argmax=True))
    assert not (tmp_path / "m.onnx").exists()


def test_failed_verification_writes_nothing_and_says_by_how_much(tmp_path, checkpoints, monkeypatch):
    corrupt_a_weight(monkeypatch)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous model")
    with pytest.raises(ExportError, match=r"exceeds [0-9.e-]+ by [0-9.e-]+"):
        export_onnx(checkpoints[16], path)
    assert path.read_bytes() == b"previous model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_graph_tensorrt_cannot_parse_is_refused_unless_skipped(tmp_path, checkpoints, monkeypatch):
    import export.onnx as export_module

    unsupported = [Issue("/head/Resize", "Resize", "attribute mode='cubic' not supported")]
    monkeypatch.setattr(export_module, "check_graph", lambda proto: unsupported)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="(?s)1 problem.*mode='cubic'.*--skip-tensorrt-check"):
        export_onnx(checkpoints[16], path)
    assert not path.exists()
    result = export_onnx(checkpoints[16], path, OnnxRecipe(tensorrt_check=False))
    assert "TensorRT operator check skipped" in result.report()


def test_cli_reports_thresholds_and_results(tmp_path, checkpoints, capsys):
    assert main([str(checkpoints[32]), "-o", str(tmp_path / "m.onnx"), "--static", "64x80"]) == 0
    out = capsys.readouterr().out
    assert "pixel-label agreement >= 0.999" in out and "2x3x64x80" in out and "all" in out and "wrote" in out


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("junk", "not a safetensors checkpoint"),
    ("no_directory", "does not exist"),
    ("output_is_directory", "is a directory"),
])
def test_bad_inputs_give_clear_errors(tmp_path, checkpoints, capsys, case, message):
    checkpoint, output = bad_case_paths(tmp_path, case, checkpoints[16], ".safetensors", "m.onnx")
    assert main([str(checkpoint), "-o", str(output)]) == 2
    assert message in capsys.readouterr().err


def test_static_size_too_small_is_explained(tmp_path, checkpoints, capsys):
    assert main([str(checkpoints[16]), "-o", str(tmp_path / "m.onnx"), "--static", "8x8"]) == 1
    assert "torch.onnx.export failed on a 1x3x8x8 input" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_help_and_option_errors(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--static", "--argmax", "--fp16", "--opset", "--simplify", "--skip-tensorrt-check", "--dataset",
                   "--data-root", "--split", "--synthetic-size", "--verify-images", "--seed"):
        assert option in help_text
    for bad_option in (["--opset", "16"], ["--static", "64"], ["--dataset", "imagenet"], ["--data-split", "val"],
                       ["--verify-images", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(["c.safetensors", "-o", "m.onnx", *bad_option])
        assert exc.value.code == 2


def test_sunet64_exports_in_under_a_minute(tmp_path):
    checkpoint = several_class_checkpoint(tmp_path / "sunet64.safetensors", num_classes=21, arch="sunet64")
    start = time.perf_counter()
    result = export_onnx(checkpoint, tmp_path / "sunet64.onnx")
    seconds = time.perf_counter() - start
    print(f"SUNet-64 OS16 dynamic export: {seconds:.1f} s\n{result.report()}")
    assert seconds < 60
    assert result.verification.passed and min(r.classes for r in result.verification.results) >= 3
