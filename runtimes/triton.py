"""A model served by Triton Inference Server, through tritonclient over HTTP or gRPC.

    with open_runtime("triton://127.0.0.1:8000/sunet") as rt:         # HTTP
        logits = rt.infer(batch)
    with open_runtime("triton+grpc://127.0.0.1:8001/sunet") as rt:    # gRPC

`TritonRuntime` follows the `Runtime` contract: its ArtifactInfo is rebuilt from the served config's
parameters (written by `python -m export.triton`), so runtimes.predict and the benchmarks use a
server like any local runtime. A tensor model (the onnxruntime and tensorrt backends, or
`--backend python --io tensor`) takes normalised float32 NCHW through `infer` and returns logits or
labels; an image model (`--io image`, `takes_images`) takes encoded images through `masks` and
returns their masks, pre- and post-processed by the server. `TritonImageClient` is an image model's
runtime, active from the start. `server_statistics` reads the batches the server formed. Torch-free.

A request the server cannot take (not listening, or gone during the request: a restart) is sent again
every RETRY_PAUSE seconds until the server has been unreachable for --server-timeout seconds, counted
across requests, so that a restarted server loses no image and a server gone for good costs one wait.
"""

from __future__ import annotations

import http.client
import importlib
import io
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from sunet_deploy import formats
from sunet_deploy.artifact import ARTIFACT_KEY, ArtifactError, dtype_name, info_from_strings
from sunet_deploy.pipeline.images import encode_png
from sunet_deploy.pipeline.palettes import read_label_png

from .base import Runtime, RuntimeUnavailable, TensorInfo, Timing
from .options import TritonOptions
from .triton_io import HttpTensors, SharedMemory, cuda_availability

PROTOCOLS = {"triton": "http", "triton+grpc": "grpc"}
WIRE_TYPES = {"TYPE_STRING": "BYTES"}  # else the config's type without "TYPE_"
INSTALL_HINT = f"tritonclient is not installed: {formats.get('triton').install}"
RETRY_PAUSE = 0.5


def availability() -> str | None:
    """None when tritonclient (HTTP and gRPC) can be imported, else what to install."""
    try:
        importlib.import_module("tritonclient.http")
        importlib.import_module("tritonclient.grpc")
    except ImportError:
        return INSTALL_HINT
    return None


@dataclass(frozen=True)
class ServedModel:
    """Where a model is served: protocol ("http" or "grpc"), "HOST:PORT" and the model's name."""

    uri: str
    protocol: str
    url: str
    model: str

    @classmethod
    def parse(cls, uri: str) -> "ServedModel":
        parts = urlsplit(uri)
        model = parts.path.strip("/")
        if parts.scheme not in PROTOCOLS or not parts.port or not model or "/" in model:
            raise ArtifactError(uri, "expected triton://HOST:PORT/MODEL (HTTP) or triton+grpc://HOST:PORT/MODEL (gRPC)")
        return cls(uri, PROTOCOLS[parts.scheme], parts.netloc, model)

    def client(self, timeout: float = 60.0):
        """A new tritonclient InferenceServerClient, for the calling thread only (the HTTP one runs on a gevent
        hub that belongs to the thread that made it)."""
        if availability():
            raise RuntimeUnavailable(INSTALL_HINT)
        if self.protocol == "http":
            from tritonclient.http import InferenceServerClient

            return InferenceServerClient(self.url, connection_timeout=timeout, network_timeout=timeout)
        from tritonclient.grpc import InferenceServerClient

        return InferenceServerClient(self.url)

    def module(self):
        """tritonclient.http or tritonclient.grpc, for InferInput and InferRequestedOutput."""
        return importlib.import_module(f"tritonclient.{self.protocol}")

    def config(self) -> dict:
        """The served model's configuration as JSON (over gRPC 64-bit numbers arrive as strings: int() them)."""
        client = self.client()
        from tritonclient.utils import InferenceServerException

        try:
            if self.protocol == "grpc":
                return client.get_model_config(self.model, as_json=True, client_timeout=60)["config"]
            return client.get_model_config(self.model)
        except (InferenceServerException, OSError) as exc:
            raise ArtifactError(self.uri, f"cannot read the served model's configuration ({exc})") from exc
        finally:
            client.close()

    def infer(self, client, data: np.ndarray, input_: dict, output: str, timeout: float) -> np.ndarray:
        """One request of `data` (its first dimension is the batch); the output as a numpy array."""
        module = self.module()
        wire_type = WIRE_TYPES.get(input_["data_type"], input_["data_type"].removeprefix("TYPE_"))
        request = module.InferInput(input_["name"], list(data.shape), wire_type)
        request.set_data_from_numpy(data)
        extra = {"client_timeout": timeout} if self.protocol == "grpc" else {}
        result = client.infer(self.model, [request], outputs=[module.InferRequestedOutput(output)], **extra)
        out = result.as_numpy(output)
        if out is None:
            raise ValueError(f"the server's answer has no output {output!r}")
        return out


