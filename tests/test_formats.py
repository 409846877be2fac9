"""The format table (sunet_deploy.formats): every row loads and agrees with itself, a format added
through the table alone opens with open_runtime (docs/seams.md, "Adding a format"), and a
recipe is the cache key of a benchmark artifact."""

import argparse
import json
from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np
import pytest
from PIL import Image

import runtimes
from runtimes import open_runtime
from runtimes.base import Runtime, TensorInfo, Timing, output_info
from runtimes.options import RuntimeOptions, add_flags, options_class
from sunet_deploy import formats
from sunet_deploy.artifact import ArtifactInfo
from sunet_deploy.formats import Int8Recipe, OnnxRecipe
from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.options import digest, option


# ---------------------------------------------------------------- a toy format, as docs/architecture.md adds one


@dataclass(frozen=True)
class ToyOptions(RuntimeOptions):
    runtime: ClassVar[str] = "toy"
    fill: int = option(0, "toy: the class every pixel gets")


class ToyRuntime(Runtime):
    """A .toy file is the ArtifactInfo JSON; the model labels every pixel `options.fill`."""

    name = "toy"

    def __init__(self, path, options: ToyOptions | None = None) -> None:
        super().__init__(path, options or ToyOptions())
        self.info = ArtifactInfo.from_json(self.path.read_text())

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("input", self.info.input_shape, "float32")]

    def outputs(self) -> list[TensorInfo]:
        return [output_info(self.output_kind, self.metadata.num_classes)]

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        n, _, h, w = batch.shape
        return np.full((n, h, w), self.options.fill, dtype=np.int64), Timing(0.0)


@pytest.fixture
def toy_format():
    fmt = formats.register(formats.Format("toy", "toy", adapter=(__name__, "ToyRuntime"),
                                          options=(__name__, "ToyOptions"), suffixes=(".toy",)))
    yield fmt
    formats.unregister("toy")


def test_a_format_added_through_the_table_alone_opens_with_open_runtime(tmp_path, toy_format):
    meta = ModelMetadata(model={"arch": "toy"}, classes=["a", "b", "c"], palette=[[0, 0, 0]] * 3, output="labels")
    path = tmp_path / "model.toy"
    path.write_text(ArtifactInfo(meta, "toy").to_json())  # ArtifactInfo takes the table's formats
    with open_runtime(path, fill=2) as runtime:
        assert isinstance(runtime, ToyRuntime) and runtime.info.format == "toy"
        assert (runtime.infer(np.zeros((1, 3, 4, 5), np.float32)) == 2).all()
    assert runtimes.runtime_for(path) == "toy" and runtimes.availability(ToyOptions()) is None
    parser = argparse.ArgumentParser()
    add_flags(parser)  # runtimes.predict's flags come from the table's options too
    assert parser.parse_args(["--fill", "1"]).fill == 1


def test_an_unregistered_format_is_unknown(tmp_path):
    (tmp_path / "model.toy").write_text("{}")
    with pytest.raises(runtimes.ArtifactError, match="unknown model file type '.toy'"):
        open_runtime(tmp_path / "model.toy")
    with pytest.raises(ValueError, match="format must be one of"):
        ArtifactInfo(ModelMetadata(model={}, classes=["a"], palette=[[0, 0, 0]]), "toy")


def test_a_suffix_names_one_format_and_a_runtime_opens_one():
    with pytest.raises(ValueError, match="'.onnx' already names the onnx format"):
        formats.register(formats.Format("other", "other", ("m", "C"), ("m", "O"), suffixes=(".onnx",)))
    with pytest.raises(ValueError, match="the onnxruntime runtime already opens the onnx format"):
        formats.register(formats.Format("other", "onnxruntime", ("m", "C"), ("m", "O"), suffixes=(".other",)))
    assert "other" not in {f.name for f in formats.formats()}


