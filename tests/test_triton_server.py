"""A real Triton server (the nvidia-pytriton wheel's tritonserver, python backend, CPU) on 127.0.0.1:
concurrent requests over HTTP and gRPC, dynamic batching, masks equal to a local ONNX Runtime run,
and no process left behind however the launcher ends.

runtimes.predict on the image model writes, for real photos and a video, the very files a local
predict of the same ONNX file writes; benchmarks.parity --artifact reports both served models.

The serving environment (.venv-serve, runtimes.serve.create_serve_venv) is made on first use; the
tests are skipped, with pip's reason, only where the wheel cannot be installed.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from benchmarks.parity import main as parity
from factory import several_class_checkpoint
from photos import write_photos
from benchmarks.serving.serve import main as serve_benchmark
from benchmarks.serving.serve_transports import main as transports_benchmark
from export.onnx import export_onnx
from export.triton import export_repository_model, validate_config
from runtimes import open_runtime
from runtimes.options import TritonOptions
from runtimes.predict import Predictor
from runtimes.predict import main as predict
from runtimes.serve import PROJECT, create_serve_venv
from sunet_deploy.data import SyntheticSegmentation
from sunet_deploy.formats import OnnxRecipe, TritonRecipe
from sunet_deploy.pipeline.images import read_image
from sunet_deploy.pipeline.palettes import read_label_png, voc_palette

psutil = pytest.importorskip("psutil", reason="psutil is not installed (the [torch] extra)")
pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed: pip install 'sunet-deploy[serve]'")
from runtimes.triton import TritonImageClient, server_statistics  # noqa: E402
from runtimes.triton_io import cuda_availability, region_prefix  # noqa: E402
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
def photos(tmp_path_factory) -> Path:
    """The seven real photos (tests/photos.py) and a three-frame video."""
    folder = tmp_path_factory.mktemp("photos")
    paths = write_photos(folder)
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for y in (0, 100, 200):
        writer.write(cv2.imread(str(paths["coffee"]))[y : y + 48, 100:164])
    writer.release()
    return folder


@pytest.fixture(scope="module")
def repository(tmp_path_factory, photos) -> Path:
    """sunet (tensor interface), sunet_image (images in, masks out) and sunet_static (the same for a
    --static 64x64 ONNX model), all on the python backend."""
    root = tmp_path_factory.mktemp("served")
    # the classes of the synthetic validation set benchmarks.parity scores a checkpoint that records none on
    classes = SyntheticSegmentation(num_samples=1, num_classes=NUM_CLASSES).classes
    checkpoint = several_class_checkpoint(root / "model.safetensors", read_image(photos / "coffee.png"), NUM_CLASSES,
                                          classes)
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


def check_tensor_model(uri: str, images: list[Path], local_masks: list[np.ndarray],
                       shared_memory: str = "none") -> None:
    """The triton:// runtime behind runtimes.predict's Predictor, as any local runtime (two image sizes: a shared
    memory region per shape)."""
    with open_runtime(uri, TritonOptions(shared_memory=shared_memory)) as runtime:
        assert runtime.info.metadata.palette == voc_palette(NUM_CLASSES).tolist()
        predictor = Predictor(runtime)
        for path, local in zip(images, local_masks):
            np.testing.assert_array_equal(predictor.mask(read_image(path)), local)


@pytest.fixture(scope="module")
def local_predictions(repository, photos, tmp_path_factory) -> Path:
    """runtimes.predict with ONNX Runtime here on the image model's own ONNX file."""
    out = tmp_path_factory.mktemp("local") / "predictions"
    assert predict([str(repository / "sunet_image" / "1" / "model.onnx"), str(photos), "-o", str(out)]) == 0
    masks = [read_label_png(p) for p in out.rglob("*_mask.png")]
    assert len(np.unique(np.concatenate([m.ravel() for m in masks]))) >= 3, "vacuous: fewer than 3 classes drawn"
    return out


