"""export.tensorrt: profiles, precision plans, inspector parsing and the sidecar, tested with a fake
`tensorrt` module (10.x and 11.x flavours); a real build and run where TensorRT and a GPU exist."""

import json
import sys
import threading

import numpy as np
import onnx
import pytest
import torch

from export import tensorrt as trt_export
from export import trt_build
from factory import bad_case_paths, relu_model
from fakes import tensorrt10, tensorrt11
from fakes.tensorrt_base import ENGINE_MAGIC, RECORDED
from sunet_deploy.engine_env import EngineEnvironmentError, GpuInfo, check_engine_environment, read_engine_sidecar
from factory import bad_case_paths, relu_model
from sunet_deploy.formats import EngineRecipe, Int8Recipe, OnnxRecipe

GPU = GpuInfo("NVIDIA Test GPU", "8.9")


@pytest.fixture(scope="module")
def onnx_models(artifacts):
    return {"checkpoint": artifacts.checkpoint(), "fp32": artifacts.onnx(),
            "fp16": artifacts.onnx(recipe=OnnxRecipe(fp16=True))}


@pytest.fixture(scope="module")
def int8_models(artifacts):
    recipes = {"int8": Int8Recipe(images=4), "uint8": Int8Recipe(images=4, activations="uint8"),
               "int8-fp32": Int8Recipe(images=4, float_parts="fp32")}
    return {name: artifacts.onnx(recipe=OnnxRecipe(int8=recipe)) for name, recipe in recipes.items()}


def built_plan(engine) -> dict:
    """What the fake builder recorded in the engine it wrote: flags, profile, precision."""
    data = engine.read_bytes()
    assert data.startswith(ENGINE_MAGIC)
    return json.loads(data[len(ENGINE_MAGIC):])


