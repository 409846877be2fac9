import os
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from factory import make_meta, randomize_bn
from sunet_deploy.checkpoint import (
    CheckpointError,
    load_backbone_weights,
    load_checkpoint,
    load_model,
    load_state_into,
    save_checkpoint,
)
from sunet_deploy.models import ModelSpec, build_model


def test_round_trip_is_bit_identical(tmp_path, tiny_spec, tiny_model):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model, make_meta(tiny_spec))
    loaded, ckpt = load_model(path)
    x = torch.randn(2, 3, 67, 45)
    with torch.no_grad():
        assert torch.equal(tiny_model(x), loaded(x))
    assert ckpt.meta == make_meta(tiny_spec)
    assert ckpt.spec == tiny_spec
    assert len(ckpt.sha256) == 64


def test_truncated_file_is_refused(tmp_path, tiny_spec, tiny_model):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model, make_meta(tiny_spec))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.safetensors: truncated"):
        load_checkpoint(path)
    path.write_bytes(data[:20])
    with pytest.raises(CheckpointError, match="truncated inside its header"):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"hello, I am a text file\n" * 10, b"\x89PNG\r\n\x1a\n" + b"\0" * 64, b"abc"])
def test_not_a_checkpoint_is_refused(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="notes.txt: (not a safetensors|too short)"):
        load_checkpoint(path)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_plain_safetensors_without_metadata_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    with pytest.raises(CheckpointError, match="not a sunet-deploy file"):
        load_checkpoint(path)


def test_other_architecture_is_refused(tmp_path, tiny_spec, tiny_model):
    path = save_checkpoint(tmp_path / "tiny.safetensors", tiny_model, make_meta(tiny_spec))
    small = build_model(ModelSpec("sunet_small", num_classes=5))
    with pytest.raises(CheckpointError, match="tiny.safetensors: weights are for another architecture"):
        load_state_into(small, load_checkpoint(path).state_dict, path)
    with pytest.raises(CheckpointError, match="built for sunet_tiny, expected sunet64"):
        load_model(path, expected_arch="sunet64")


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    for name, writer in {
        "raw.pth": lambda p: p.write_bytes(pickle.dumps({"state_dict": Payload(marker)})),
        "torch.pth": lambda p: torch.save({"state_dict": Payload(marker)}, p),
    }.items():
        path = tmp_path / name
        writer(path)
        with pytest.raises(CheckpointError, match=f"{name}: is a .*refusing to unpickle"):
            load_checkpoint(path)
    assert not marker.exists()


def test_huge_header_length_is_refused(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_checkpoint(path)


def test_failed_write_keeps_previous_file(tmp_path, tiny_spec, tiny_model, monkeypatch):
    path = save_checkpoint(tmp_path / "m.safetensors", tiny_model, make_meta(tiny_spec))
    before = path.read_bytes()

    def broken_replace(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CheckpointError, match="cannot be written"):
        save_checkpoint(path, build_model(tiny_spec), make_meta(tiny_spec))
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_unwritable_destination(tmp_path, tiny_spec, tiny_model):
    with pytest.raises(CheckpointError, match="cannot be written"):
        save_checkpoint(tmp_path / "missing" / "m.safetensors", tiny_model, make_meta(tiny_spec))


@pytest.mark.parametrize("os_", [8, 16, 32])
def test_imagenet_backbone_loads_into_segmentation_model(tmp_path, os_):
    torch.manual_seed(1)
    spec = ModelSpec("sunet_tiny", task="classification", num_classes=10)
    classifier = randomize_bn(build_model(spec)).eval()
    path = save_checkpoint(tmp_path / "imagenet.safetensors", classifier, make_meta(spec))
    segmenter = build_model(ModelSpec("sunet_tiny", num_classes=3, output_stride=os_)).eval()
    assert load_backbone_weights(segmenter, path) == len(classifier.backbone.state_dict())
    for name, tensor in classifier.backbone.state_dict().items():
        assert torch.equal(segmenter.backbone.state_dict()[name], tensor)
    if os_ == 32:  # same strides and weights: the same features
        x = torch.randn(1, 3, 96, 96)
        with torch.no_grad():
            assert torch.equal(segmenter.backbone(x), classifier.backbone(x))


def test_backbone_of_other_architecture_is_refused(tmp_path):
    spec = ModelSpec("sunet_small", task="classification", num_classes=10)
    path = save_checkpoint(tmp_path / "small.safetensors", build_model(spec), make_meta(spec))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_backbone_weights(build_model(ModelSpec("sunet_tiny")), path)


def test_written_files_follow_the_umask(tmp_path, tiny_spec, tiny_model):
    old = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", tiny_model, make_meta(tiny_spec))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_safetensors_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path, tiny_model, tiny_spec):
    """A header of 128 mod 256 bytes starts the file with 0x80, the pickle protocol byte."""
    path = tmp_path / "model.safetensors"
    for padding in range(256):
        meta = make_meta(tiny_spec)
        meta.training = {"note": "x" * padding}
        save_checkpoint(path, tiny_model, meta)
        if path.read_bytes()[:1] == b"\x80":
            break
    assert path.read_bytes()[:1] == b"\x80"
    model, _ = load_model(path)
    for name, value in tiny_model.state_dict().items():
        assert torch.equal(model.state_dict()[name], value)
