"""predict --cluster local on Ray: the single process's masks byte for byte, a killed worker retried with every
input counted once, --resume, and no Ray process left behind, even when the driver is SIGKILLed; the workers
of every CPU runtime (ONNX Runtime, OpenVINO, Triton clients of a real server) and, rehearsed with the
TensorRT and pycuda fakes (tests/fakes/gpu_workers.py), a TensorRT engine on GPU workers, one GPU each,
and a worker that cannot load the model as one error line.

Slow: each run starts a Ray cluster (about 4 s on an idle machine, up to a minute on the shared 2 cores),
in a child process marked by an environment variable so that the test can find every process it left."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import cv2
import pytest

pytest.importorskip("ray.data")
pytest.importorskip("zarr")

from runtimes.cluster import on_actor_gpu  # noqa: E402
from runtimes.options import OnnxRuntimeOptions, OpenVINOOptions, PyTorchOptions, TensorRTOptions  # noqa: E402
from runtimes.predict import main  # noqa: E402
from sunet_deploy.data.mosaic import SyntheticMosaic  # noqa: E402
from sunet_deploy.lifetime import command_line, processes_with  # noqa: E402
from test_triton_server import serve_python  # noqa: E402, F401  (a fixture)

pytestmark = pytest.mark.slow
MARK = "SUNET_TEST_CLUSTER_MARK"
TESTS = Path(__file__).parent


@pytest.fixture(scope="module")
def onnx(artifacts):
    return str(artifacts.onnx())


def images(folder: Path, count: int, large: bool = False) -> Path:
    folder.mkdir(parents=True)
    mosaic = SyntheticMosaic((64, 512), tile=64)
    for k in range(count):
        image, _ = mosaic.region(0, 48, 40 * (k % 10), 40 * (k % 10) + 72)
        cv2.imwrite(str(folder / f"im{k:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if large:
        mosaic.write_tiff(folder / "big.tif")  # 4 stripes of 8 16-pixel windows
    return folder


def marked(mark: str) -> list[tuple[int, str]]:
    """(pid, command line) of every process whose environment has MARK=mark."""
    return [(pid, command_line(pid)) for pid in processes_with(MARK, mark)]


def start(args: list[str], mark: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtimes.predict", *args], env={**os.environ, MARK: mark},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def gone_within(mark: str, seconds: float) -> float | None:
    """Seconds until no marked process is left (None: some still are after `seconds`)."""
    begin = time.monotonic()
    while time.monotonic() - begin < seconds:
        if not marked(mark):
            return time.monotonic() - begin
        time.sleep(0.1)
    return None


def summary(out: Path) -> dict:
    return json.loads((out / "predict_summary.json").read_text())


def masks(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*_mask.*"))}


def test_local_cluster_with_a_worker_killed_writes_the_single_process_masks_once_and_leaves_no_process(onnx, tmp_path):
    folder = images(tmp_path / "in", 12, large=True)
    flags = ["--tile", "16"]
    assert main([onnx, str(folder), "-o", str(tmp_path / "single"), *flags]) == 0
    out, mark = tmp_path / "cluster", uuid.uuid4().hex
    proc = start([onnx, str(folder), "-o", str(out), *flags, "--cluster", "local"], mark)
    victim, deadline = None, time.monotonic() + 300
    while victim is None and proc.poll() is None and time.monotonic() < deadline:
        workers = [pid for pid, cmd in marked(mark) if "PredictWorker" in cmd]
        if workers and len(list(out.glob("*_mask.png"))) >= 2:
            victim = workers[0]
            os.kill(victim, signal.SIGKILL)  # Ray restarts the actor and retries its unit
        time.sleep(0.05)
    output, _ = proc.communicate(timeout=600)
    assert victim is not None, "the run ended before a worker could be killed"
    assert proc.returncode == 0, output[-3000:]
    linger = gone_within(mark, 10)
    assert linger is not None, f"left after the command ended: {marked(mark)}"
    print(f"no process of the run left {linger:.1f} s after it ended")
    single, cluster = masks(tmp_path / "single"), masks(out)
    assert len(single) == 13 and "big_mask.tif" in single and cluster == single
    result = summary(out)
    assert (result["inputs"], result["written"], result["skipped"]) == (13, 13, [])
    workers = result["cluster"]["workers"]
    assert sum(w["units"] for w in workers) == 12 + 4 and all(w["mpx_per_s"] for w in workers)  # each unit once
    assert "Mpx/s" in output and (out / "big_overview.png").exists()
    assert main([onnx, str(folder), "-o", str(out), *flags, "--cluster", "local", "--resume"]) == 0
    assert len(summary(out)["resumed"]) == 13 and summary(out)["cluster"]["workers"] == []  # nothing redone


def test_a_driver_killed_with_sigkill_leaves_no_ray_process(onnx, tmp_path):
    folder = images(tmp_path / "in", 40)
    mark = uuid.uuid4().hex
    proc = start([onnx, str(folder), "-o", str(tmp_path / "out"), "--tile", "16", "--cluster", "local"], mark)
    deadline = time.monotonic() + 300
    while not any("PredictWorker" in cmd for _, cmd in marked(mark)) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.1)
    assert len([pid for pid, cmd in marked(mark) if "ray" in cmd]) >= 3  # gcs, raylet, workers...
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    linger = gone_within(mark, 15)
    assert linger is not None, f"still running 15 s after the driver died: {marked(mark)}"
    print(f"every Ray process of the killed driver ended {linger:.1f} s after it")
    assert linger < 5


# ---------------------------------------------------------------- every runtime's workers


@pytest.fixture(scope="module")
def served(serve_python, tmp_path_factory):  # noqa: F811
    """A real Triton server (runtimes.serve) of a tensor model: its URI."""
    from test_served_client import serving, tensor_repository  # it skips without tritonclient

    root = tmp_path_factory.mktemp("cluster_served")
    with serving(serve_python, tensor_repository(root), root) as server:
        yield server.uri("http")


@pytest.mark.parametrize("runtime", ["openvino", "triton"])
def test_openvino_and_triton_client_workers_write_the_single_process_masks(runtime, request, onnx, tmp_path):
    if runtime == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (pip install 'sunet-deploy[openvino]')")
        model, flags = onnx, ["--runtime", "openvino"]
    else:
        pytest.importorskip("tritonclient.http", reason="tritonclient is not installed: pip install 'sunet-deploy[serve]'")
        model, flags = request.getfixturevalue("served"), []
    folder = images(tmp_path / "in", 6, large=True)
    flags += ["--tile", "16"]
    assert main([model, str(folder), "-o", str(tmp_path / "single"), *flags]) == 0
    assert main([model, str(folder), "-o", str(tmp_path / "cluster"), *flags, "--cluster", "local"]) == 0
    single, cluster = masks(tmp_path / "single"), masks(tmp_path / "cluster")
    assert len(single) == 7 and cluster == single
    result = summary(tmp_path / "cluster")
    assert result["runtime"] == summary(tmp_path / "single")["runtime"] == runtime
    assert sum(w["units"] for w in result["cluster"]["workers"]) == 6 + 4


FAKE_GPU_DRIVER = """
import functools, sys, ray
from fakes.gpu_workers import install
install()
ray.init = functools.partial(ray.init, num_gpus=2,
                             runtime_env={"worker_process_setup_hook": "fakes.gpu_workers.install"})
