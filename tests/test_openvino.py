"""OpenVINO reads the ONNX files export.onnx writes: same logits and labels as ONNX Runtime, our metadata,
the compile properties we ask for, chosen with --runtime openvino, torch-free."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openvino", reason="openvino is not installed (pip install 'sunet-deploy[openvino]')")

from photos import write_photos  # noqa: E402
from runtimes import ArtifactError, open_runtime  # noqa: E402
from runtimes.openvino import OpenVINORuntime, cpu_capabilities  # noqa: E402
from runtimes.options import OpenVINOOptions  # noqa: E402
from runtimes.predict import main as predict  # noqa: E402
from sunet_deploy.formats import Int8Recipe, OnnxRecipe  # noqa: E402
from sunet_deploy.pipeline.palettes import read_label_png  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def batch(h: int = 48, w: int = 72) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 3, h, w), dtype=np.float32)


def test_openvino_matches_onnxruntime_fp32(artifacts):
    path = artifacts.onnx()
    with open_runtime(path) as ort, open_runtime(path, OpenVINOOptions(threads=1)) as ov:
        assert isinstance(ov, OpenVINORuntime) and ov.info == ort.info and ov.info.precision == "fp32"
        assert [t.name for t in ov.inputs()] == [t.name for t in ort.inputs()]
        assert [t.dtype for t in ov.outputs()] == ["float32"]
        for h, w in ((48, 72), (64, 40)):  # dynamic height and width
            expected, got = ort.infer(batch(h, w)), ov.infer(batch(h, w))
            assert got.shape == expected.shape == (2, ov.metadata.num_classes, h, w)
            assert np.abs(got - expected).max() < 1e-3
            assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999
        # FP32 asked for explicitly (a bf16 CPU would otherwise run bf16), on the threads given
        assert "32" in ov.compiled_property("INFERENCE_PRECISION_HINT")
        assert ov.compiled_property("INFERENCE_NUM_THREADS") == "1"
        assert ov.config()["PERFORMANCE_HINT"] == "LATENCY"


def test_openvino_labels_model_returns_the_labels_onnxruntime_returns(artifacts):
    path = artifacts.onnx(recipe=OnnxRecipe(argmax=True))
    with open_runtime(path) as ort, open_runtime(path, OpenVINOOptions(threads=1)) as ov:
        expected, got = ort.infer(batch()), ov.infer(batch())
    assert got.dtype == expected.dtype == np.uint8 and ov.output_kind == "labels"
    assert (got == expected).mean() >= 0.999


def test_openvino_runs_the_qdq_int8_model(artifacts):
    """INT8 from our own Q/DQ graph: reported as int8, and labelling mostly like ONNX Runtime's INT8."""
    path = artifacts.onnx(recipe=OnnxRecipe(int8=Int8Recipe(images=4, activations="uint8")))
    with open_runtime(path) as ort, open_runtime(path, OpenVINOOptions(threads=1)) as ov:
        assert ov.info.precision == "int8"
        expected, got = ort.infer(batch()), ov.infer(batch())
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_bf16_is_available_only_where_the_cpu_has_it():
    reason = OpenVINORuntime.availability(OpenVINOOptions(inference_precision="bf16"))
    assert (reason is None) == ("BF16" in cpu_capabilities())
    assert OpenVINORuntime.availability(OpenVINOOptions()) is None
    with pytest.raises(ValueError, match="--inference-precision must be one of fp32, bf16"):
        OpenVINOOptions(inference_precision="fp16")


def test_openvino_opens_onnx_files_only(artifacts, tmp_path):
    with pytest.raises(ArtifactError, match="is a pytorch artifact, not one the openvino runtime opens"):
        open_runtime(artifacts.checkpoint(), OpenVINOOptions())
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ArtifactError, match="not a readable ONNX model"):
        open_runtime(junk, OpenVINOOptions())


def test_predict_with_runtime_openvino_writes_the_masks_onnxruntime_writes(artifacts, tmp_path, capsys):
    path = artifacts.onnx(artifacts.checkpoint(fit="coffee"))
    photos = write_photos(tmp_path / "photos")
    assert predict([str(path), str(photos["coffee"]), "-o", str(tmp_path / "ort"), "--threads", "1"]) == 0
    assert predict([str(path), str(photos["coffee"]), "-o", str(tmp_path / "ov"), "--runtime", "openvino",
                    "--threads", "1"]) == 0
    assert "openvino inference latency" in capsys.readouterr().out
    ort_mask, ov_mask = (read_label_png(next((tmp_path / d).rglob("*_mask.png"))) for d in ("ort", "ov"))
    assert len(np.unique(ort_mask)) >= 2 and (ort_mask == ov_mask).mean() >= 0.999
    code = predict([str(artifacts.checkpoint()), str(photos["coffee"]), "-o", str(tmp_path / "x"),
                    "--runtime", "openvino"])
    assert code == 2 and "not one the openvino runtime opens" in capsys.readouterr().err


def test_openvino_adapter_is_torch_free(artifacts):
    code = f"""
import sys
sys.modules["torch"] = None
import numpy as np
from runtimes import open_runtime
from runtimes.options import OpenVINOOptions
with open_runtime({str(artifacts.onnx())!r}, OpenVINOOptions(threads=1)) as rt:
    print(rt.infer(np.zeros((1, 3, 40, 56), np.float32)).shape)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "(1, 5, 40, 56)"
