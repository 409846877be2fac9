import pytest
import torch

# The helpers live in tests/factory.py; a test imports them from there, never from conftest or another test.
from factory import Artifacts, randomize_bn
from sunet_deploy.models import ModelSpec, build_model


@pytest.fixture(autouse=True)
def _single_thread_torch():
    # Tests run in parallel workers on small CI machines; one thread each avoids oversubscription.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Artifacts:
    """Checkpoints and exports built once per session, shared by the pytest-xdist workers (tests/factory.py)."""
    return Artifacts(tmp_path_factory)


@pytest.fixture
def tiny_spec() -> ModelSpec:
    return ModelSpec("sunet_tiny", num_classes=5, output_stride=16)


@pytest.fixture
def tiny_model(tiny_spec):
    torch.manual_seed(0)
    return randomize_bn(build_model(tiny_spec)).eval()