def run_cli(monkeypatch, argv, trt):
    monkeypatch.setattr(trt_export, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(trt_export, "query_gpu", lambda device_id: GPU)
    return trt_export.main([str(a) for a in argv])


def test_plan_chooses_the_mechanism_by_capability():
    plan = trt_export.plan_build
    assert (plan(True, "fp32", "fp16").fp16_flag, plan(True, "fp32", "fp16").strongly_typed) == (True, False)
    assert plan(True, "fp16", "fp16").strongly_typed and not plan(True, "fp16", "fp16").fp16_flag
    assert plan(False, "fp16", "fp16").strongly_typed
    assert plan(False, "fp32", "fp32") == trt_export.BuildPlan("fp32", strongly_typed=True, fp16_flag=False)
    with pytest.raises(trt_export.BuildError, match="export with python -m export.onnx --fp16"):
        plan(False, "fp32", "fp16")
    with pytest.raises(trt_export.BuildError, match="export it without --fp16"):
        plan(True, "fp16", "fp32")


def test_profile_defaults_overrides_and_errors():
    derive = trt_export.derive_profile
    assert derive(["batch", 3, "height", "width"]) == trt_export.DEFAULT_PROFILE
    assert derive(["batch", 3, 256, 320]) == ((1, 3, 256, 320), (1, 3, 256, 320), (4, 3, 256, 320))
    assert derive(["batch", 3, "h", "w"], opt_shape=(2, 3, 384, 384))[1] == (2, 3, 384, 384)
    with pytest.raises(trt_export.BuildError, match="min <= opt <= max"):
        derive(["batch", 3, "h", "w"], min_shape=(1, 3, 800, 800))
    with pytest.raises(trt_export.BuildError, match="dimension 2 is fixed to 256"):
        derive(["batch", 3, 256, 320], max_shape=(4, 3, 512, 320))


def plan_for(fp16=True):
    io = [{"name": "input", "mode": "INPUT", "dtype": "FLOAT", "rank": 4},
          {"name": "logits", "mode": "OUTPUT", "dtype": "FLOAT", "rank": 4}]
    return {"io": io, "fp16": fp16, "profiles": [{"input": [[1, 3, 64, 64], [1, 3, 512, 512], [4, 3, 1024, 1024]]}]}


@pytest.mark.parametrize("fake, schema", [(tensorrt10, "10.x"), (tensorrt11, "11.x")])
def test_precision_is_read_from_either_inspector_schema(fake, schema):
    scenario = fake.make().scenario
    fp16 = trt_export.summarize_precision(fake.inspector_json(plan_for(fp16=True), scenario))
    assert (fp16.convolutions, fp16.layers) == ({"fp16": 8}, {"fp16": 9})
    assert fp16.share("fp16") == 1.0 and fp16.schema == schema, "the Myelin (kgen) layer counts as a typed layer"
    fp32 = trt_export.summarize_precision(fake.inspector_json(plan_for(fp16=False), scenario))
    assert fp32.share("fp16") == 0.0 and fp32.typed_layers == 9
    trt_export.require_precision(fp16, "fp16", 0.9)
    with pytest.raises(trt_export.EngineRefused, match="only 0% of the layers run in FP16"):
        trt_export.require_precision(fp32, "fp16", 0.9)


def test_inspector_entries_of_both_schemas():
    precision = trt_export.tensor_precision
    assert precision({"Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}) == "fp16"
    assert precision({"Format/Datatype": "Row major linear FP32"}) == "fp32"
    assert precision({"Format/Datatype": "Half"}) == "fp16" and precision({"Format/Datatype": "Int64"}) is None
    assert precision({"Format": "Row major linear FP32 format (kLINEAR)", "Datatype": "Half"}) == "fp16"
    assert precision({"Name": "input_0", "IOMode": "Input", "DataType": "Float"}) == "fp32"
    assert precision({"Format/Datatype": "Row major linear BF16"}) == "bf16"


def test_layer_names_only_and_untyped_engines_prove_nothing():
    with pytest.raises(trt_export.BuildError, match="ProfilingVerbosity.DETAILED"):
        trt_export.summarize_precision(json.dumps({"Layers": ["conv", "relu"]}))
    untyped = trt_export.summarize_precision(json.dumps({"Layers": [{"Name": "fused", "LayerType": "Myelin"}]}))
    with pytest.raises(trt_export.BuildError, match="no layer data types"):
        trt_export.require_precision(untyped, "fp16", 0.9)


def test_tensorrt10_build_writes_engine_and_sidecar(tmp_path, monkeypatch, onnx_models):
    trt = tensorrt10.make()
    engine, cache = tmp_path / "model.engine", tmp_path / "timing.cache"
    argv = [onnx_models["fp32"], "-o", engine, "--workspace", "2", "--optimization-level", "4",
            "--timing-cache", cache, "--max", "2x3x768x768"]
    assert run_cli(monkeypatch, argv, trt) == 0
    plan = built_plan(engine)
    assert int(trt.BuilderFlag.FP16) in plan["flags"] and plan["network_flags"] == 0 and plan["fp16"]
    assert plan["workspace"] == 2 * 2**30 and plan["optimization_level"] == 4
    assert plan["verbosity"] == int(trt.ProfilingVerbosity.DETAILED)
    assert plan["profiles"] == [{"input": [[1, 3, 64, 64], [1, 3, 512, 512], [2, 3, 768, 768]]}]
    first_cache = json.loads(cache.read_bytes().split(b"\n", 1)[1])
    assert run_cli(monkeypatch, argv, trt) == 0, "the second build starts from the cache of the first"
    assert len(json.loads(cache.read_bytes().split(b"\n", 1)[1])["entries"]) == len(first_cache["entries"]) + 1
    sidecar = read_engine_sidecar(engine)
    assert (sidecar.tensorrt_version, sidecar.gpu, sidecar.artifact.precision) == ("10.9.0", GPU, "fp16")
    assert sidecar.artifact.metadata.num_classes == 5 and sidecar.build["fp16_share"] == 1.0
    assert sidecar.build["inspector_schema"] == "10.x" and sidecar.build["tf32"] is False
    assert sidecar.inputs == [{"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}]
    assert sidecar.outputs[0]["name"] == "logits"
    assert sidecar.artifact.profile == ((1, 3, 64, 64), (1, 3, 512, 512), (2, 3, 768, 768))
    assert sidecar.artifact.format == "tensorrt" and sidecar.artifact.accepts((2, 3, 700, 100))
    assert check_engine_environment(engine, "10.9.0", gpu=GPU) == sidecar


def test_tensorrt10_builds_the_fp16_onnx_strongly_typed(tmp_path, monkeypatch, onnx_models):
    trt = tensorrt10.make()
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp16"], "-o", engine], trt) == 0
    plan = built_plan(engine)
    assert plan["network_flags"] == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 2
    assert plan["strongly_typed"] and int(trt.BuilderFlag.FP16) not in plan["flags"]


def test_tensorrt11_is_strongly_typed_and_needs_the_fp16_onnx(tmp_path, monkeypatch, capsys, onnx_models):
    trt = tensorrt11.make()
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], trt) == 2
    assert "--fp16" in capsys.readouterr().err and not engine.exists()
    assert run_cli(monkeypatch, [onnx_models["fp16"], "-o", engine], trt) == 0, capsys.readouterr().err
    plan = built_plan(engine)
    assert plan["network_flags"] == 0, "11.x: STRONGLY_TYPED is 0, deprecated and ignored; bit 1 is a plugin flag"
    sidecar = read_engine_sidecar(engine)
    assert sidecar.artifact.precision == "fp16" and sidecar.build["inspector_schema"] == "11.x"
    assert sidecar.build["fp16_share"] == 1.0


def test_foreign_timing_cache_is_refused_before_the_build(tmp_path, monkeypatch, capsys, onnx_models):
    cache = tmp_path / "timing.cache"
    other_gpu = tensorrt10.make(device="NVIDIA Other GPU sm_80")
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", tmp_path / "a.engine", "--timing-cache", cache],
                   other_gpu) == 0
    written = cache.read_bytes()
    RECORDED.clear()
    engine = tmp_path / "b.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine, "--timing-cache", cache], tensorrt10.make()) == 2
    err = capsys.readouterr().err
    assert "TensorRT refused this timing cache" in err and str(cache) in err and "delete it" in err
    assert err.count("error:") == 1 and ("Builder", "build_serialized_network") not in RECORDED
    assert not engine.exists() and cache.read_bytes() == written


def test_fp32_engine_computes_in_fp32_unless_tf32_is_asked_for(tmp_path, monkeypatch, onnx_models):
    trt = tensorrt10.make()
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine, "--fp32"], trt) == 0
    assert not built_plan(engine)["tf32"] and read_engine_sidecar(engine).build["tf32"] is False
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine, "--fp32", "--tf32"], trt) == 0
    assert built_plan(engine)["tf32"] and read_engine_sidecar(engine).build["tf32"] is True