def check_predict(uri: str, photos: Path, local: Path, out: Path) -> None:
    """runtimes.predict through the server writes byte for byte the masks and overlays of a local run."""
    assert predict([uri, str(photos), "-o", str(out)]) == 0
    written = sorted(p.relative_to(local) for p in local.rglob("*") if p.suffix in (".png", ".jpg"))
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.suffix in (".png", ".jpg")) == written
    assert len(written) == 2 * 7 + 3  # a mask and an overlay per photo, a mask per frame
    for path in written:
        assert (out / path).read_bytes() == (local / path).read_bytes(), path
    summary = json.loads((out / "predict_summary.json").read_text())
    assert summary["runtime"] == "triton" and summary["exif_rotated"] and summary["latency_ms"]["count"] == 7 + 3


def check_parity(uris: list[str], checkpoint: Path, output: Path) -> None:
    """benchmarks.parity --artifact on served models: one row each, judged as FP32 against PyTorch."""
    argv = [str(checkpoint), "--limit", "3", "--threads", "1", "--output", str(output)]
    assert parity(argv + [arg for uri in uris for arg in ("--artifact", uri)]) == 0
    rows = json.loads((output / "parity.json").read_text())["runtimes"]
    assert list(rows) == uris and all(r["precision"] == "fp32" and r["agreement"] >= 99.9 for r in rows.values())
    assert rows[uris[0]]["max_abs_logit_error"] < 1e-3  # a tensor model's logits are compared too
    assert all(f"| {uri} | fp32 |" in (output / "parity.md").read_text() for uri in uris)


def check_benchmark(uri: str, output: Path) -> None:
    assert serve_benchmark([uri, "--concurrency", "1", "4", "--size", "64x64", "--warmup", "0.2", "--duration", "1",
                            "--output", str(output)]) == 0
    rows = json.loads((output / "serve.json").read_text())["rows"]
    assert [r["clients"] for r in rows] == [1, 4] and all(r["requests"] > 0 for r in rows)
    assert (output / "serve.png").stat().st_size > 0 and "| 4 |" in (output / "serve.md").read_text()
    # perf_analyzer (installed with the serving environment) measured the same levels
    assert all(r["perf_analyzer"]["clients"] == r["clients"] and r["perf_analyzer"]["throughput_ips"] > 0 for r in rows)
    assert "NVIDIA perf_analyzer on the same levels" in (output / "serve.md").read_text()


def check_transports(uri: str, grpc: int, output: Path) -> None:
    """benchmarks.serving.serve_transports, one round: every transport and perf_analyzer measured
    (12 requests: perf_analyzer's windows are a third of our time per transport, and need several requests)."""
    assert transports_benchmark([uri, "--grpc-port", str(grpc), "--size", "64x64", "--rounds", "1", "--requests", "12",
                                 "--output", str(output)]) == 0  # fmt: skip
    rows = json.loads((output / "transports.json").read_text())["rows"]
    assert [r["transport"] for r in rows] == ["tritonclient HTTP (before)", "HttpTensors", "system shared memory (HTTP)",
                                              "gRPC", "perf_analyzer", "perf_analyzer, shared memory"]  # fmt: skip
    assert all(r["median"] > 0 for r in rows) and "| gRPC |" in (output / "transports.md").read_text()


def test_served_models(serve_python, repository, images, local_masks, photos, local_predictions, tmp_path):
    with served(serve_python, repository, tmp_path / "server.log") as (launcher, http, grpc):
        processes = family(launcher)
        for prefix in (f"triton://127.0.0.1:{http}", f"triton+grpc://127.0.0.1:{grpc}"):
            check_image_model(f"{prefix}/sunet_image", images, local_masks)
            check_tensor_model(f"{prefix}/sunet", images, local_masks)
            check_tensor_model(f"{prefix}/sunet", images, local_masks, shared_memory="system")
        check_predict(f"triton://127.0.0.1:{http}/sunet_image", photos, local_predictions, tmp_path / "http")
        check_predict(f"triton+grpc://127.0.0.1:{grpc}/sunet_image", photos, local_predictions, tmp_path / "grpc")
        check_parity([f"triton://127.0.0.1:{http}/sunet", f"triton+grpc://127.0.0.1:{grpc}/sunet_image"],
                     repository.parent / "model.safetensors", tmp_path / "parity")
        check_static_image_model(f"triton://127.0.0.1:{http}/sunet_static", repository, images)
        check_benchmark(f"triton+grpc://127.0.0.1:{grpc}/sunet_image", tmp_path / "bench-image")
        check_benchmark(f"triton://127.0.0.1:{http}/sunet", tmp_path / "bench-tensor")
        check_transports(f"triton://127.0.0.1:{http}/sunet", grpc, tmp_path / "transports")
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


