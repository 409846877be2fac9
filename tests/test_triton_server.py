"""A real Triton server (the nvidia-pytriton wheel's tritonserver, python backend, CPU) on 127.0.0.1:
concurrent requests over HTTP and gRPC, dynamic batching, masks equal to a local ONNX Runtime run,
and no process left behind however the launcher ends.

The serving environment (.venv-serve, runtimes.serve.create_serve_venv) is made on first use; the
tests are skipped, with pip's reason, only where the wheel cannot be installed.
"""

import json
import signal
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image

from conftest import several_class_checkpoint
from benchmarks.serve import main as serve_benchmark
from export.onnx import export_onnx
from export.triton import export_repository_model
from runtimes import open_runtime
from runtimes.predict import Predictor
from runtimes.serve import PROJECT, create_serve_venv
from sunet_deploy.formats import OnnxRecipe, TritonRecipe
from sunet_deploy.preprocess import read_image, voc_palette

pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: pip install 'sunet-deploy[serve]'")
from runtimes.triton import TritonImageClient, server_statistics  # noqa: E402
from tritonclient.utils import InferenceServerException  # noqa: E402

NUM_CLASSES = 5
STATIC = (64, 64)
READY_TIMEOUT = 60


@pytest.fixture(scope="module")
def serve_python() -> Path:
    try:
        return create_serve_venv(PROJECT / ".venv-serve")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"the serving environment cannot be installed here ({exc})")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[Path]:
    """Two sizes, an RGBA and a grayscale PNG among them: the server decodes as runtimes.predict reads files."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    kinds = [((64, 64), "RGB")] * 5 + [((45, 77), "RGB"), ((64, 64), "RGBA"), ((45, 77), "L")]
    for i, (size, mode) in enumerate(kinds):
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8).squeeze()
        paths.append(folder / f"{i}.png")
        Image.fromarray(pixels, mode).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def repository(tmp_path_factory, images) -> Path:
    """sunet (tensor interface), sunet_image (images in, masks out) and sunet_static (the same for a
    --static 64x64 ONNX model), all on the python backend."""
    root = tmp_path_factory.mktemp("served")
    checkpoint = several_class_checkpoint(root / "model.safetensors", read_image(images[0]), NUM_CLASSES)
    repo = root / "repository"
    # 100 ms of queue delay: the concurrent requests of a test meet in one batch even on a loaded machine
    images_model = TritonRecipe(name="sunet_image", backend="python", max_queue_delay_us=100_000)
    folder = export_repository_model(checkpoint, repo, images_model)
    tensor_model = TritonRecipe(name="sunet", backend="python", io="tensor", max_queue_delay_us=100_000)
    export_repository_model(folder / "1" / "model.onnx", repo, tensor_model)
    static = export_onnx(checkpoint, root / "static.onnx", OnnxRecipe(static=STATIC)).path
    export_repository_model(static, repo, TritonRecipe(name="sunet_static", backend="python"))
    return repo


@pytest.fixture(scope="module")
def local_masks(repository, images) -> list[np.ndarray]:
    """ONNX Runtime here, through runtimes.predict's Predictor, on the same ONNX file."""
    with open_runtime(repository / "sunet" / "1" / "model.onnx") as runtime:
        predictor = Predictor(runtime)
        return [predictor.mask(read_image(path)) for path in images]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(serve_python: Path, repository: Path, log: Path):
    """`python -m runtimes.serve` in the serving environment; yields (launcher, http port, grpc port) once ready."""
    http, grpc = free_port(), free_port()
    command = [str(serve_python), "-m", "runtimes.serve", str(repository), "--http-port", str(http),
               "--grpc-port", str(grpc), "--metrics-port", "0", "--exit-timeout", "2"]
    with open(log, "w") as out:
        launcher = subprocess.Popen(command, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready in" not in log.read_text():
            assert launcher.poll() is None and time.monotonic() < deadline, f"not ready:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        yield launcher, http, grpc
    finally:
        if launcher.poll() is None:
            launcher.kill()
        launcher.wait()


def family(launcher: subprocess.Popen) -> list[psutil.Process]:
    """tritonserver and its python backend stubs."""
    children = psutil.Process(launcher.pid).children(recursive=True)
    assert {"tritonserver", "triton_python_backend_stub"} <= {p.name() for p in children}, children
    return children


def assert_gone(processes: list[psutil.Process], timeout: float) -> None:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    assert not alive, f"left behind: {alive}"


def concurrently(count: int, work) -> list:
    """Run work(i) for i < count in threads released together; the results in order. (A tritonclient HTTP
    client belongs to the thread that made it: gevent.)"""
    results = [None] * count
    barrier = threading.Barrier(count)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_image_model(uri: str, images: list[Path], local_masks: list[np.ndarray]) -> None:
    """One request per image, all at once: batched by the server, masks as local ONNX Runtime's."""
    def segment(i: int) -> np.ndarray:
        with TritonImageClient(uri) as client:
            return client.masks([images[i].read_bytes()])[0]

    before = server_statistics(uri)
    masks = concurrently(len(images), segment)
    batches = server_statistics(uri).since(before).batches
    assert sum(size * n for size, n in batches.items()) == len(images)
    assert max(batches) > 1, f"{uri}: no batch larger than 1 ({batches})"
    for mask, local in zip(masks, local_masks):
        np.testing.assert_array_equal(mask, local)
    with TritonImageClient(uri) as client, pytest.raises(InferenceServerException, match="image 1: cannot"):
        client.masks([images[0].read_bytes(), b"not an image"])


def check_static_image_model(uri: str, repository: Path, images: list[Path]) -> None:
    """A --static model letterboxes an image of another size, as runtimes.predict does: masks of the
    image's own size, equal to a local run of the same ONNX file."""
    other = [path for path in images if read_image(path).shape[:2] != STATIC]
    with open_runtime(repository / "sunet_static" / "1" / "model.onnx") as runtime:
        predictor = Predictor(runtime)
        local = [predictor.mask(read_image(path)) for path in other]
    with TritonImageClient(uri) as client:
        masks = client.masks([path.read_bytes() for path in other])
    for mask, expected, path in zip(masks, local, other):
        assert mask.shape == read_image(path).shape[:2] != STATIC
        np.testing.assert_array_equal(mask, expected)


def check_tensor_model(uri: str, images: list[Path], local_masks: list[np.ndarray]) -> None:
    """The triton:// runtime behind runtimes.predict's Predictor, as any local runtime."""
    with open_runtime(uri) as runtime:
        assert runtime.info.metadata.palette == voc_palette(NUM_CLASSES).tolist()
        predictor = Predictor(runtime)
        for path, local in zip(images, local_masks):
            np.testing.assert_array_equal(predictor.mask(read_image(path)), local)


def check_benchmark(uri: str, output: Path) -> None:
    assert serve_benchmark([uri, "--concurrency", "1", "4", "--size", "64x64", "--warmup", "0.2", "--duration", "1",
                            "--output", str(output)]) == 0
    rows = json.loads((output / "serve.json").read_text())["rows"]
    assert [r["clients"] for r in rows] == [1, 4] and all(r["requests"] > 0 for r in rows)
    assert (output / "serve.png").stat().st_size > 0 and "| 4 |" in (output / "serve.md").read_text()


def test_served_models(serve_python, repository, images, local_masks, tmp_path):
    with served(serve_python, repository, tmp_path / "server.log") as (launcher, http, grpc):
        processes = family(launcher)
        for prefix in (f"triton://127.0.0.1:{http}", f"triton+grpc://127.0.0.1:{grpc}"):
            check_image_model(f"{prefix}/sunet_image", images, local_masks)
            check_tensor_model(f"{prefix}/sunet", images, local_masks)
        check_static_image_model(f"triton://127.0.0.1:{http}/sunet_static", repository, images)
        check_benchmark(f"triton+grpc://127.0.0.1:{grpc}/sunet_image", tmp_path / "bench-image")
        check_benchmark(f"triton://127.0.0.1:{http}/sunet", tmp_path / "bench-tensor")
        launcher.send_signal(signal.SIGINT)
        assert launcher.wait(30) == 0
        assert_gone(processes, timeout=5)
    assert "stopping" in (tmp_path / "server.log").read_text()


def test_server_dies_with_a_killed_launcher(serve_python, repository, tmp_path):
    with served(serve_python, repository, tmp_path / "server.log") as (launcher, _, _):
        processes = family(launcher)
        launcher.kill()
        assert_gone(processes, timeout=20)


def test_command_runs_while_serving(serve_python, repository, tmp_path):
    """With a command after --, the server runs while it does; the exit status is the command's."""
    http = free_port()
    uri = f"triton://127.0.0.1:{http}/sunet"
    check = f"from runtimes.triton import server_statistics; server_statistics({uri!r}); exit(3)"
    result = subprocess.run([str(serve_python), "-m", "runtimes.serve", str(repository), "--http-port", str(http),
                             "--grpc-port", str(free_port()), "--metrics-port", "0", "--exit-timeout", "2",
                             "--", str(serve_python), "-c", check],
                            cwd=PROJECT, capture_output=True, text=True, timeout=READY_TIMEOUT)  # fmt: skip
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert "ready in" in result.stdout


def test_unloadable_model_fails_cleanly(serve_python, onnx_backend_repository, tmp_path):
    """The wheel has no onnxruntime backend: an onnxruntime_onnx model cannot load, and the launcher says so."""
    result = subprocess.run([str(serve_python), "-m", "runtimes.serve", str(onnx_backend_repository),
                             "--http-port", str(free_port()), "--grpc-port", str(free_port()), "--metrics-port", "0"],
                            cwd=PROJECT, capture_output=True, text=True, timeout=READY_TIMEOUT)  # fmt: skip
    assert result.returncode == 2
    assert "unable to find backend library for backend 'onnxruntime'" in result.stdout + result.stderr
    assert "error: tritonserver exited with status 1" in result.stderr


@pytest.fixture
def onnx_backend_repository(repository, tmp_path) -> Path:
    export_repository_model(repository / "sunet" / "1" / "model.onnx", tmp_path, TritonRecipe())
    return tmp_path