def test_predict_resolves_the_model_once(tmp_path, toy_format, monkeypatch):
    """The model's path becomes its Format once; adapter and options come from that Format, never from a
    runtime name looked up again."""
    from runtimes import predict

    meta = ModelMetadata(model={"arch": "toy"}, classes=["a", "b", "c"], palette=[[0, 0, 0]] * 3, output="labels")
    model = tmp_path / "model.toy"
    model.write_text(ArtifactInfo(meta, "toy").to_json())
    image = tmp_path / "image.png"
    cv2.imwrite(str(image), np.zeros((6, 8, 3), np.uint8))
    looked_up = []
    by_suffix = formats.by_suffix
    monkeypatch.setattr(formats, "by_suffix", lambda suffix: looked_up.append(suffix) or by_suffix(suffix))
    monkeypatch.setattr(formats, "by_runtime", lambda runtime: pytest.fail(f"{runtime} looked up again"))
    assert predict.main([str(model), str(image), "-o", str(tmp_path / "out"), "--fill", "2"]) == 0
    assert looked_up == [".toy"]
    assert (np.asarray(Image.open(tmp_path / "out" / "image_mask.png")) == 2).all()  # palette indices


# ---------------------------------------------------------------- the built-in rows


@pytest.mark.parametrize("fmt", formats.formats(), ids=lambda f: f.name)
def test_every_row_names_its_adapter_and_options(fmt):
    options = fmt.options_class()
    assert options is formats.load(fmt.options) is options_class(fmt.runtime) and options.runtime == fmt.runtime
    assert fmt.adapter_class() is runtimes.adapter_class(fmt.runtime) and fmt.adapter_class().name == fmt.runtime
    assert fmt.install and (fmt.suffixes or fmt.schemes or fmt.reads)
    assert all(formats.opener(formats.get(name), fmt.runtime) is fmt for name in fmt.reads)
    assert fmt.exporter is not None


def test_recipes_are_the_exporters_flags():
    """Each recipe field is a flag of its exporter, with the recipe's default."""
    from export import aoti, onnx, tensorrt, triton

    assert onnx.parse_args(["c.safetensors", "-o", "m.onnx"]).recipe == OnnxRecipe()
    args = onnx.parse_args(["c.safetensors", "-o", "m.onnx", "--int8", "--int8-activations", "uint8",
                            "--calibration-images", "4"])
    assert args.recipe == OnnxRecipe(int8=Int8Recipe(images=4, activations="uint8"))
    assert aoti.parse_args(["c.safetensors", "-o", "m.pt2", "--size", "64x96"]).recipe.size == (64, 96)
    assert tensorrt.parse_args(["m.onnx", "-o", "m.engine", "--workspace", "2"]).recipe.workspace_gib == 2.0
    assert triton.parse_args(["m.onnx", "-o", "repo", "--instances", "2"]).recipe.instances == 2


def test_a_recipe_refuses_what_its_flag_refuses():
    """The choices an option declares hold for the Python API too."""
    with pytest.raises(ValueError, match="--int8-activations must be one of int8, uint8, got 'int4'"):
        Int8Recipe(activations="int4")
    with pytest.raises(ValueError, match="--backend must be one of onnxruntime, tensorrt, python"):
        formats.TritonRecipe(backend="openvino")


def test_a_refused_recipe_is_a_usage_error(capsys):
    from export import onnx

    with pytest.raises(SystemExit) as exit_:
        onnx.parse_args(["c.safetensors", "-o", "m.onnx", "--fp16", "--int8"])
    assert exit_.value.code == 2 and "--fp16 and --int8 exclude each other" in capsys.readouterr().err


def test_the_cache_key_is_the_source_and_the_recipe(tmp_path):
    """A changed INT8 setting is a new artifact, not a stale file reused."""
    from benchmarks.harness.artifacts import cached_path

    source = tmp_path / "model.safetensors"
    source.write_bytes(b"weights")
    uint8 = cached_path(source, tmp_path, OnnxRecipe(int8=Int8Recipe(activations="uint8")))
    int8 = cached_path(source, tmp_path, OnnxRecipe(int8=Int8Recipe(activations="int8")))
    assert uint8 != int8 and uint8.suffix == ".onnx"
    assert uint8 == cached_path(source, tmp_path, OnnxRecipe(int8=Int8Recipe(activations="uint8")))
    source.write_bytes(b"other weights")
    assert cached_path(source, tmp_path, OnnxRecipe(int8=Int8Recipe(activations="uint8"))) != uint8
    assert digest(OnnxRecipe()) != digest(OnnxRecipe(argmax=True))
    assert json.dumps(OnnxRecipe().precision) == '"fp32"'
