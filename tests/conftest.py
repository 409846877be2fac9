import contextlib
import fcntl
import os

import numpy as np
import pytest
import torch

from sunet_deploy.metadata import ModelMetadata
from sunet_deploy.models import ModelSpec, build_model


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # Tests run in parallel workers on small CI machines; one thread each avoids oversubscription.
    torch.set_num_threads(1)


def make_meta(spec: ModelSpec) -> ModelMetadata:
    return ModelMetadata(
        model=spec.to_dict(),
        classes=[f"class{i}" for i in range(spec.num_classes)],
        palette=[[i, 2 * i % 256, 3 * i % 256] for i in range(spec.num_classes)],
    )


def randomize_bn(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give BatchNorm layers non-trivial statistics so eval outputs depend on every buffer."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


@pytest.fixture
def tiny_spec() -> ModelSpec:
    return ModelSpec("sunet_tiny", num_classes=5, output_stride=16)


@pytest.fixture
def tiny_model(tiny_spec):
    torch.manual_seed(0)
    return randomize_bn(build_model(tiny_spec)).eval()


@contextlib.contextmanager
def shared_folder(tmp_path_factory, name: str):
    """A folder shared by all pytest-xdist workers, held under a lock: build expensive fixtures
    (compiled packages, C++ builds) once, in whichever worker gets there first."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / name
    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield folder


def head_features(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The input of the model's final 1x1 head conv on `batch`."""
    features = {}
    hook = model.head[-1].register_forward_hook(lambda mod, inputs, out: features.setdefault("x", inputs[0]))
    with torch.no_grad():
        model(batch)
    hook.remove()
    return features["x"]


def several_class_checkpoint(path, image: np.ndarray, num_classes: int = 5, classes: list[str] | None = None):
    """A random sunet_tiny (OS16, VOC palette) with its head spread over `image`'s features, saved at
    `path`: an untrained model that draws several classes on images like `image` (named `classes`)."""
    from sunet_deploy.checkpoint import save_checkpoint
    from sunet_deploy.preprocess import Normalization, voc_palette

    spec = ModelSpec("sunet_tiny", num_classes=num_classes, output_stride=16)
    torch.manual_seed(0)
    model = randomize_bn(build_model(spec)).eval()
    meta = make_meta(spec)
    meta.palette = voc_palette(num_classes).tolist()
    meta.classes = classes or meta.classes
    spread_classes(model, torch.from_numpy(Normalization.from_metadata(meta)(image)[0]))
    return save_checkpoint(path, model, meta)


def spread_classes(model: torch.nn.Module, batch: torch.Tensor, seed: int = 1) -> torch.nn.Module:
    """Random head weights centred on the features of `batch`: an untrained model that still draws
    several classes (a random model labels every pixel the same, which would make parity vacuous)."""
    conv = model.head[-1]
    mean_feature = head_features(model, batch).mean(dim=(0, 2, 3))
    with torch.no_grad():
        weight = torch.randn(conv.out_channels, conv.in_channels, generator=torch.Generator().manual_seed(seed))
        conv.weight.copy_(weight[:, :, None, None])
        conv.bias.copy_(-(weight @ mean_feature))
    return model


LOGIT_SPREAD = 4.0


def principal_head(model, batch):
    """Head weights along the principal directions of the head's input features on `batch`: an
    untrained model that draws several classes on dataset images, as far apart as its features
    vary most. (Random directions, as conftest.spread_classes draws, separate classes by small
    differences of large features, which FP16 and INT8 rounding flip far more than in a trained model.)"""
    conv = model.head[-1]
    x = head_features(model, batch).permute(0, 2, 3, 1).reshape(-1, conv.in_channels)
    with torch.no_grad():
        centred = x - x.mean(0)
        directions = torch.linalg.svd(centred, full_matrices=False).Vh[: conv.out_channels]
        weight = directions * LOGIT_SPREAD / (centred @ directions.T).std(0)[:, None]
        conv.weight.copy_(weight[:, :, None, None])
        conv.bias.copy_(-(weight @ x.mean(0)))
    return model


def make_checkpoint(path, output_stride, arch="sunet_tiny", num_classes=5):
    """A random model whose head draws several classes on its synthetic dataset's images (principal_head)."""
    from export.calibration import dataset_images, model_inputs
    from sunet_deploy.checkpoint import save_checkpoint

    spec = ModelSpec(arch, num_classes=num_classes, output_stride=output_stride)
    torch.manual_seed(0)
    model = randomize_bn(build_model(spec)).eval()
    meta = make_meta(spec)
    images = model_inputs(dataset_images(meta, count=4, seed=100), meta)
    principal_head(model, torch.from_numpy(np.concatenate(images)))
    return save_checkpoint(path, model, meta)