def unreachable(exc: BaseException) -> bool:
    """Whether `exc` says the server could not be reached or went away during the request (a restart), not that
    it answered: such a request can be sent again."""
    from tritonclient.utils import InferenceServerException

    if isinstance(exc, InferenceServerException):
        return str(exc.status()) == "StatusCode.UNAVAILABLE"  # gRPC: no connection
    return isinstance(exc, (ConnectionError, http.client.IncompleteRead))


def tensor_info(tensor: dict) -> TensorInfo:
    dims = tuple("?" if int(d) < 0 else int(d) for d in tensor["dims"])
    return TensorInfo(tensor["name"], ("batch", *dims), dtype_name("triton", tensor["data_type"]))


class TritonRuntime(Runtime):
    name = "triton"
    served = True

    @classmethod
    def availability(cls, options: TritonOptions) -> str | None:
        return availability() or (cuda_availability() if options.shared_memory == "cuda" else None)

    def __init__(self, uri: str, options: TritonOptions | None = None) -> None:
        super().__init__(uri, options or TritonOptions())
        self.served_model = ServedModel.parse(uri)
        self.config = self.served_model.config()
        parameters = {k: v["string_value"] for k, v in self.config.get("parameters", {}).items()}
        if ARTIFACT_KEY not in parameters:
            raise ArtifactError(uri, "served without sunet-deploy metadata; write the repository with "
                                "python -m export.triton")
        self.takes_images = self.config["input"][0]["data_type"] == "TYPE_STRING"
        self.info = info_from_strings(parameters, uri, "onnx")
        self.max_batch = int(self.config["max_batch_size"])
        self.client = None
        self.transport: HttpTensors | SharedMemory | None = None
        self.unreachable_since: float | None = None

    def inputs(self) -> list[TensorInfo]:
        return [tensor_info(t) for t in self.config["input"]]

    def outputs(self) -> list[TensorInfo]:
        return [tensor_info(t) for t in self.config["output"]]

    def _activate(self) -> None:
        served, timeout = self.served_model, self.options.server_timeout
        if self.takes_images and self.options.shared_memory != "none":
            raise RuntimeUnavailable(f"{self.path}: shared memory is for tensor models (an image model's masks "
                                     "vary in size)")
        self.client = served.client(timeout)
        if self.takes_images:  # small requests and answers: tritonclient's own client
            return
        if self.options.shared_memory != "none":
            self.transport = SharedMemory(self.client, served.module(), self.options.shared_memory)
        elif served.protocol == "http":
            self.transport = HttpTensors(served.url, served.model, timeout)

    def _deactivate(self) -> None:
        try:
            if self.transport:
                self.transport.close()
        finally:
            self.transport = None
            self.client.close()
            self.client = None

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, Timing]:
        if self.takes_images:
            raise ValueError(f"{self.path} takes encoded images, not tensors (an --io image model): use masks()")
        out = self._request(batch)
        self.check_output(out, batch.shape[0])
        return out, Timing(0.0)

    def check_output(self, out: np.ndarray, batch: int) -> None:
        """Refuse an output unlike the configured one: a model replaced under the same name while a job runs
        (retrained with other classes, or re-exported with its argmax built in) would otherwise be taken for
        the configured one, its masks written in silence or failing far from the cause."""
        configured = self.outputs()[0]
        shape = (batch, *configured.shape[1:])
        fits = out.ndim == len(shape) and all(d in ("?", n) for d, n in zip(shape, out.shape))
        if out.dtype != configured.dtype or not fits:
            raise ValueError(f"the server answered {configured.name} as {out.dtype} {list(out.shape)}, not "
                             f"{configured.dtype} [{', '.join(map(str, shape))}] as configured at the start (was the "
                             "model replaced?)")

    def _request(self, data: np.ndarray) -> np.ndarray:
        if data.shape[0] > self.max_batch:
            raise ValueError(f"{self.path} batches at most {self.max_batch} images, got {data.shape[0]}")
        while True:
            try:
                out = self._send(data)
            except Exception as exc:
                if not unreachable(exc):
                    raise
                now = time.monotonic()
                self.unreachable_since = self.unreachable_since or now
                if now - self.unreachable_since >= self.options.server_timeout:
                    raise
                time.sleep(RETRY_PAUSE)
            else:
                self.unreachable_since = None
                return out

    def _send(self, data: np.ndarray) -> np.ndarray:
        input_, output = self.config["input"][0], self.config["output"][0]
        if isinstance(self.transport, SharedMemory):
            extra = {"client_timeout": self.options.server_timeout} if self.served_model.protocol == "grpc" else {}
            return self.transport.infer(self.served_model.model, data, input_, output, self.output_shape(data.shape),
                                        dtype_name("triton", output["data_type"]), **extra)
        if isinstance(self.transport, HttpTensors):
            return self.transport.tensor(data, input_["name"], output["name"])
        return self.served_model.infer(self.client, data, input_, output["name"], self.options.server_timeout)

    def output_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The output's shape for an input batch of `shape`: logits (N, C, H, W) or labels (N, H, W)."""
        dims = [int(d) for d in self.config["output"][0]["dims"]]
        return (shape[0], *dims[:-2], *shape[2:])

    def masks(self, images: list[bytes | np.ndarray]) -> list[np.ndarray]:
        """An image model's class-index masks (HxW uint8, each at its image's size), sent as one request.
        An image is an encoded file's bytes, decoded by the server as runtimes.predict reads files, or an
        HxWx3 uint8 RGB array, sent as a PNG (lossless: the server sees these pixels)."""
        if not self.takes_images:
            raise ValueError(f"{self.path} takes tensors, not encoded images: use infer()")
        self.check_active()
        start = time.perf_counter()
        data = np.array([[image if isinstance(image, bytes) else encode_png(image)] for image in images],
                        dtype=np.object_)
        masks = [read_label_png(io.BytesIO(png)) for png in self._request(data).reshape(-1)]
        self.last_timing = Timing((time.perf_counter() - start) * 1000)
        return masks