def test_engine_that_is_not_fp16_is_refused(tmp_path, monkeypatch, capsys, onnx_models):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], tensorrt10.make(fp16_share=0.5)) == 1
    assert "only 50% of the layers run in FP16" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine, "--fp32"], tensorrt10.make(fp16_share=0.5)) == 0
    assert read_engine_sidecar(engine).artifact.precision == "fp32"


@pytest.mark.parametrize("failure, message", [
    ({"build_fails": True}, "could not build the engine"),
    ({"deserialize_fails": True}, "could not load it back"),
])
def test_failed_builds_report_one_clear_line(tmp_path, monkeypatch, capsys, onnx_models, failure, message):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], tensorrt10.make(**failure)) == 1
    assert message in capsys.readouterr().err and not engine.exists()


def test_parse_failure_lists_the_parser_errors(tmp_path, monkeypatch, capsys, onnx_models):
    trt = tensorrt10.make(parse_errors=("node 3 (Foo): unsupported", "node 7 (Bar): bad attribute"))
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", tmp_path / "m.engine"], trt) == 1
    err = capsys.readouterr().err
    assert "ONNX parser failed" in err and "node 3 (Foo)" in err and "node 7 (Bar)" in err


@pytest.mark.parametrize("fake, version", [(tensorrt10, "10.13.0.post1"), (tensorrt11, "11.0.0rc1")])
def test_pre_release_and_post_release_versions_build(tmp_path, monkeypatch, onnx_models, fake, version):
    engine = tmp_path / "m.engine"
    assert run_cli(monkeypatch, [onnx_models["fp16"], "-o", engine], fake.make(version)) == 0
    assert read_engine_sidecar(engine).tensorrt_version == version


