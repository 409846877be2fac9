"""export.triton: repositories whose configs parse with Triton's schema and carry the artifact's metadata;
the triton:// URIs of runtimes. No server here (tests/test_triton_server.py starts one)."""

import argparse
import socket

import pytest

from export import triton as export_triton
from export.triton import ConfigSchemaError, TritonExportError, export_repository_model, main
from factory import make_meta
from runtimes import ArtifactError, open_runtime, options_for, runtime_for
from runtimes.options import TritonOptions, add_flags, from_args
from sunet_deploy.artifact import ArtifactInfo, read_onnx_info
from sunet_deploy.engine_env import EngineEnvironmentError, EngineSidecar, GpuInfo, write_engine_sidecar
from sunet_deploy.fileio import file_sha256
from sunet_deploy.models import ModelSpec

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: pip install 'sunet-deploy[serve]'")
from google.protobuf import text_format  # noqa: E402
from tritonclient.grpc import model_config_pb2  # noqa: E402
from sunet_deploy.formats import TritonRecipe

NUM_CLASSES = 5  # the factory's default checkpoint


@pytest.fixture(scope="module")
def onnx_model(artifacts):
    return artifacts.onnx()


def engine(tmp_path, profile, labels_dtype="uint8"):
    path = tmp_path / "model.engine"
    path.write_bytes(b"serialized engine")
    meta = make_meta(ModelSpec("sunet_tiny", num_classes=3))
    meta.output = "labels"  # an engine of an --argmax export
    artifact = ArtifactInfo(meta, "tensorrt", "fp16", profile[2], profile)
    write_engine_sidecar(path, EngineSidecar(
        artifact=artifact, tensorrt_version="10.9.0", gpu=GpuInfo("NVIDIA H100 80GB HBM3", "9.0"),
        onnx_sha256="ab" * 32, engine_sha256=file_sha256(path),
        inputs=[{"name": "input", "shape": ["batch", 3, "height", "width"], "dtype": "float32"}],
        outputs=[{"name": "labels", "shape": ["batch", "height", "width"], "dtype": labels_dtype}]))  # fmt: skip
    return path


def read_config(folder):
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def parameters(config) -> dict[str, str]:
    return {key: value.string_value for key, value in config.parameters.items()}


def test_onnx_model(onnx_model, tmp_path):
    folder = export_repository_model(onnx_model, tmp_path / "repo", TritonRecipe(max_batch=4, instances=2,
                                                                                      threads=1))
    config = read_config(folder)
    assert (config.name, config.platform, config.max_batch_size) == ("sunet", "onnxruntime_onnx", 4)
    (tensor,) = config.input
    assert (tensor.name, tensor.data_type, list(tensor.dims)) == ("input", model_config_pb2.TYPE_FP32, [3, -1, -1])
    (output,) = config.output
    assert (output.name, list(output.dims), output.label_filename) == ("logits", [NUM_CLASSES, -1, -1], "labels.txt")
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = config.instance_group
    assert (group.count, group.kind) == (2, model_config_pb2.ModelInstanceGroup.KIND_AUTO)
    assert (folder / "labels.txt").read_text().splitlines() == [f"class{i}" for i in range(NUM_CLASSES)]
    assert (folder / "1" / "model.onnx").read_bytes() == onnx_model.read_bytes()
    params = parameters(config)
    assert ArtifactInfo.from_json(params["sunet_deploy.artifact"]) == read_onnx_info(onnx_model).artifact
    assert params["intra_op_thread_count"] == "1" and "sunet_deploy.classes" not in params
    assert sorted(p.name for p in folder.parent.iterdir()) == ["sunet"]  # no staging folder left


@pytest.mark.parametrize("backend", ["onnxruntime", "python"])
def test_labels_models_serve_their_own_labels_type(artifacts, tmp_path, backend):
    """An --argmax model's labels are TYPE_UINT8 now; one exported before (int64 labels) stays TYPE_INT64."""
    from benchmarks.serving.labels_dtype import export_int64_labels
    from sunet_deploy.formats import OnnxRecipe

    checkpoint = artifacts.checkpoint()
    models = {"uint8": artifacts.onnx(checkpoint, OnnxRecipe(argmax=True)),
              "int64": export_int64_labels(checkpoint, tmp_path / "old.onnx")}
    for dtype, model in models.items():
        io = {"io": "tensor"} if backend == "python" else {}
        options = TritonRecipe(name=f"labels_{dtype}", backend=backend, **io)
        config = read_config(export_repository_model(model, tmp_path / "repo", options))
        (output,) = config.output
        assert (output.name, list(output.dims)) == ("labels", [-1, -1])
        assert output.data_type == {"uint8": model_config_pb2.TYPE_UINT8, "int64": model_config_pb2.TYPE_INT64}[dtype]


@pytest.mark.parametrize("io", ["image", "tensor"])
def test_python_backend_model(onnx_model, tmp_path, io):
    folder = export_repository_model(onnx_model, tmp_path, TritonRecipe(backend="python", io=io))
    config = read_config(folder)
    assert (config.backend, config.instance_group[0].kind) == ("python", model_config_pb2.ModelInstanceGroup.KIND_CPU)
    names = {"image": ("image", "mask"), "tensor": ("input", "logits")}[io]
    assert (config.input[0].name, config.output[0].name) == names
    string = model_config_pb2.TYPE_STRING
    assert (config.input[0].data_type == string) == (io == "image")
    assert (folder / "1" / "model.py").read_text() == export_triton.PYTHON_MODEL.read_text()
    assert (folder / "1" / "model.onnx").is_file()