KILLED_CLIENT = """
import sys, time, numpy as np
from runtimes import open_runtime
from runtimes.options import TritonOptions
runtime = open_runtime(sys.argv[1], TritonOptions(shared_memory="system"))
runtime.activate()
runtime.infer(np.zeros((1, 3, 64, 64), np.float32))
print("inferred", flush=True)
time.sleep(60)
"""


def shm_files(pid: int) -> list[str]:
    return [name for name in os.listdir("/dev/shm") if name.startswith(region_prefix(pid))]


def registered(uri: str) -> list[str]:
    from runtimes.triton import ServedModel

    client = ServedModel.parse(uri).client()
    try:
        return [region["name"] for region in client.get_system_shared_memory_status()]
    finally:
        client.close()


def test_killed_shared_memory_client_leaves_no_region(serve_python, repository, tmp_path):
    """A client killed by SIGKILL while its regions are registered leaves nothing in /dev/shm (their names were
    unlinked once the server mapped them) and nothing running; the server's registrations it could not undo
    are unregistered by the next shared-memory client."""
    with served(serve_python, repository, tmp_path / "server.log") as (_, http, _):
        uri = f"triton://127.0.0.1:{http}/sunet"
        client = subprocess.Popen([sys.executable, "-c", KILLED_CLIENT, uri], cwd=PROJECT, stdout=subprocess.PIPE,
                                  text=True)
        try:
            assert client.stdout.readline() == "inferred\n"
            helpers = psutil.Process(client.pid).children(recursive=True)  # multiprocessing's resource tracker
            assert len([n for n in registered(uri) if n.startswith(region_prefix(client.pid))]) == 2
            assert shm_files(client.pid) == []
        finally:
            client.kill()
            client.wait()
        assert_gone(helpers, timeout=10)
        assert shm_files(client.pid) == []
        with open_runtime(uri, TritonOptions(shared_memory="system")) as runtime:
            runtime.infer(np.zeros((1, 3, 64, 64), np.float32))
            assert not [n for n in registered(uri) if n.startswith(region_prefix(client.pid))]
        assert registered(uri) == []


def test_cuda_shared_memory(serve_python, repository, images, local_masks, tmp_path):
    reason = cuda_availability()
    if reason:
        pytest.skip(reason)
    with served(serve_python, repository, tmp_path / "server.log") as (_, http, _):
        check_tensor_model(f"triton://127.0.0.1:{http}/sunet", images, local_masks, shared_memory="cuda")


def test_search_writes_the_best_config(serve_python, repository, tmp_path):
    """benchmarks.serving.serve --search serves each configuration, measures it with perf_analyzer and writes the best
    into the model's config.pbtxt, the earlier one kept."""
    model = tmp_path / "repository" / "sunet"
    shutil.copytree(repository / "sunet", model)
    before = (model / "config.pbtxt").read_text()
    assert serve_benchmark([str(model), "--search", "--search-instances", "1", "2", "--search-max-batch", "2",
                            "--search-queue-delay", "0", "--concurrency", "1", "--size", "64x64", "--duration", "1",
                            "--goal", "latency", "--output", str(tmp_path / "search")]) == 0
    assert (model / "config.pbtxt.previous").read_text() == before
    report = json.loads((tmp_path / "search" / "search.json").read_text())
    assert [(r["instances"], r["max_batch"]) for r in report["results"]] == [(1, 2), (2, 2)]
    best = min(report["results"], key=lambda r: r["levels"][0]["p50"])
    config = validate_config((model / "config.pbtxt").read_text())
    assert (config.instance_group[0].count, config.max_batch_size) == (best["instances"], 2)
    assert (model / "config.pbtxt").read_text().startswith("# benchmarks.serving.serve --search, goal latency")
