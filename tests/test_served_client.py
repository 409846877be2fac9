"""What a batch job of runtimes.predict against a served model can count on, shown with a real Triton server
(runtimes.serve in the serving environment, one per module) and fake ones on loopback:

- a server stopped mid-run and restarted on the same ports 3 s later loses no image, over HTTP (our own
  client, runtimes.triton_io.HttpTensors) and gRPC (tritonclient);
- garbage answers give one "skipped" line per image, exit 1, no traceback, in bounded time: over HTTP an
  HTML 502 page, a body shorter than its Content-Length, a byte count that does not match the shape, no
  answer; over gRPC (a fake on tritonclient's own service stubs, replaying the real server's configuration)
  a gateway's UNAVAILABLE, a byte count that does not match the shape, no answer, and the answers of a model
  replaced under the same name mid-run (retrained with other classes, re-exported with its argmax built in),
  which are not taken for the configured model's;
- nothing listening is one `error:` line, exit 2;
- runtimes.serve's console shows tritonserver's warnings only, its whole log goes to the file it names.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from export.triton import export_repository_model
from factory import several_class_checkpoint
from runtimes.serve import LOG_ENTRY, PROJECT
from runtimes.triton_io import INFER_HEADER
from sunet_deploy.formats import TritonRecipe
from test_triton_server import READY_TIMEOUT, free_port, serve_python  # noqa: F401  (a fixture)

triton_grpc = pytest.importorskip("tritonclient.grpc",
                                  reason="tritonclient is not installed: pip install 'sunet-deploy[serve]'")
import grpc  # noqa: E402  (tritonclient[grpc] brings it)
from tritonclient.grpc import service_pb2, service_pb2_grpc  # noqa: E402
from tritonclient.utils import np_to_triton_dtype  # noqa: E402

NUM_IMAGES = 20
PAUSED_AT = 5


def tensor_repository(root: Path) -> Path:
    """One tensor model ("sunet": float32 in, logits out) on the python backend, in root/repository."""
    checkpoint = several_class_checkpoint(root / "model.safetensors")
    export_repository_model(checkpoint, root / "repository", TritonRecipe(name="sunet", backend="python", io="tensor"))
    return root / "repository"


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    return tensor_repository(tmp_path_factory.mktemp("served_client"))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("client_images")
    rng = np.random.default_rng(0)
    for i in range(NUM_IMAGES):
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


class Server:
    """`python -m runtimes.serve` on fixed ports, started again on the same ones after a stop."""

    def __init__(self, python: Path, repository: Path, folder: Path) -> None:
        self.python, self.repository, self.folder = python, repository, folder
        self.http, self.grpc = free_port(), free_port()
        self.log = folder / "tritonserver.log"
        self.consoles: list[Path] = []
        self.launcher: subprocess.Popen | None = None

    def start(self, *flags: str) -> None:
        self.consoles.append(self.folder / f"console{len(self.consoles)}.txt")
        command = [str(self.python), "-m", "runtimes.serve", str(self.repository), "--http-port", str(self.http),
                   "--grpc-port", str(self.grpc), "--metrics-port", "0", "--exit-timeout", "2",
                   "--log-file", str(self.log), *flags]
        with open(self.consoles[-1], "w") as out:
            self.launcher = subprocess.Popen(command, cwd=PROJECT, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready in" not in self.consoles[-1].read_text():
            assert self.launcher.poll() is None and time.monotonic() < deadline, self.consoles[-1].read_text()[-3000:]
            time.sleep(0.1)

    def stop(self) -> None:
        self.launcher.send_signal(signal.SIGINT)
        assert self.launcher.wait(30) == 0

    def uri(self, protocol: str) -> str:
        return f"triton://127.0.0.1:{self.http}/sunet" if protocol == "http" else \
            f"triton+grpc://127.0.0.1:{self.grpc}/sunet"


@pytest.fixture(scope="module")
def server(serve_python, repository, tmp_path_factory):  # noqa: F811
    with serving(serve_python, repository, tmp_path_factory.mktemp("server")) as server:
        yield server


@contextlib.contextmanager
def serving(python: Path, repository: Path, folder: Path) -> Iterator[Server]:
    """A started Server, killed at the end of the block if it still runs."""
    server = Server(python, repository, folder)
    server.start()
    try:
        yield server
    finally:
        if server.launcher.poll() is None:
            server.launcher.kill()
        server.launcher.wait()


def predict(uri: str, images: Path, out: Path, *flags: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtimes.predict", uri, str(images), "-o", str(out), *flags],
                            cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def masks(out: Path) -> int:
    return len(list(out.glob("*_mask.png")))


def test_serve_shows_warnings_and_logs_everything(server):
    """The console of a start: a few lines of our own; the log file: tritonserver's info and its tables."""
    console, log = server.consoles[0].read_text(), server.log.read_text()
    assert f"tritonserver's log: {server.log}" in console and "ready in" in console
    assert not [line for line in console.splitlines() if (m := LOG_ENTRY.match(line)) and m.group(1) == "I"]
    assert "+--" not in console and len(console.splitlines()) <= 10, console
    assert re.search(r"^I\d{4} .*Started HTTPService", log, re.M) and "| sunet " in log, log[-3000:]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_nothing_listening_is_one_line(protocol, images, tmp_path):
    uri = f"triton://127.0.0.1:{free_port()}/sunet" if protocol == "http" else \
        f"triton+grpc://127.0.0.1:{free_port()}/sunet"
    run = predict(uri, images, tmp_path / "out")
    out, err = run.communicate(timeout=60)
    assert run.returncode == 2 and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- a fake server's garbage answers


