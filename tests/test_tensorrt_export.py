"""export.tensorrt: profiles, precision plans, inspector parsing and the sidecar, tested with a fake
`tensorrt` module (10.x and 11.x flavours); a real build and run where TensorRT and a GPU exist."""

import json
import sys
import types

import numpy as np
import onnx
import pytest
import torch

from export import tensorrt as trt_export
from export.onnx import export_onnx
from export.trt_build import TensorRTBuildError
from sunet_deploy.engine_env import EngineEnvironmentError, GpuInfo, check_engine_environment, read_engine_sidecar
from test_export_onnx import bad_case_paths, make_checkpoint
from test_opcheck import relu_model

GPU = GpuInfo("NVIDIA Test GPU", "8.9")


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx")
    checkpoint = make_checkpoint(root / "tiny.safetensors", 16)
    export_onnx(checkpoint, root / "fp32.onnx")
    export_onnx(checkpoint, root / "fp16.onnx", fp16=True)
    return {"checkpoint": checkpoint, "fp32": root / "fp32.onnx", "fp16": root / "fp16.onnx"}


def inspector_json(datatype: str) -> str:
    conv = {"Name": "conv", "LayerType": "CaskConvolution", "Outputs": [{"Format/Datatype": datatype}]}
    return json.dumps({"Layers": [
        conv, dict(conv, Name="conv2"),
        {"Name": "reformat", "LayerType": "Reformat", "Outputs": [{"Format/Datatype": "Row major linear FP32"}]},
        {"Name": "resize", "LayerType": "Resize", "Outputs": [{"Format/Datatype": datatype}]},
        {"Name": "argmax", "LayerType": "TopK", "Outputs": [{"Format/Datatype": "Int64"}]},
    ]})


def fake_tensorrt(version="10.9.0", layer_datatype="Half", parse_errors=()):
    """Enough of the tensorrt module for export.trt_build; records what the build asked for."""
    calls = {}
    trt = types.SimpleNamespace(__version__=version, calls=calls)
    trt.BuilderFlag = types.SimpleNamespace(**({"FP16": "fp16"} if version.startswith("10.") else {}))
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(STRONGLY_TYPED=5)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.ProfilingVerbosity = types.SimpleNamespace(DETAILED="detailed")
    trt.LayerInformationFormat = types.SimpleNamespace(JSON="json")
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.nptype = lambda dtype: dtype

    class Config:
        flags = []

        def set_memory_pool_limit(self, pool, size):
            calls["workspace"] = size

        def set_flag(self, flag):
            calls.setdefault("flags", []).append(flag)

        def create_timing_cache(self, data):
            calls["timing_cache_in"] = data
            return types.SimpleNamespace(serialize=lambda: b"cache-v2")

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

        def add_optimization_profile(self, profile):
            calls["profiles_added"] = calls.get("profiles_added", 0) + 1

    class Profile:
        def set_shape(self, name, low, opt, high):
            calls["profile"] = (name, low, opt, high)

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls["network_flags"] = flags
            return "network"

        def create_builder_config(self):
            calls["config"] = Config()
            return calls["config"]

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls["optimization_level"] = config.builder_optimization_level
            calls["verbosity"] = config.profiling_verbosity
            return b"ENGINE-BYTES"

    class Parser:
        num_errors = len(parse_errors)

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return not parse_errors

        def get_error(self, i):
            return parse_errors[i]

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["input", "logits"][i]

        def get_tensor_dtype(self, name):
            return np.float32

        def create_engine_inspector(self):
            return types.SimpleNamespace(get_engine_information=lambda fmt: inspector_json(layer_datatype))

    trt.Builder, trt.OnnxParser = Builder, Parser
    trt.Runtime = lambda logger: types.SimpleNamespace(deserialize_cuda_engine=lambda data: Engine())
    return trt


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


def test_precision_is_read_from_the_inspector():
    fp16 = trt_export.summarize_precision(inspector_json("Half"))
    assert (fp16.fp16_convolutions, fp16.convolutions, fp16.fp16_layers, fp16.float_layers) == (2, 2, 3, 3)
    assert fp16.fp16_share == 1.0
    assert trt_export.summarize_precision(inspector_json("Row major linear FP32")).fp16_share == 0.0
    with pytest.raises(trt_export.BuildError, match="ProfilingVerbosity.DETAILED"):
        trt_export.summarize_precision(json.dumps({"Layers": ["conv", "relu"]}))
    untyped = trt_export.summarize_precision(json.dumps({"Layers": [{"Name": "fused", "LayerType": "Myelin"}]}))
    with pytest.raises(trt_export.BuildError, match="no layer data types"):
        trt_export.require_fp16(untyped, 0.9)
    trt_export.require_fp16(fp16, 0.9)