@pytest.mark.parametrize("profile, dims, labels", [
    (((1, 3, 64, 64), (1, 3, 512, 512), (4, 3, 1024, 1024)), [3, -1, -1], "uint8"),
    (((1, 3, 512, 512), (2, 3, 512, 512), (4, 3, 512, 512)), [3, 512, 512], "int64"),  # an engine built before
])  # fmt: skip
def test_engine_dims_from_its_profile(tmp_path, profile, dims, labels):
    folder = export_repository_model(engine(tmp_path, profile, labels), tmp_path / "repo", TritonRecipe())
    config = read_config(folder)
    assert (config.platform, config.max_batch_size, list(config.input[0].dims)) == ("tensorrt_plan", 4, dims)
    triton_type = {"uint8": model_config_pb2.TYPE_UINT8, "int64": model_config_pb2.TYPE_INT64}[labels]
    assert list(config.output[0].dims) == [-1, -1] and config.output[0].data_type == triton_type
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert parameters(config)["sunet_deploy.tensorrt_version"] == "10.9.0"
    assert (folder / "1" / "model.plan").read_bytes() == b"serialized engine"


def test_engine_refusals(tmp_path):
    path = engine(tmp_path, ((1, 3, 64, 64), (1, 3, 512, 512), (4, 3, 1024, 1024)))
    with pytest.raises(TritonExportError, match="batches up to 4"):
        export_repository_model(path, tmp_path / "repo", TritonRecipe(max_batch=8))
    with pytest.raises(TritonExportError, match="tensorrt backend only"):
        export_repository_model(path, tmp_path / "repo", TritonRecipe(backend="python"))
    path.write_bytes(b"another engine")
    with pytest.raises(EngineEnvironmentError, match="does not match its model.engine.json"):
        export_repository_model(path, tmp_path / "repo", TritonRecipe())
    assert not any((tmp_path / "repo").iterdir())


def test_existing_model_is_refused_unless_overwrite(onnx_model, tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main([str(onnx_model), "-o", str(repo)]) == 0
    (repo / "sunet" / "marker").write_text("old")
    assert main([str(onnx_model), "-o", str(repo)]) == 2
    assert "already holds model 'sunet'; pass --overwrite" in capsys.readouterr().err
    assert (repo / "sunet" / "marker").is_file()
    assert main([str(onnx_model), "-o", str(repo), "--overwrite", "--backend", "python"]) == 0
    assert not (repo / "sunet" / "marker").exists() and read_config(repo / "sunet").backend == "python"


def test_a_config_typo_fails_the_export(onnx_model, tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigSchemaError, match="max_batch_sise"):
        export_triton.validate_config('name: "sunet"\nmax_batch_sise: 8\n')
    original = export_triton.config_text
    monkeypatch.setattr(export_triton, "config_text", lambda *a: original(*a).replace("dims:", "dimz:"))
    assert main([str(onnx_model), "-o", str(tmp_path / "repo")]) == 1
    assert "does not follow Triton's model configuration schema" in capsys.readouterr().err
    assert not any((tmp_path / "repo").iterdir())


def test_usage_errors(onnx_model, tmp_path, capsys):
    assert main([str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "repo")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "model.txt").write_text("not a model")
    assert main([str(tmp_path / "model.txt"), "-o", str(tmp_path / "repo")]) == 2
    assert "expected a .onnx model" in capsys.readouterr().err
    assert main([str(onnx_model), "-o", str(tmp_path / "repo"), "--backend", "tensorrt"]) == 2
    assert "build one with python -m export.tensorrt" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(onnx_model), "-o", str(tmp_path / "repo"), "--io", "tensor"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_triton_uris():
    assert runtime_for("triton://127.0.0.1:8000/sunet") == runtime_for("triton+grpc://h:8001/sunet") == "triton"
    with pytest.raises(ArtifactError, match="unknown URI scheme 'http'"):
        runtime_for("http://127.0.0.1:8000/sunet")
    with pytest.raises(ArtifactError, match="expected triton://HOST:PORT/MODEL"):
        open_runtime("triton://127.0.0.1/sunet")
    for scheme in ("triton", "triton+grpc"):
        with pytest.raises(ArtifactError, match="cannot read the served model's configuration"):
            open_runtime(f"{scheme}://127.0.0.1:{free_port()}/sunet")


def test_server_timeout_is_a_triton_option():
    assert options_for("triton+grpc://h:1/m", server_timeout=5) == TritonOptions(server_timeout=5)
    with pytest.raises(ValueError, match="server_timeout"):
        options_for("model.onnx", server_timeout=5)


def test_shared_memory_is_a_triton_option_and_a_predict_flag():
    parser = argparse.ArgumentParser()
    add_flags(parser)
    assert from_args(TritonOptions, parser.parse_args(["--shared-memory", "system"])) == \
        TritonOptions(shared_memory="system")
    assert from_args(TritonOptions, parser.parse_args([])).shared_memory == "none"
    with pytest.raises(SystemExit):
        parser.parse_args(["--shared-memory", "tcp"])
    with pytest.raises(ValueError, match="shared_memory"):
        options_for("model.onnx", shared_memory="system")
    assert TritonOptions(shared_memory="cuda").device == "cuda"


def test_serve_report_says_when_perf_analyzer_is_missing(tmp_path, monkeypatch):
    from benchmarks.serving import perf_analyzer
    from benchmarks.serving.serve import perf_analyzer_section
    from runtimes.serve import perf_analyzer as installed

    monkeypatch.setattr(perf_analyzer, "perf_analyzer", lambda: installed(tmp_path / "no-venv"))
    status = perf_analyzer.status()
    assert status["status"].startswith("perf_analyzer is not installed in") and "make serve-venv" in status["status"]
    assert perf_analyzer_section({"perf_analyzer": status, "rows": []})[1] == f"Not run: {status['status']}."