def test_a_version_that_names_no_release_is_one_line(tmp_path, monkeypatch, capsys, onnx_models):
    assert run_cli(monkeypatch, [onnx_models["fp16"], "-o", tmp_path / "m.engine"], tensorrt10.make("unknown")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot tell which TensorRT release this is (not a TensorRT version: 'unknown'")
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_engine_tensor_types_without_a_numpy_type_keep_tensorrt_names():
    trt = tensorrt11.make()
    assert trt_build._dtype_name(trt, trt.DataType.FLOAT) == "float32"
    assert trt_build._dtype_name(trt, trt.DataType.BF16) == "bf16"


def test_typed_api_used_by_the_benchmarks(tmp_path, onnx_models):
    sidecar = trt_export.build_engine(onnx_models["fp16"], tmp_path / "m.engine",
                                      EngineRecipe(min=(1, 3, 64, 64), opt=(1, 3, 64, 64),
                                                               max=(1, 3, 64, 64)), trt=tensorrt11.make(), gpu=GPU)
    assert sidecar == read_engine_sidecar(tmp_path / "m.engine") and sidecar.artifact.fixed_size == (64, 64)


def no_gpu(device_id):
    raise EngineEnvironmentError("no CUDA device visible: neither pycuda nor nvidia-smi is available")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("junk", "not a readable ONNX model"),
    ("no_metadata", "no sunet-deploy metadata"),
    ("no_directory", "does not exist"),
    ("output_is_directory", "is a directory"),
    ("no_tensorrt", "TensorRT is not installed: pip install 'sunet-deploy[gpu]'"),
    ("no_gpu", "no CUDA device"),
])
def test_bad_inputs_give_clear_errors(tmp_path, monkeypatch, capsys, onnx_models, case, message):
    model, output = bad_case_paths(tmp_path, case, onnx_models["fp32"], ".onnx", "m.engine")
    if case == "no_metadata":
        model = tmp_path / "plain.onnx"
        onnx.save(relu_model(), model)
    if case == "no_tensorrt":
        monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` now raises ImportError
    else:
        monkeypatch.setattr(trt_export, "import_tensorrt", lambda: tensorrt10.make())
    monkeypatch.setattr(trt_export, "query_gpu", no_gpu if case == "no_gpu" else lambda device_id: GPU)
    assert trt_export.main([str(model), "-o", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.is_file()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        trt_export.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--fp32", "--tf32", "--min", "--opt", "--max", "--workspace", "--timing-cache",
                   "--optimization-level", "--min-fp16-share"):
        assert option in text
    with pytest.raises(SystemExit) as exc:
        trt_export.main(["m.onnx", "-o", "m.engine", "--min", "1x3x64"])
    assert exc.value.code == 2


def test_mismatch_errors(tmp_path, monkeypatch, onnx_models):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], tensorrt10.make("10.9.0")) == 0
    with pytest.raises(EngineEnvironmentError, match="built for TensorRT 10.9.0, this machine has TensorRT 10.13.0"):
        check_engine_environment(engine, "10.13.0", gpu=GPU)
    with pytest.raises(EngineEnvironmentError, match=r"compute capability 8.9\), this machine has .*9.0"):
        check_engine_environment(engine, "10.9.0", gpu=GpuInfo("NVIDIA H100 80GB HBM3", "9.0"))
    engine.write_bytes(b"another engine")
    with pytest.raises(EngineEnvironmentError, match="does not match its model.engine.json"):
        check_engine_environment(engine, "10.9.0", gpu=GPU)


@pytest.mark.tensorrt
@pytest.mark.parametrize("buffers", ["torch", "pycuda"])
def test_real_tensorrt_build_runs_like_pytorch(tmp_path, onnx_models, buffers):
    """Runs wherever TensorRT and a CUDA GPU are present (nothing to opt into); skips with the reason elsewhere."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt on a machine with a GPU)")
    if buffers == "pycuda":
        pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install pycuda)")
    from runtimes.options import TensorRTOptions
    from runtimes.trt import TensorRTRuntime, availability
    from sunet_deploy.checkpoint import load_model
    from export.verify import TOLERANCES, compare

    reason = availability()
    if reason:
        pytest.skip(reason)
    trt = trt_export.import_tensorrt()
    source = onnx_models["fp32"] if hasattr(trt.BuilderFlag, "FP16") else onnx_models["fp16"]
    engine = tmp_path / "model.engine"
    assert trt_export.main([str(source), "-o", str(engine), "--min", "1x3x32x32", "--opt", "1x3x96x96",
                            "--max", "2x3x128x128", "--timing-cache", str(tmp_path / "timing.cache")]) == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 89, 121)).astype(np.float32)
    results = {}
    with TensorRTRuntime(engine, TensorRTOptions(buffers=buffers)) as runtime:
        out = runtime.infer(x)
        runtime.infer(x[:1, :, :64, :64])
        assert runtime.buffers.allocations == 2 and runtime.buffers.stream_handle != 0
        worker = threading.Thread(target=lambda: results.setdefault("out", runtime.infer(x)))
        worker.start()
        worker.join()
    np.testing.assert_array_equal(results["out"], out)
    model, _ = load_model(onnx_models["checkpoint"])
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    check = compare(out, reference, TOLERANCES["fp16"])
    print(f"TensorRT {trt.__version__} FP16 ({buffers} buffers) vs PyTorch FP32: agreement {check.agreement:.5f}")
    assert check.failures(TOLERANCES["fp16"]) == []


@pytest.mark.parametrize("fake", [tensorrt10, tensorrt11])
def test_int8_engine_from_a_qdq_graph_is_strongly_typed_and_proven(tmp_path, monkeypatch, int8_models, fake):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [int8_models["int8"], "-o", engine], fake.make()) == 0
    plan, sidecar = built_plan(engine), read_engine_sidecar(engine)
    assert plan["strongly_typed"] and "fp16" not in [f for f in plan["flags"]]
    assert sidecar.artifact.precision == "int8" and sidecar.build["int8_share"] == 1.0
    assert "8 INT8" in sidecar.build["precision_evidence"]


def inspector_layers(engine, trt) -> list[dict]:
    runtime_engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(engine.read_bytes())
    info = runtime_engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
    return json.loads(info)["Layers"]


@pytest.mark.parametrize("fake", [tensorrt10, tensorrt11])
def test_strongly_typed_int8_is_judged_by_input_and_weights_and_its_float_layers_are_fp16(
        tmp_path, monkeypatch, capsys, int8_models, fake):
    """NVIDIA's explicit-quantization guide: a convolution fused with a float residual Add (or followed by
    a float layer) keeps a float output; it is INT8 by its input and its weights."""
    engine, trt = tmp_path / "model.engine", fake.make()
    assert run_cli(monkeypatch, [int8_models["int8"], "-o", engine], trt) == 0
    assert "note:" not in capsys.readouterr().out
    assert built_plan(engine)["strongly_typed"] and built_plan(engine)["fp16"], "types from the FP16+Q/DQ graph"
    layers = inspector_layers(engine, trt)
    convolutions = [layer for layer in layers if layer["LayerType"] == "CaskConvolution"]
    fused = [layer for layer in convolutions if "Add" in layer["Name"]]
    precision = trt_export.tensor_precision
    assert fused and all(len(layer["Inputs"]) == 2 and precision(layer["Inputs"][0]) == "int8"
                         and precision(layer["Inputs"][1]) == precision(layer["Outputs"][0]) == "fp16"
                         and layer["Weights"]["Type"] == "Int8" for layer in fused)
    by_output = trt_export.summarize_precision(json.dumps({"Layers": [
        {**layer, "Weights": {}, "Inputs": []} for layer in layers]}))  # what counting outputs alone would say
    assert by_output.convolutions["fp16"] >= len(fused) and by_output.share("int8") < 1.0
    sidecar = read_engine_sidecar(engine)
    assert sidecar.build["int8_share"] == 1.0 and sidecar.build["float_type"] == "fp16"
    summary = trt_export.summarize_precision(json.dumps({"Layers": layers}))
    assert summary.convolutions == {"int8": 8} and set(summary.float_outputs) == {"fp16"}
    computing = [layer for layer in layers if layer["LayerType"] != "Reformat" and layer not in convolutions]
    assert computing and all(precision(layer["Outputs"][0]) == "fp16" for layer in computing)  # Resize/Add: FP16


def test_benchmark_tensorrt_int8_row_is_int8_plus_fp16(tmp_path, monkeypatch, onnx_models):
    import dataclasses

    import export.onnx
    from benchmarks.harness.artifacts import artifact_for
    from benchmarks.harness.variants import VARIANTS

    real_export = export.onnx.export_onnx  # calibrated on 4 images instead of 32, for time
    monkeypatch.setattr(export.onnx, "export_onnx", lambda checkpoint, path, recipe, **kwargs: real_export(
        checkpoint, path, dataclasses.replace(recipe, int8=dataclasses.replace(recipe.int8, images=4)), **kwargs))
    monkeypatch.setattr(trt_export, "import_tensorrt", tensorrt11.make)
    monkeypatch.setattr(trt_export, "query_gpu", lambda device_id: GPU)
    variant = VARIANTS["tensorrt-int8"]
    engine = artifact_for(variant, onnx_models["checkpoint"], tmp_path, (1, 3, 64, 64))
    sidecar = read_engine_sidecar(engine)
    assert (sidecar.artifact.precision, sidecar.build["int8_share"], sidecar.build["float_type"]) == ("int8", 1.0, "fp16")
    assert variant.onnx.int8.activations == "int8" and variant.onnx.int8.float_type == "fp16"


def test_int8_engine_of_a_graph_with_fp32_float_parts_runs_them_in_fp32(tmp_path, monkeypatch, capsys, int8_models):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [int8_models["int8-fp32"], "-o", engine], tensorrt11.make()) == 0
    assert "the layers outside INT8 run in FP32" in capsys.readouterr().out
    assert read_engine_sidecar(engine).build["float_type"] == "fp32"


def test_int8_engine_the_inspector_does_not_prove_is_refused(tmp_path, monkeypatch, capsys, int8_models):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [int8_models["int8"], "-o", engine], tensorrt10.make(int8_share=0.25)) == 1
    assert "only 25% of the layers run in INT8 (--min-int8-share 50%)" in capsys.readouterr().err
    assert not engine.exists()
    assert run_cli(monkeypatch, [int8_models["int8"], "-o", engine, "--fp32"], tensorrt10.make()) == 2


def test_uint8_activations_are_refused_before_the_build(tmp_path, monkeypatch, capsys, int8_models):
    trt = tensorrt10.make()
    assert run_cli(monkeypatch, [int8_models["uint8"], "-o", tmp_path / "m.engine"], trt) == 2
    err = capsys.readouterr().err
    assert "cannot parse this graph" in err and "UINT8 zero point" in err
    assert not list(tmp_path.iterdir())