def test_tensorrt10_build_writes_engine_and_sidecar(tmp_path, monkeypatch, onnx_models):
    trt = fake_tensorrt("10.9.0")
    engine, cache = tmp_path / "model.engine", tmp_path / "timing.cache"
    cache.write_bytes(b"cache-v1")
    argv = [onnx_models["fp32"], "-o", engine, "--workspace", "2", "--optimization-level", "4",
            "--timing-cache", cache, "--max", "2x3x768x768"]
    assert run_cli(monkeypatch, argv, trt) == 0
    assert engine.read_bytes() == b"ENGINE-BYTES" and cache.read_bytes() == b"cache-v2"
    assert trt.calls["flags"] == ["fp16"] and trt.calls["network_flags"] == 0
    assert trt.calls["workspace"] == 2 * 2**30 and trt.calls["optimization_level"] == 4
    assert trt.calls["verbosity"] == "detailed" and trt.calls["timing_cache_in"] == b"cache-v1"
    assert trt.calls["profiles_added"] == 1
    assert trt.calls["profile"] == ("input", (1, 3, 64, 64), (1, 3, 512, 512), (2, 3, 768, 768))
    sidecar = read_engine_sidecar(engine)
    assert (sidecar.tensorrt_version, sidecar.gpu, sidecar.artifact.precision) == ("10.9.0", GPU, "fp16")
    assert sidecar.artifact.metadata.num_classes == 5 and sidecar.build["fp16_share"] == 1.0
    assert sidecar.inputs == [{"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}]
    assert sidecar.outputs[0]["name"] == "logits"
    assert sidecar.artifact.profile == ((1, 3, 64, 64), (1, 3, 512, 512), (2, 3, 768, 768))
    assert sidecar.artifact.format == "tensorrt" and sidecar.artifact.accepts((2, 3, 700, 100))
    assert check_engine_environment(engine, "10.9.0", gpu=GPU) == sidecar


def test_tensorrt11_is_strongly_typed_and_needs_the_fp16_onnx(tmp_path, monkeypatch, capsys, onnx_models):
    trt = fake_tensorrt("11.0.0")
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], trt) == 2
    assert "--fp16" in capsys.readouterr().err and not engine.exists()
    assert run_cli(monkeypatch, [onnx_models["fp16"], "-o", engine], trt) == 0
    assert trt.calls["network_flags"] == 1 << 5 and "flags" not in trt.calls
    assert read_engine_sidecar(engine).artifact.precision == "fp16"


def test_engine_that_is_not_fp16_is_refused(tmp_path, monkeypatch, capsys, onnx_models):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], fake_tensorrt(layer_datatype="Float")) == 1
    assert "only 0% of the layers run in FP16" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    fp32_trt = fake_tensorrt(layer_datatype="Float")
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine, "--fp32"], fp32_trt) == 0
    assert read_engine_sidecar(engine).artifact.precision == "fp32"


def test_parse_failure_lists_the_parser_errors(tmp_path, monkeypatch, capsys, onnx_models):
    trt = fake_tensorrt(parse_errors=("node 3 (Foo): unsupported", "node 7 (Bar): bad attribute"))
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", tmp_path / "m.engine"], trt) == 1
    err = capsys.readouterr().err
    assert "ONNX parser failed" in err and "node 3 (Foo)" in err and "node 7 (Bar)" in err


def no_gpu(device_id):
    raise EngineEnvironmentError("no CUDA device visible: neither pycuda nor nvidia-smi is available")


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("junk", "not a readable ONNX model"),
    ("no_metadata", "no sunet-deploy metadata"),
    ("no_directory", "does not exist"),
    ("output_is_directory", "is a directory"),
    ("no_tensorrt", "pip install tensorrt"),
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
        monkeypatch.setattr(trt_export, "import_tensorrt", lambda: fake_tensorrt())
    monkeypatch.setattr(trt_export, "query_gpu", no_gpu if case == "no_gpu" else lambda device_id: GPU)
    assert trt_export.main([str(model), "-o", str(output)]) == 2
    assert message in capsys.readouterr().err
    assert not output.is_file()


def test_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        trt_export.main(["--help"])
    text = capsys.readouterr().out
    for option in ("--fp32", "--min", "--opt", "--max", "--workspace", "--timing-cache", "--optimization-level",
                   "--min-fp16-share"):
        assert option in text
    with pytest.raises(SystemExit) as exc:
        trt_export.main(["m.onnx", "-o", "m.engine", "--min", "1x3x64"])
    assert exc.value.code == 2


def test_mismatch_errors(tmp_path, monkeypatch, onnx_models):
    engine = tmp_path / "model.engine"
    assert run_cli(monkeypatch, [onnx_models["fp32"], "-o", engine], fake_tensorrt("10.9.0")) == 0
    with pytest.raises(EngineEnvironmentError, match="built for TensorRT 10.9.0, this machine has TensorRT 10.13.0"):
        check_engine_environment(engine, "10.13.0", gpu=GPU)
    with pytest.raises(EngineEnvironmentError, match=r"compute capability 8.9\), this machine has .*9.0"):
        check_engine_environment(engine, "10.9.0", gpu=GpuInfo("NVIDIA H100 80GB HBM3", "9.0"))
    engine.write_bytes(b"another engine")
    with pytest.raises(EngineEnvironmentError, match="does not match its model.engine.json"):
        check_engine_environment(engine, "10.9.0", gpu=GPU)


@pytest.mark.tensorrt
def test_real_tensorrt_build_runs_like_pytorch(tmp_path, onnx_models):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt on a machine with a GPU)")
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
                            "--max", "2x3x128x128"]) == 0
    x = np.random.default_rng(0).standard_normal((2, 3, 89, 121)).astype(np.float32)
    with TensorRTRuntime(engine) as runtime:
        out = runtime.infer(x)
    model, _ = load_model(onnx_models["checkpoint"])
    with torch.no_grad():
        reference = model(torch.from_numpy(x)).numpy()
    check = compare(out, reference, TOLERANCES["fp16"])
    print(f"TensorRT {trt.__version__} FP16 vs PyTorch FP32: agreement {check.agreement:.5f}")
    assert check.failures(TOLERANCES["fp16"]) == []