from runtimes.predict import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_tensorrt_engine_runs_on_gpu_workers_and_a_worker_that_cannot_load_it_is_one_line(tmp_path):
    """Rehearsed with the fakes in the driver and in every Ray worker (a cluster told of 2 GPUs): each actor
    loads the engine on its own GPU; the driver, whose machine may have none, does not load it."""
    from fakes.gpu_workers import NO_PYCUDA
    from test_trt_runtime import write_engine

    engine = write_engine(tmp_path / "model.engine")
    folder = images(tmp_path / "in", 6)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}

    def run(out: str, *flags: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", FAKE_GPU_DRIVER, str(engine), str(folder), "-o",
                               str(tmp_path / out), "--tile", "32", "--buffers", "pycuda", *flags],
                              env={**env, **extra}, capture_output=True, text=True, timeout=600)  # fmt: skip

    single, cluster = run("single"), run("cluster", "--cluster", "local")
    assert single.returncode == 0 and cluster.returncode == 0, (single.stderr + cluster.stderr)[-3000:]
    assert len(masks(tmp_path / "single")) == 6 and masks(tmp_path / "cluster") == masks(tmp_path / "single")
    assert "predict on 2 worker(s)" in cluster.stderr  # a pool of one actor per GPU
    workers = summary(tmp_path / "cluster")["cluster"]["workers"]
    assert sum(w["units"] for w in workers) == 6 and all(re.fullmatch(r".+:\d+ GPU [01]", w["worker"]) for w in workers)
    broken = run("broken", "--cluster", "local", **{NO_PYCUDA: "1"})
    lines = broken.stderr.strip().splitlines()
    assert broken.returncode == 2 and "Traceback" not in broken.stderr, broken.stderr[-3000:]
    assert lines[-1].startswith(f"error: {engine}: cannot be loaded by worker ") and "pycuda" in lines[-1], lines[-1]
    assert "stopped" in summary(tmp_path / "broken") and not masks(tmp_path / "broken")


def test_a_gpu_actor_names_its_one_visible_gpu_as_device_0():
    """Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU: whichever GPU the driver's options named, it is 0 there."""
    assert on_actor_gpu(TensorRTOptions(device_id=1)).device_id == 0
    assert on_actor_gpu(OnnxRuntimeOptions(provider="cuda", device_id=3)).device_id == 0
    assert on_actor_gpu(PyTorchOptions(device="cuda:2")).device == "cuda:0"
    for cpu in (OnnxRuntimeOptions(device_id=3), PyTorchOptions(), OpenVINOOptions()):
        assert on_actor_gpu(cpu) is cpu