class FakeTriton(http.server.BaseHTTPRequestHandler):
    """Triton's HTTP v2 protocol as far as runtimes.triton uses it: the model's real configuration, then an
    answer to every inference request spoilt as `mode` says."""

    protocol_version = "HTTP/1.1"
    config: bytes
    mode: str
    done: threading.Event

    def do_GET(self) -> None:
        self.answer(200, "application/json", self.config)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = json.loads(body[: int(self.headers[INFER_HEADER])])
        if self.mode == "no answer":
            self.done.wait(60)
            self.close_connection = True
            return
        if self.mode == "html 502":
            self.answer(502, "text/html", b"<html><head><title>502 Bad Gateway</title></head>\n<body></body></html>")
            return
        batch, _, height, width = request["inputs"][0]["shape"]
        classes = int(json.loads(self.config)["output"][0]["dims"][0])
        shape = [batch, classes, height, width]
        size = int(np.prod(shape)) * 4 if self.mode == "short body" else 16  # "wrong size": 16 bytes for the shape
        header = json.dumps({"outputs": [{"name": request["outputs"][0]["name"], "datatype": "FP32", "shape": shape,
                                          "parameters": {"binary_data_size": size}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header(INFER_HEADER, str(len(header)))
        self.send_header("Content-Length", str(len(header) + size))
        self.end_headers()
        self.wfile.write(header + bytes(size // 2 if self.mode == "short body" else size))
        self.close_connection = self.mode == "short body"  # and goes away, as a server killed mid-answer

    def answer(self, status: int, kind: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("mode", ["html 502", "short body", "wrong size", "no answer"])
def test_garbage_answers_skip_each_image(mode, server, images, tmp_path):
    with urllib.request.urlopen(f"http://127.0.0.1:{server.http}/v2/models/sunet/config", timeout=10) as answer:
        config = answer.read()
    handler = type("Fake", (FakeTriton,), {"config": config, "mode": mode, "done": threading.Event()})
    fake = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=fake.serve_forever, daemon=True)
    thread.start()
    try:
        skipped_each_image(f"triton://127.0.0.1:{fake.server_port}/sunet", images, tmp_path)
    finally:
        handler.done.set()
        fake.shutdown()
        fake.server_close()


def skipped_each_image(uri: str, images: Path, tmp_path: Path) -> list[str]:
    """Predict three images against `uri` and check that each is skipped, with exit 1, no traceback and no mask,
    in bounded time (an answer, and a server gone mid-answer, are waited for 2 s); returns the skipped lines."""
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted(images.iterdir())[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    started = time.monotonic()
    run = predict(uri, folder, tmp_path / "out", "--server-timeout", "2")
    out, err = run.communicate(timeout=90)
    assert run.returncode == 1, err
    skipped = re.findall(r"^skipped: .*$", err, re.M)
    assert "Traceback" not in err and sorted(re.search(r"(\d+\.png):", line)[1] for line in skipped) == \
        ["00.png", "01.png", "02.png"], err  # fmt: skip
    assert "0 of 3 inputs written" in out and masks(tmp_path / "out") == 0
    assert time.monotonic() - started < 60
    return skipped


class FakeGrpcTriton(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Triton's gRPC protocol as far as runtimes.triton uses it: the model's real configuration, then an
    answer to every inference request spoilt as `mode` says."""

    def __init__(self, config: service_pb2.ModelConfigResponse, mode: str) -> None:
        self.config, self.mode, self.done = config, mode, threading.Event()

    def ModelConfig(self, request, context) -> service_pb2.ModelConfigResponse:
        return self.config

    def ModelInfer(self, request, context) -> service_pb2.ModelInferResponse:
        if self.mode == "no answer":
            self.done.wait(60)
            context.abort(grpc.StatusCode.CANCELLED, "the test is over")
        if self.mode == "unavailable":  # what a gateway (Envoy) answers with no server behind it
            context.abort(grpc.StatusCode.UNAVAILABLE, "upstream connect error or disconnect/reset before headers")
        batch, _, height, width = request.inputs[0].shape
        array = self.output(batch, height, width)
        raw = array.tobytes()[:16] if self.mode == "wrong size" else array.tobytes()
        output = service_pb2.ModelInferResponse.InferOutputTensor(
            name=request.outputs[0].name, datatype=np_to_triton_dtype(array.dtype), shape=array.shape)
        return service_pb2.ModelInferResponse(model_name=request.model_name, outputs=[output],
                                              raw_output_contents=[raw])

    def output(self, batch: int, height: int, width: int) -> np.ndarray:
        """The configured logits, or the output of a model replaced under the same name while the job runs."""
        if self.mode == "labels":  # re-exported with its argmax built in
            return np.zeros((batch, height, width), np.uint8)
        classes = 3 if self.mode == "other classes" else self.config.config.output[0].dims[0]  # retrained
        return np.zeros((batch, classes, height, width), np.float32)


GRPC_SKIPPED = {  # mode: what each of its skipped lines says
    "unavailable": "[StatusCode.UNAVAILABLE] upstream connect error",
    "wrong size": "cannot reshape array of size 4 into shape",
    "other classes": "not float32 [1, 5, ?, ?] as configured",
    "labels": "as uint8 [1, 160, 160], not float32 [1, 5, ?, ?]",
    "no answer": "[StatusCode.DEADLINE_EXCEEDED]",
}


@pytest.mark.parametrize("mode", list(GRPC_SKIPPED))
def test_garbage_grpc_answers_skip_each_image(mode, server, images, tmp_path):
    client = triton_grpc.InferenceServerClient(f"127.0.0.1:{server.grpc}")
    try:
        servicer = FakeGrpcTriton(client.get_model_config("sunet", client_timeout=10), mode)
    finally:
        client.close()
    fake = grpc.server(ThreadPoolExecutor(max_workers=4))
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, fake)
    port = fake.add_insecure_port("127.0.0.1:0")
    fake.start()
    try:
        skipped = skipped_each_image(f"triton+grpc://127.0.0.1:{port}/sunet", images, tmp_path)
    finally:
        servicer.done.set()
        fake.stop(None)
    assert all(GRPC_SKIPPED[mode] in line for line in skipped), skipped


# ---------------------------------------------------------------- a restart


def test_predict_survives_a_server_restart(server, images, tmp_path):
    """Predict over HTTP and over gRPC at once; both paused after 5 images while the server stops, resumed
    against nothing, the server started again 3 s later on the same ports (--verbose): all 20 written.
    (About 40 s on 2 busy cores, most of it the second start of the server.)"""
    outs = {protocol: tmp_path / protocol for protocol in ("http", "grpc")}
    runs = {p: predict(server.uri(p), images, out, "--server-timeout", "120") for p, out in outs.items()}
    try:
        paused: set[str] = set()
        deadline = time.monotonic() + 120
        while len(paused) < len(runs):
            for protocol, run in runs.items():
                assert run.poll() is None, f"{protocol}: ended before the restart: {run.communicate()}"
                if protocol not in paused and masks(outs[protocol]) >= PAUSED_AT:
                    run.send_signal(signal.SIGSTOP)
                    paused.add(protocol)
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert all(masks(out) < NUM_IMAGES for out in outs.values())
        server.stop()
        for run in runs.values():
            run.send_signal(signal.SIGCONT)
        time.sleep(3)
        server.start("--verbose")
        for protocol, run in runs.items():
            out, err = run.communicate(timeout=180)
            assert run.returncode == 0, f"{protocol}: {err[-3000:]}"
            assert f"{NUM_IMAGES} of {NUM_IMAGES} inputs written" in out and masks(outs[protocol]) == NUM_IMAGES
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.send_signal(signal.SIGCONT)
                run.kill()
            run.wait()
    # the second start was --verbose: its console has the info lines too; the log file holds both starts
    assert re.search(r"^I\d{4} .*Started HTTPService", server.consoles[1].read_text(), re.M)
    assert server.log.read_text().count("---- python -m runtimes.serve") == 2