class TritonImageClient(TritonRuntime):
    """The runtime of a served image model (`export.triton --backend python --io image`), active from the
    start: `with TritonImageClient(uri) as client: client.masks([...])`."""

    def __init__(self, uri: str, timeout: int = 60) -> None:
        super().__init__(uri, TritonOptions(server_timeout=timeout))
        if not self.takes_images:
            raise ArtifactError(uri, "takes tensors, not encoded images: open it with runtimes.open_runtime")
        self.activate()

    def close(self) -> None:
        self.deactivate()


@dataclass(frozen=True)
class ServerStatistics:
    """What the server counted for one model: successful requests, the batch sizes it formed (size ->
    executions), the time requests waited in its queue (summed over requests) and the compute time of
    its executions (input, inference and output, summed over batches)."""

    requests: int
    batches: dict[int, int]
    queue_ms: float
    compute_ms: float

    def since(self, earlier: "ServerStatistics") -> "ServerStatistics":
        batches = {size: n - earlier.batches.get(size, 0) for size, n in self.batches.items()}
        return ServerStatistics(self.requests - earlier.requests, {size: n for size, n in sorted(batches.items()) if n},
                                self.queue_ms - earlier.queue_ms, self.compute_ms - earlier.compute_ms)

    @property
    def executions(self) -> int:
        return sum(self.batches.values())

    @property
    def mean_batch(self) -> float:
        return sum(size * n for size, n in self.batches.items()) / self.executions if self.executions else 0.0


COMPUTE = ("compute_input", "compute_infer", "compute_output")


def server_statistics(uri: str) -> ServerStatistics:
    """The server's inference statistics of the model `uri` names (all versions summed). Its per-request
    statistics count a batch's compute once per request in it, so compute comes from the per-batch ones."""
    served = ServedModel.parse(uri)
    client = served.client()
    try:
        kwargs = {"as_json": True} if served.protocol == "grpc" else {}
        models = client.get_inference_statistics(served.model, **kwargs)["model_stats"]
    finally:
        client.close()
    # gRPC's JSON writes 64-bit counts as strings and leaves zeros out
    batches: dict[int, int] = {}
    compute_ns = 0
    for stats in (s for model in models for s in model.get("batch_stats", [])):
        size = int(stats["batch_size"])
        batches[size] = batches.get(size, 0) + int(stats.get("compute_infer", {}).get("count", 0))
        compute_ns += sum(int(stats.get(key, {}).get("ns", 0)) for key in COMPUTE)

    def total(key: str, field: str) -> int:
        return sum(int(m.get("inference_stats", {}).get(key, {}).get(field, 0)) for m in models)

    return ServerStatistics(total("success", "count"), batches, total("queue", "ns") / 1e6, compute_ns / 1e6)
