"""Checkpoints: model weights plus metadata in safetensors, loaded without executing code.

A checkpoint is a safetensors file whose header carries two strings: the kind of file
("checkpoint", or a training-state file written by `train`) and the JSON metadata. Pickles,
including PyTorch's zip format, are refused before anything is deserialised.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from .artifact import CHECKPOINT_KIND_KEY as KIND_KEY
from .artifact import CHECKPOINT_META_KEY as META_KEY
from .artifact import (ArtifactError, ArtifactInfo, checkpoint_info, checkpoint_info_from_json, derived_info,
                       read_safetensors_header)
from .fileio import atomic_write_bytes, file_sha256
from .metadata import ModelMetadata
from .models import ModelSpec, build_model

FORMAT_VERSION = 1
VERSION_KEY = "sunet_deploy.format_version"


class CheckpointError(ArtifactError):
    """A file that cannot be used as a checkpoint; the message names the file and the reason."""


@dataclass
class Checkpoint:
    state_dict: dict[str, torch.Tensor]
    meta: ModelMetadata
    path: Path
    sha256: str

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_dict(self.meta.model)

    @property
    def info(self) -> ArtifactInfo:
        return checkpoint_info(self.meta)

    def artifact_info(self, format: str, output: str = "logits", precision: str = "fp32",
                      input_shape: tuple = (None, 3, None, None)) -> ArtifactInfo:
        """The ArtifactInfo of an artifact made from this checkpoint (artifact.derived_info)."""
        return derived_info(self.info, self.sha256, format, output, precision, input_shape)


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], kind: str, meta_json: str) -> Path:
    """Write tensors and a JSON string atomically as a safetensors file of the given kind."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    header = {KIND_KEY: kind, META_KEY: meta_json, VERSION_KEY: str(FORMAT_VERSION)}
    try:
        return atomic_write_bytes(path, save(tensors, metadata=header))
    except OSError as exc:
        raise CheckpointError(path, f"cannot be written: {exc.strerror or exc}") from exc


def load_tensors(path: str | os.PathLike, kind: str) -> tuple[dict[str, torch.Tensor], str]:
    """Read a file written by `save_tensors`, checking its structure before loading any data."""
    try:
        header = read_safetensors_header(path)
    except ArtifactError as exc:
        raise CheckpointError(path, exc.reason) from exc
    found_kind = header.get("__metadata__", {}).get(KIND_KEY)
    if found_kind is None:
        raise CheckpointError(path, "a safetensors file but not a sunet-deploy file (no sunet_deploy metadata)")
    if found_kind != kind:
        raise CheckpointError(path, f"is a sunet-deploy {found_kind!r} file, expected a {kind!r} file")
    version = header["__metadata__"].get(VERSION_KEY)
    if version != str(FORMAT_VERSION):
        raise CheckpointError(path, f"format version {version}, this sunet-deploy reads {FORMAT_VERSION}")
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"corrupt tensor data ({exc})") from exc
    return tensors, header["__metadata__"][META_KEY]


def save_checkpoint(path: str | os.PathLike, model: nn.Module, meta: ModelMetadata) -> Path:
    """Save a model's weights with its metadata; the file is written atomically."""
    return save_tensors(path, model.state_dict(), "checkpoint", checkpoint_info(meta).to_json())


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    state_dict, meta_json = load_tensors(path, "checkpoint")
    try:
        meta = checkpoint_info_from_json(meta_json, path).metadata
    except ArtifactError as exc:
        raise CheckpointError(path, exc.reason) from exc
    return Checkpoint(state_dict, meta, Path(path), file_sha256(path))


def load_model(path: str | os.PathLike, expected_arch: str | None = None) -> tuple[nn.Module, Checkpoint]:
    """Rebuild the model a checkpoint describes and load its weights (eval mode, CPU)."""
    ckpt = load_checkpoint(path)
    if expected_arch is not None and ckpt.meta.arch != expected_arch:
        raise CheckpointError(path, f"built for {ckpt.meta.arch}, expected {expected_arch}")
    try:
        model = build_model(ckpt.spec)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(path, f"describes a model that cannot be built ({exc})") from exc
    load_state_into(model, ckpt.state_dict, path)
    return model.eval(), ckpt


def load_state_into(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
    """load_state_dict with one clear line when names or shapes do not match the model."""
    check_state_shapes(model, {name: tuple(t.shape) for name, t in state_dict.items()}, source)
    model.load_state_dict(state_dict)


def check_state_shapes(model: nn.Module, shapes: dict[str, tuple], source: str | os.PathLike) -> None:
    """CheckpointError, one line, unless `shapes` (tensor name -> shape) are exactly the model's weights
    (the model may live on the meta device: only its shapes are read)."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(set(shapes) - set(expected))
    wrong_shape = [k for k in expected.keys() & shapes.keys() if expected[k] != tuple(shapes[k])]
    if missing or unexpected or wrong_shape:
        details = []
        for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shape", sorted(wrong_shape))):
            if names:
                details.append(f"{len(names)} {label} (e.g. {names[0]})")
        raise CheckpointError(source, "weights are for another architecture: " + ", ".join(details))


def load_backbone_weights(model: nn.Module, path: str | os.PathLike) -> int:
    """Load the backbone of any sunet-deploy checkpoint (e.g. an ImageNet classifier) into `model`.

    Backbone parameter names are the same for every output stride, so classification weights
    initialise a dilated segmentation model. Returns the number of tensors loaded.
    """
    ckpt = load_checkpoint(path)
    backbone_state = {k[len("backbone."):]: v for k, v in ckpt.state_dict.items() if k.startswith("backbone.")}
    if not backbone_state:
        raise CheckpointError(path, "holds no backbone weights")
    load_state_into(model.backbone, backbone_state, path)
    return len(backbone_state)
