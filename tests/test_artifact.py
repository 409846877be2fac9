"""sunet_deploy.artifact: one ArtifactInfo, the same JSON in every container, refused without it."""

import json

import onnx
import pytest

from factory import make_meta
from sunet_deploy.artifact import (ARTIFACT_KEY, ArtifactError, ArtifactInfo, info_from_strings, info_to_strings,
                                   parse_shape, read_checkpoint_info, read_onnx_info, set_onnx_info)
from sunet_deploy.checkpoint import save_checkpoint
from sunet_deploy.models import ModelSpec, build_model

SPEC = ModelSpec("sunet_tiny", num_classes=3)


def test_string_map_round_trip_and_plain_strings_for_cpp():
    info = ArtifactInfo(make_meta(SPEC), "aoti", "fp32", (1, 3, 64, 96))
    strings = info_to_strings(info)
    assert info_from_strings(strings, "m.pt2", "aoti") == info
    assert strings["sunet_deploy.input_shape"] == "1x3x64x96" and strings["sunet_deploy.num_classes"] == "3"
    assert strings["sunet_deploy.classes"] == "class0\nclass1\nclass2"
    assert [float(v) for v in strings["sunet_deploy.mean"].split()] == list(info.metadata.mean)


def test_shapes_fixed_dynamic_and_profiles():
    meta = make_meta(SPEC)
    dynamic = ArtifactInfo(meta, "onnx")
    assert dynamic.fixed_size is None and dynamic.accepts((3, 3, 7, 1000)) and not dynamic.accepts((1, 4, 8, 8))
    static = ArtifactInfo(meta, "onnx", input_shape=(None, 3, 512, 512))
    assert static.fixed_size == (512, 512) and static.accepts((4, 3, 512, 512)) and not static.accepts((1, 3, 500, 512))
    profile = ((1, 3, 64, 64), (1, 3, 512, 512), (4, 3, 1024, 1024))
    engine = ArtifactInfo(meta, "tensorrt", "fp16", profile[2], profile)
    assert engine.fixed_size is None and engine.accepts((2, 3, 64, 1024)) and not engine.accepts((1, 3, 32, 64))
    assert parse_shape("?x3x512x512") == (None, 3, 512, 512)
    with pytest.raises(ValueError, match="precision"):
        ArtifactInfo(meta, "onnx", "fp8")


def test_onnx_container(tmp_path):
    proto = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    info = ArtifactInfo(make_meta(SPEC), "onnx", "fp16", (None, 3, 256, 256))
    proto.metadata_props.add(key="sunet_deploy.metadata", value="stale")
    set_onnx_info(proto, info)
    onnx.save(proto, tmp_path / "m.onnx")
    assert read_onnx_info(tmp_path / "m.onnx").artifact == info
    with pytest.raises(ArtifactError, match="no sunet-deploy metadata; export it with `python -m export.onnx`"):
        info_from_strings({}, "plain.onnx", "onnx")
    with pytest.raises(ArtifactError, match="unreadable sunet-deploy metadata"):
        info_from_strings({ARTIFACT_KEY: json.dumps({"format": "onnx"})}, "bad.onnx", "onnx")


def test_checkpoint_header_is_read_without_the_tensors(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", build_model(SPEC), make_meta(SPEC))
    info = read_checkpoint_info(path)
    assert (info.format, info.precision, info.metadata.classes) == ("checkpoint", "fp32", ["class0", "class1", "class2"])
    (tmp_path / "x.safetensors").write_bytes(b"\x80\x04junk")
    with pytest.raises(ArtifactError, match="refusing to unpickle"):
        read_checkpoint_info(tmp_path / "x.safetensors")
